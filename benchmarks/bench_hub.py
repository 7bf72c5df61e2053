"""Time `charter push`: the dry-run export (read run, gate, parquet + card, secret scan) and the real upload code
against the loopback Hub of the test suite, for synthetic runs of several sizes, side by side in one process.

    .venv/bin/python benchmarks/bench_hub.py --n 1000 10000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hub.conftest import TOKEN, build_run  # noqa: E402  (the fixture builder: the record formats' layout)
from tests.hub.fakehub import Server  # noqa: E402


def measure(n: int, base: Path) -> dict:
    from huggingface_hub import constants

    from charter.hub.push import publish, scan_folder

    run = build_run(base / f"run-{n}", n_pairs=n, human_labels=min(n, 50))
    start = time.perf_counter()
    result = publish(run, "bench/hub", dry_run=base / f"out-{n}")
    dry = time.perf_counter() - start
    start = time.perf_counter()
    scan_folder(base / f"out-{n}")
    scan = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (base / f"out-{n}").rglob("*") if p.is_file())
    with Server() as hub:
        constants.ENDPOINT, constants.HF_HUB_DISABLE_XET = hub.url, True
        start = time.perf_counter()
        publish(run, "bench/hub", token=TOKEN)
        push = time.perf_counter() - start
    return {"n": n, "dry": dry, "scan": scan, "push": push, "mib": size / 2**20, "files": len(result.files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="preference rows per run")
    args = parser.parse_args()
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    print(
        "| preference rows | dry run s | of which secret scan s | push to loopback Hub s | folder MiB | peak RSS MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            r = measure(n, Path(tmp))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"| {n:,} | {r['dry']:.2f} | {r['scan']:.2f} | {r['push']:.2f} | {r['mib']:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
