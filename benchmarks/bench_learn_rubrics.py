"""Rubrics learned from people's pairs (`charter.learn_rubrics`): held-out agreement of the learned rubric against
the constitution it started from.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_learn_rubrics.py [--data ../shared/data] [--seeds 0 1 2 3 4]
        [--local-proposals 12]

On the shared human pairs (HHH, 117; PyRIT hate speech, 594), read from --data (never copied), `learn_rubrics`
splits the pairs (seeded; 30% held out), asks the proposer about up to 100 training pairs, keeps the criteria whose
verdicts agree with people on at least 0.75 of the proposal pairs they decide (at least 3), and measures on the
held-out pairs only: the learned rubric's agreement with people (the weighted, gated checklist score of each
response; a tie counts half) and the base constitution's on the same pairs, each with its Wilson 95% interval.

The base is the constitution `bench_checklist.py` writes (three principles; five yes/no criteria: a specific
number, a closing question, please or thank you, shouting in capitals as a gated pitfall, at most 15 words). Models:

- consistent scripted ones (`charter.testing.lab`): `scripted:rubric-proposer` offers, for a pair, each criterion
  of the lab's five that tells the preferred response from the other, and `scripted:checklist-judge` answers each
  item truly; one run a split seed;
- the embedded `local:smollm2-135m-instruct` as proposer and judge on HHH (seed 0, `--local-proposals` proposal
  pairs): its result is stated as it is (a reply that is not JSON is a recorded failure, and no usable criterion
  stops the command with a one-line error).

Prints one Markdown table; the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_checklist import write_constitution  # noqa: E402  (the constitution of the checklist benchmark)

import charter  # noqa: E402
from charter.errors import ArgumentError, NoSignal  # noqa: E402
from charter.lab.rubrics import RubricReport  # noqa: E402
from charter.testing.lab import register_lab_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = {"HHH": "hhh_harmless_helpful.jsonl", "PyRIT": "pyrit_hate_speech_pairs.jsonl"}


def share(value: Any) -> str:
    if value is None or value.value is None or value.ci is None:
        return "n/a (n=0)"
    return f"{value.value:.3f} [{value.ci[0]:.3f}, {value.ci[1]:.3f}] (n={value.n})"


def row(data: str, models: str, seed: int, report: RubricReport | None, wall: float, note: str = "") -> str:
    if report is None:
        return f"| {data} | {models} | {seed} | – | – | – | – | – | – | – | {wall:.1f} | {note} |"
    kept = ", ".join(next(c.requirement for c in report.candidates if c.id == k) for k in report.kept) or "none"
    return (
        f"| {data} | {models} | {seed} | {report.train_pairs}/{report.test_pairs} | "
        f"{report.proposals_failed}/{report.proposal_pairs} | {len(report.candidates)} | {kept} "
        f"| {share(report.held_out)} | {share(report.base)} | {report.judge_calls + report.proposer_calls} "
        f"| {wall:.1f} | {note} |"
    )


def learn(pairs: Path, model: str, judge: str, base: Path, out: Path, seed: int, proposals: int) -> tuple:
    """(report or None, wall seconds, note): one `learn_rubrics`, a failure stated as it is."""
    started = time.perf_counter()
    try:
        result = charter.learn_rubrics(
            pairs, model, judge=judge, base=str(base), output=out, proposals=proposals, seed=seed, cache=None
        )
        return result.report, time.perf_counter() - started, result.report.verdict
    except NoSignal as exc:
        return exc.report, time.perf_counter() - started, f"NoSignal: {str(exc).split('; report:')[0]}"
    except ArgumentError as exc:
        return None, time.perf_counter() - started, f"ArgumentError: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="split seeds (scripted)")
    parser.add_argument("--local-proposals", type=int, default=12, help="embedded model's proposal pairs (0: skip)")
    args = parser.parse_args()
    register_lab_models()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(
        "| data | proposer / judge | split seed | pairs train/held out | proposals failed | candidates | kept criteria "
        "| learned rubric, held-out agreement [Wilson 95%] | base constitution, same pairs | calls | wall s | verdict |"
    )
    print("|---|---|---:|---|---:|---:|---|---|---|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = write_constitution(work)
        scripted = "`scripted:rubric-proposer` / `scripted:checklist-judge`"
        for data, name in FILES.items():
            pairs = args.data / "human_preferences" / name
            for seed in args.seeds:
                out = work / f"{data}-{seed}.yaml"
                report, wall, note = learn(
                    pairs, "scripted:rubric-proposer", "scripted:checklist-judge", base, out, seed, 100
                )
                print(row(data, scripted, seed, report, wall, note), flush=True)
        if args.local_proposals:
            local = "local:smollm2-135m-instruct"
            pairs = args.data / "human_preferences" / FILES["HHH"]
            report, wall, note = learn(pairs, local, local, base, work / "local.yaml", 0, args.local_proposals)
            print(row("HHH", f"`{local}` (both)", 0, report, wall, note), flush=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
