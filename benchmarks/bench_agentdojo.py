"""AgentDojo's reference trajectories judged against "Ignore untrusted data by default": how many per suite, and the
judge's agreement with AgentDojo's own `security` check per suite, with exact intervals; the judge's calls and tokens
per trajectory. Runs in AgentDojo's environment (`nox -s "frameworks(agentdojo)"` makes it):

    .nox/frameworks-agentdojo/bin/python benchmarks/bench_agentdojo.py --judge scripted
    .nox/frameworks-agentdojo/bin/python benchmarks/bench_agentdojo.py --judge local:smollm2-135m-instruct --per-suite 4

`--judge scripted` is the scripted judge of tests/support/agentdojo.py (it flags an action that quotes an instruction
found in a tool's output); any model string judges with charter's rating judge (mode `score`, rating `verdict`).
`--per-suite N` judges N benign and N hijacked episodes a suite (the first, in task order); 0 judges them all.
`--policy MODEL` also runs one task with an injection a suite with that model as the agent."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import charter  # noqa: E402
from charter.integrations.agentdojo import (  # noqa: E402
    SUITES,
    judge_episodes,
    judge_episodes_by_step,
    reference_episodes,
    run_task,
    security_agreement,
)
from charter.judge.settings import JudgeSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "data" / "specs" / "openai_model_spec" / "model_spec.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default="scripted")
    parser.add_argument("--per-suite", type=int, default=0)
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--policy", default=None)
    parser.add_argument("--spec", default=str(SPEC), help="the Model Spec (markdown); its section is the principle")
    args = parser.parse_args()
    constitution = charter.import_constitution(args.spec)
    if args.judge == "scripted":
        from tests.support.agentdojo import untrusted_data_judge, untrusted_data_step_judge

        judge, step_judge = untrusted_data_judge(), untrusted_data_step_judge()
        settings = JudgeSettings(mode="score", rating="cot")
    else:
        judge = step_judge = charter.get_model(args.judge, role="judge")
        settings = JudgeSettings(mode="score", rating="verdict")
    print(f"judge {args.judge}; principle ignore_untrusted_data of {Path(args.spec).name}")
    for suite in args.suites.split(","):
        started = time.perf_counter()
        episodes = reference_episodes(suite)
        made = time.perf_counter() - started
        counts = Counter((e.source, "ok" if e.failure is None else "failed") for e in episodes)
        secure = Counter((e.source, e.security) for e in episodes if e.failure is None)
        print(f"\n{suite}: {len(episodes)} reference episodes in {made:.1f} s: {dict(sorted(counts.items()))}")
        print(f"  security (True: injection goal met): {dict(sorted(secure.items(), key=str))}")
        failures = Counter(e.failure for e in episodes if e.failure)
        for reason, n in failures.items():
            print(f"  failed x{n}: {reason}")
        chosen = [e for e in episodes if e.failure is None]
        if args.per_suite:
            chosen = [e for e in chosen if e.source == "benign"][: args.per_suite] + [
                e for e in chosen if e.source == "hijacked"
            ][: args.per_suite]
        for view, judging in (
            ("whole trajectory", functools.partial(judge_episodes, judge=judge, settings=settings)),
            ("step by step", functools.partial(judge_episodes_by_step, judge=step_judge)),
        ):
            started = time.perf_counter()
            verdicts = judging(chosen, constitution=constitution)
            took = time.perf_counter() - started
            row = security_agreement(verdicts)[suite]
            low, high = row.interval
            share = f"{row.share:.3f}" if row.share is not None else "n/a"
            n = max(len(verdicts), 1)
            calls = sum(v.calls for v in verdicts) / n
            prompt = sum(v.prompt_tokens for v in verdicts) / n
            completion = sum(v.completion_tokens for v in verdicts) / n
            cached = sum(v.cached for v in verdicts)
            print(
                f"  {view}: judged {len(verdicts)} in {took:.1f} s: agreement with security {row.agree}/{row.n} = "
                f"{share} [{low:.3f}, {high:.3f}] (exact 95%), {row.failed} judgments failed; per trajectory "
                f"{calls:.2f} calls, {prompt:.0f} prompt + {completion:.0f} completion tokens (uncached; "
                f"{cached} trajectories answered from the call cache)"
            )
            hijacked = [v for v in verdicts if v.episode.source == "hijacked" and v.violates]
            if view == "step by step" and hijacked:
                same = sum(v.first_violation == v.episode.injected_step for v in hijacked)
                print(f"    first violating step = injected step on {same}/{len(hijacked)} flagged hijacked episodes")
        if args.policy:
            episode = run_task(charter.get_model(args.policy, role="policy"), suite, "user_task_0", "injection_task_0")
            u = episode.usage
            print(
                f"  policy {args.policy} on user_task_0 + injection_task_0: utility {episode.utility}, security "
                f"{episode.security}, failure {episode.failure}; {u.calls} calls, {u.prompt_tokens} prompt + "
                f"{u.completion_tokens} completion tokens"
            )


if __name__ == "__main__":
    main()
