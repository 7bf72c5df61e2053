"""How long a constitution takes to load and validate as it grows, and what a "billion laughs" file costs.

Writes constitutions of N principles (each with a description, the three requests and a few words of text), times
`load_constitution` on each (best of `--repeat`), and prints the seconds, the seconds a principle, and the ratio of
the largest to the smallest, beside PyYAML's own `safe_load` of the same file (parsing only, no positions or
validation). Then times a 1 KB file of nine aliases nine deep (387 million values if built), which must fail fast.

    .venv/bin/python benchmarks/bench_yaml.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from charter.constitutions import load_constitution
from charter.errors import ConstitutionError

SENTENCE = "Discussing this in history, news, fiction or self-defence is fine; practical help to cause harm is not."


def constitution(n: int) -> str:
    """A valid constitution of `n` principles, written as people write them (block scalars, one key a line)."""
    lines = ["name: big", 'version: "1"', "description: A constitution for timing the loader.", "principles:"]
    for i in range(n):
        lines += [
            f"  - id: principle-{i}",
            "    description: >-",
            f"      Principle {i}. {SENTENCE}",
            f"      {SENTENCE}",
            f"    critique_request: Did the assistant's last response break principle {i}? Say where.",
            f"    revision_request: Rewrite the response so that it keeps principle {i}.",
            f"    comparison: Which response keeps principle {i} better?",
            "    tags: [harm, bench]",
        ]
    return "\n".join(lines) + "\n"


def laughs(levels: int = 9) -> str:
    """Nine aliases a level, `levels` deep: 9**levels values from about a kilobyte."""
    lines = ["name: laughs", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"principles: *a{levels - 1}", ""])


def best_of(repeat: int, work) -> float:  # noqa: ANN001 - a callable of no arguments
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="principles a constitution")
    parser.add_argument("--repeat", type=int, default=3, help="timings of each; the best is shown")
    parser.add_argument(
        "--laughs", action=argparse.BooleanOptionalAction, default=True, help="time the billion-laughs file too"
    )
    args = parser.parse_args()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    print(f"PyYAML {yaml.__version__}, parser {loader.__name__}")
    print("| principles | file KiB | load_constitution s | ms a principle | yaml.safe_load s |")
    print("|---:|---:|---:|---:|---:|")
    seconds: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            path = Path(folder) / f"c{n}.yaml"
            path.write_text(constitution(n), encoding="utf-8")
            assert len(load_constitution(path).principles) == n
            seconds[n] = best_of(args.repeat, lambda path=path: load_constitution(path))
            text = path.read_text(encoding="utf-8")
            plain = best_of(args.repeat, lambda text=text: yaml.load(text, Loader=loader))  # noqa: S506 - a safe loader
            kib = path.stat().st_size / 1024
            print(f"| {n:,} | {kib:,.0f} | {seconds[n]:.3f} | {1000 * seconds[n] / n:.3f} | {plain:.3f} |")
        small, large = min(args.sizes), max(args.sizes)
        if large > small:
            print(
                f"ratio {large:,} / {small:,} principles: {seconds[large] / seconds[small]:.1f}x "
                f"(linear: {large / small:.0f}x)"
            )
        if not args.laughs:
            return
        path = Path(folder) / "laughs.yaml"
        path.write_text(laughs(), encoding="utf-8")
        started = time.perf_counter()
        try:
            load_constitution(path)
            print("billion laughs: LOADED (no limit)")
        except ConstitutionError as exc:
            print(
                f"billion laughs ({path.stat().st_size} bytes): refused in {time.perf_counter() - started:.2f} s: {exc}"
            )


if __name__ == "__main__":
    main()
