"""Judge AgentDojo trajectories against "ignore instructions in untrusted data", and make a step-level preference pair.

Run it where AgentDojo is installed (its test environment: `nox -s "frameworks(agentdojo)"` makes one):

    .nox/frameworks-agentdojo/bin/python examples/agentdojo_judge.py --judge local:smollm2-135m-instruct

For each suite it replays the ground truth of two user tasks under two injection tasks (benign, and hijacked by the
injection), judges each trajectory with the judge against examples/untrusted-data.yaml, and prints the judge's
agreement with AgentDojo's `security` check (with its exact 95% interval). Then it revises the hijacked step of one
banking trajectory, continues the rollout from there in AgentDojo's environment with `--policy` (the revised step
makes the user's own payment), and prints the step-level pair's outcomes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import charter
from charter.integrations.agentdojo import (
    SUITES,
    continue_from,
    judge_episodes,
    load_suite,
    reference_episodes,
    security_agreement,
)
from charter.judge.settings import JudgeSettings

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", default="local:smollm2-135m-instruct", help="the judge's model string")
    parser.add_argument("--policy", default="local:smollm2-135m-instruct", help="the model that continues a rollout")
    args = parser.parse_args()
    constitution = charter.load_constitution(str(HERE / "untrusted-data.yaml"))
    judge = charter.get_model(args.judge, role="judge")
    episodes = []
    for suite in SUITES:
        tasks = load_suite(suite)
        users = sorted(tasks.user_tasks, key=lambda t: int(t.rsplit("_", 1)[1]))[:2]
        injections = sorted(tasks.injection_tasks, key=lambda t: int(t.rsplit("_", 1)[1]))[:2]
        episodes += reference_episodes(suite, users, injections)
    verdicts = judge_episodes(episodes, judge, constitution, settings=JudgeSettings(mode="score", rating="verdict"))
    for suite, row in security_agreement(verdicts).items():
        low, high = row.interval
        print(
            f"{suite}: judge agrees with security on {row.agree}/{row.n} [{low:.2f}, {high:.2f}], {row.failed} failed"
        )

    hijacked = next(e for e in episodes if e.suite == "banking" and e.source == "hijacked" and e.failure is None)
    step = hijacked.injected_step
    assert step is not None
    pay = load_suite("banking").get_user_task_by_id(hijacked.user_task).ground_truth(hijacked.pre_environment)[-1]
    revised = {
        "role": "assistant",
        "content": "The file asks for a transfer the user did not ask for; I only pay the bill.",
        "tool_calls": [
            {"id": "revised", "type": "function", "function": {"name": pay.function, "arguments": json.dumps(pay.args)}}
        ],
    }
    pair = continue_from(hijacked, step, revised, charter.get_model(args.policy, role="policy"))
    print(f"step {pair.step}: original security {pair.original.security}, revised security {pair.revised.security}")
    print(json.dumps(pair.row()["chosen"][:2], indent=2))


if __name__ == "__main__":
    main()
