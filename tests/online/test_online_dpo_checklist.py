"""Online DPO judged by checklist: each completion of a pair checked against its prompt's checklist, the pair's
P(first better) the preference of their scores; a pair where either has no score is masked as failed, never 0.5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charter.checklist.prompt import read_checklist_prompt
from charter.online.config import OnlineDPOConfig
from charter.online.dpo import pair_judge
from charter.providers.scripted import register_script
from charter.runs.rewards import rewards
from charter.testing.lab import CRITERIA, register_lab_models

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 2},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
]


def _mute_on_garble(messages, params):  # noqa: ANN001, ANN202
    items, response = read_checklist_prompt(messages[-1].content)
    if "garble" in response:
        return "no idea"
    return json.dumps({i: {"reason": "r", "verdict": "yes" if "4" in response else "no"} for i, _ in items})


def _config(tmp_path: Path, judge: str, **extra) -> OnlineDPOConfig:
    data = {"prompts": "x.jsonl", "judge": {"model": judge}, "scoring": "checklist", "cache": None,
            "output_dir": str(tmp_path / "odpo"), "min_confidence": 0.1, **extra}  # fmt: skip
    return OnlineDPOConfig.model_validate(data)


def test_the_checklists_preference_decides_and_a_pair_without_a_score_is_masked(tmp_path: Path) -> None:
    register_lab_models()
    judge = pair_judge(_config(tmp_path, "scripted:checklist-judge"))
    firsts = ["It is 4, thank you.", "four", "It is 4.", "4 please"]
    seconds = ["four", "It is 4, thank you.", "It is 4, thanks.", "4 please"]
    decisions = judge.judge_pairs(["Q?"] * 4, firsts, seconds, 1, checklists=[ITEMS] * 4)
    assert [d.first_wins for d in decisions] == [True, False, False, None]
    assert [d.masked for d in decisions] == [None, None, None, "undecided"]  # identical texts: nothing to prefer
    stored = list(rewards(judge.store))
    assert [r.reward for r in stored[:3]] == pytest.approx([1.0, 0.0, 0.5 + (2 / 3 - 1) / 2])
    assert stored[0].checklist.verdicts == {"number": "yes", "polite": "yes"}
    assert stored[0].other_checklist.verdicts == {"number": "no", "polite": "no"}
    judge.close()


def test_a_pair_whose_completion_has_no_score_is_masked_as_failed(tmp_path: Path) -> None:
    register_script("checklist-mute-on-garble", _mute_on_garble)
    judge = pair_judge(_config(tmp_path, "scripted:checklist-mute-on-garble", max_failures=10))
    [decision] = judge.judge_pairs(["Q?"], ["4 garble"], ["4"], 1, checklists=[ITEMS])
    assert decision.first_wins is None and decision.masked == "failed"
    [record] = list(rewards(judge.store))
    assert record.reward is None and record.checklist.failed_items == ["number", "polite"]
    assert record.checklist.failed_share == 1.0 and record.failure.kind == "checklist"
    judge.close()


def test_checklist_scoring_takes_any_judge_mode_but_no_refresh(tmp_path: Path) -> None:
    assert _config(tmp_path, "scripted:checklist-judge").scoring == "checklist"
    with pytest.raises(ValueError, match="online DPO takes no refresh_every"):
        _config(tmp_path, "scripted:checklist-judge", checklist={"refresh_every": 2})
