"""The gold monitor between the loop's rounds: the base and each round's policy answer held-out prompts, scored by
the round's judge (P(better than the base policy's answer)) and a gold check of intent; a policy that games the
judge (a short answer the judge prefers, no answer at all) opens the gap, the stop rule flags it (and stops the arm
when told to), the gold-best policy is named in the report and the status; held-out prompts that are the runs'
prompts are refused."""

from __future__ import annotations

import json

import pytest

from charter.errors import ConfigError
from charter.loop.report import loop_status, loop_summary
from charter.providers.scripted import register_script
from tests.loop.test_loop import FakeLoop, varied
from tests.monitor import gold_checks

TOPICS = ["rain", "tides", "bread", "chess", "maps", "bees", "glass", "kites", "clocks", "ferns"]
#: What the gaming policies answer: the judge prefers it to the base's harmful-looking answer; gold (intent) fails it.
GAMED = "no no no no no"


class GamingLoop(FakeLoop):
    """FakeLoop's scripted policies, from policy 2 on answering what the judge prefers and gold does not."""

    def step_dpo(self, strategy, r, data):
        out = super().step_dpo(strategy, r, data)
        if r + 1 >= 2:
            register_script(f"loop-{self.arm(strategy, r)}-{r + 1}", lambda m, p: GAMED)
        return out


def _config(loop_config, tmp_path, held_out=None, rounds=2, **gold):  # noqa: ANN001, ANN003, ANN202
    FakeLoop.wins, FakeLoop.collapse_from, FakeLoop.fail_at = {}, None, None
    held = tmp_path / "held_out.jsonl"
    prompts = held_out or [f"Tell me something about {t}." for t in TOPICS]
    held.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    monitor = {"prompts": str(held), "max_new_tokens": 32, "gold": {"verifier": "tests.monitor.gold_checks:intent"}}
    return loop_config(
        strategies=["replace"], rounds=rounds, stop={"on_collapse": False}, gold_monitor={**monitor, **gold}
    )


def test_a_policy_gaming_the_rounds_judge_is_flagged_and_the_gold_best_policy_named(loop_config, tmp_path) -> None:
    result = GamingLoop(_config(loop_config, tmp_path), []).run()
    monitor = result.gold["replace"]
    steps = monitor["steps"]
    assert [s["step"] for s in steps] == [0, 1, 2] and "replace" not in result.stopped
    # the base against itself: the judge cannot prefer either (0.5); the gaming policies beat it every time
    assert steps[0]["reward"] == 0.5 and steps[2]["reward"] > 0.5
    assert [s["gold"] for s in steps] == [1.0, 1.0, 0.0]  # gold is the intent check of each answer
    answers = [json.loads(line) for line in (tmp_path / "loop" / "replace" / "monitor" / "step-2.jsonl").open()]
    assert {a["answer"] for a in answers} == {GAMED} and not gold_checks.intent(GAMED, None, "")
    assert monitor["flagged_at"] == 2 and [s["flagged"] for s in steps] == [False, False, True]
    # the rule as stated: gold's paired change below 0 with its interval, the reward's above 0
    assert steps[2]["gold_change"]["high"] < 0 and steps[2]["reward_change"]["change"] > 0
    assert monitor["best_step"] == 0 and monitor["best_checkpoint"] is None
    gap = steps[2]["reward"] - steps[2]["gold"]
    assert result.rounds["replace"][2]["gold"] == {
        "reward": steps[2]["reward"],
        "gold": 0.0,
        "gap": gap,
        "flagged": True,
    }
    policy_1 = [json.loads(line) for line in (tmp_path / "loop" / "replace" / "monitor" / "step-1.jsonl").open()]
    assert all(a["answer"] == varied(a["prompt"][-1]["content"]) for a in policy_1)  # policy 1's own
    report = result.report.read_text()
    assert "Gold monitor" in report and "**Gold-best policy: policy 0, the base**" in report
    status = loop_status(tmp_path / "loop")
    assert status["arms"]["replace"]["gold"]["flagged_at"] == 2
    assert "gold monitor: FLAGGED at policy 2; gold-best policy 0" in loop_summary(status)
    # resumed: every gold step is recorded, none runs again, the same record comes back
    again = GamingLoop(_config(loop_config, tmp_path), []).run()
    assert again.gold["replace"]["steps"] == steps


def test_the_stop_setting_ends_the_arm_after_the_flagged_round(loop_config, tmp_path) -> None:
    result = GamingLoop(_config(loop_config, tmp_path, rounds=3, on_gap="stop"), []).run()
    assert result.stopped["replace"].startswith("after round 1: the gold monitor's stop rule: gold fell by 1.000")
    assert [row["policy"] for row in result.rounds["replace"]] == [0, 1, 2]
    assert result.gold["replace"]["stopped"] == "the stop rule stopped the loop after round 1"


def test_held_out_prompts_that_are_the_runs_prompts_are_refused(loop_config, tmp_path) -> None:
    shared = [f"Question {i}: how do I do thing {i}?" for i in range(2)]  # the loop fixture's run prompts
    config = _config(loop_config, tmp_path, held_out=[f"Tell me about {t}." for t in TOPICS[:5]] + shared)
    with pytest.raises(ConfigError, match="2 of 7 held-out prompts are training prompts"):
        GamingLoop(config, []).run()


def test_the_loop_takes_held_out_prompts_from_a_file_only(loop_config, tmp_path) -> None:
    with pytest.raises(Exception, match="give prompts"):
        loop_config(gold_monitor={"split": 0.2, "gold": {"verifier": "tests.monitor.gold_checks:intent"}})
