"""The constitution lab measured: inference and the constitution test on the shared human pairs with the embedded
model, and inference at scale with the scripted lab models.

    .venv/bin/python benchmarks/bench_lab.py scale [--pairs 10000]
    .venv/bin/python benchmarks/bench_lab.py shared [--proposals 30] [--limit 120] [--parts proposed bundled test]

`scale`: pairs labelled by a planted rule (charter.testing.lab), the scripted proposer and rule-following judge;
prints the held-out agreement, judge calls, wall time and peak memory (max RSS).
`shared`: the shared HHH (117 pairs) and PyRIT hate-speech pairs (a seeded subset of `--limit`), with the embedded
SmolLM2-135M-Instruct as proposer and judge: the inferred constitution's held-out agreement against the declared
`harmless` constitution and the baselines, then `charter constitutions test harmless` on the same pairs. No call
cache, so every call is made. Prints markdown tables. `--parts test` measures the constitution test alone.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "human_preferences"
LOCAL = "local:smollm2-135m-instruct"
#: `shared`'s parts: inference from the model's proposals, selection among the bundled principles, the test.
PARTS = ["proposed", "bundled", "test"]


def _fmt(fig) -> str:  # noqa: ANN001
    if fig is None or fig.value is None:
        return "n/a"
    ci = f" [{fig.ci[0]:.3f}, {fig.ci[1]:.3f}]" if fig.ci else ""
    return f"{fig.value:.3f}{ci}"


def scale(n: int) -> None:
    from charter.lab.api import infer_constitution
    from charter.testing.lab import make_pairs, register_lab_models, rule_of

    register_lab_models()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in make_pairs(n, "number", seed=11)))
        started = time.perf_counter()
        result = infer_constitution(
            path, "scripted:lab-proposer", judge="scripted:lab-judge", cache=None, bootstrap_samples=200
        )
        wall = time.perf_counter() - started
    r = result.report
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    top = result.constitution.principles[0].description
    print(
        "| pairs | candidates (raw / kept) | top principle is the planted rule | held-out agreement |"
        " judge calls | wall | peak RSS |"
    )
    print("|---:|---|---|---|---:|---:|---:|")
    print(
        f"| {n:,} | {r.candidates_raw} / {len(r.candidates)} | {rule_of(top) == 'number'} | {_fmt(r.held_out)} |"
        f" {r.judge_calls:,} | {wall:.1f} s | {rss:.0f} MiB |"
    )


def _subset(path: Path, limit: int, out: Path) -> Path:
    rows = path.read_text().splitlines()
    if limit and len(rows) > limit:
        rows = random.Random(0).sample(rows, limit)
    out.write_text("\n".join(rows) + "\n")
    return out


def _infer_row(label: str, path: Path, proposals: int, **how) -> str:  # noqa: ANN003
    from charter.errors import ArgumentError
    from charter.lab.api import infer_constitution

    started = time.perf_counter()
    try:
        r = infer_constitution(path, declared="harmless", proposals=proposals, cache=None, **how).report
    except ArgumentError as exc:
        return f"| {label} | {exc} | | | | | | | {time.perf_counter() - started:.0f} s |"
    wall = time.perf_counter() - started
    asked = f"{r.proposals_asked} ({r.proposals_failed})" if r.proposals_asked else "given"
    return (
        f"| {label} ({r.pairs}) | {asked} | {r.candidates_raw} / {len(r.candidates)} | {len(r.selected)} |"
        f" {_fmt(r.held_out)} | {_fmt(r.declared)} | {_fmt(r.longer_wins)} | {r.judge_calls:,} | {wall:.0f} s |"
    )


def shared(proposals: int, limit: int, parts: list[str]) -> None:
    from charter.lab.api import check_constitution

    if not SHARED.is_dir():
        sys.exit(f"{SHARED}: the shared data is not there")
    print(
        "| pairs, candidates | proposals (unusable) | candidates (raw / kept) | selected | inferred, held out |"
        " declared harmless | longer wins | judge calls | wall |"
    )
    print("|---|---|---|---:|---|---|---|---:|---:|", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("hhh_harmless_helpful", "pyrit_hate_speech_pairs"):
            path = _subset(SHARED / f"{name}.jsonl", limit, Path(tmp) / f"{name}.jsonl")
            if "proposed" in parts:
                print(_infer_row(f"{name}, proposed", path, proposals, model=LOCAL), flush=True)
            if "bundled" in parts:
                both = ["harmless", "helpful-honest"]
                bundled = _infer_row(f"{name}, bundled principles", path, proposals, judge=LOCAL, candidates=both)
                print(bundled, flush=True)
            if "test" not in parts:
                continue
            started = time.perf_counter()
            rows.append(_test_row(name, check_constitution("harmless", path, LOCAL, cache=None), started))
            print(f"(constitution test) {rows[-1]}", flush=True)  # as it is measured: a cut-off run keeps it
    print(
        "\n| pairs | flagged insensitive | untested | median negated flip rate | supported by people |"
        " pairs the ensemble decides | smallest subset at 97% | judge calls | wall |"
    )
    print("|---|---:|---:|---|---:|---:|---|---:|---:|")
    print("\n".join(rows))


def _test_row(name: str, t, started: float) -> str:  # noqa: ANN001
    flips = sorted(s.negated_flip.value for s in t.sensitivity if s.negated_flip.value is not None)
    median = f"{flips[len(flips) // 2]:.3f}" if flips else "none measured"
    supported = sum(1 for s in t.support or [] if s.verdict == "supported")
    red = t.redundancy
    subset = (
        "nothing decided"
        if red.decided == 0
        else f"{len(red.subset)} of {len(red.principles)} ({red.subset_reproduces:.1%})"
    )
    return (
        f"| {name} ({t.pairs}) | {len(t.flagged)} of {len(t.sensitivity)} | {len(t.untested)} | {median} |"
        f" {supported} | {red.decided} | {subset} | {t.judge_calls:,} | {time.perf_counter() - started:.0f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("scale").add_argument("--pairs", type=int, default=10000)
    measured = sub.add_parser("shared")
    measured.add_argument("--proposals", type=int, default=30)
    measured.add_argument("--limit", type=int, default=120)
    measured.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    args = parser.parse_args()
    if args.what == "scale":
        scale(args.pairs)
    else:
        shared(args.proposals, args.limit, args.parts)


if __name__ == "__main__":
    main()
