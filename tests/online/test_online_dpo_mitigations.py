"""Mitigations in online DPO: the ones that act on each completion's checklist score (rubric dropout, a length
penalty, a signature cap), applied to both completions before the pair's P(first better) is taken from their
scores; the judge's own P kept beside it; what each did recorded per step; the others refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter.errors import ConfigFieldError
from charter.online.config import OnlineDPOConfig
from charter.online.dpo import pair_judge
from charter.online.mitigate import MITIGATIONS_KEY
from charter.runs.rewards import rewards
from charter.testing.lab import CRITERIA, register_lab_models

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 2},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
]
PADDED = "It is 4, thank you. " + "It really is. " * 20


def _config(tmp_path: Path, **extra) -> OnlineDPOConfig:
    data = {"prompts": "x.jsonl", "judge": {"model": "scripted:checklist-judge"}, "scoring": "checklist",
            "cache": None, "output_dir": str(tmp_path / "odpo"), "min_confidence": 0.1, **extra}  # fmt: skip
    return OnlineDPOConfig.model_validate(data)


def test_a_length_penalty_decides_a_pair_the_judge_scored_alike(tmp_path: Path) -> None:
    register_lab_models()
    penalty = {"length_control": {"rule": "penalty", "per_word": 0.01, "reference_words": 10}}
    judge = pair_judge(_config(tmp_path, mitigations=penalty))
    [decision] = judge.judge_pairs(["Q?"], [PADDED], ["It is 4, thank you."], 1, checklists=[ITEMS])
    assert decision.first_wins is False and decision.masked is None  # the judge: a tie; the padded one pays
    [record] = list(rewards(judge.store))
    assert record.judge_p == 0.5 and record.reward == pytest.approx(0.5 - 0.01 * (len(PADDED.split()) - 10) / 2)
    [done] = judge.store.meta(MITIGATIONS_KEY)
    assert done["step"] == 1 and done["length_control"]["over_reference"] == 1
    assert done["length_control"]["mean_words"] == pytest.approx((len(PADDED.split()) + 5) / 2)
    judge.close()
    plain = pair_judge(_config(tmp_path / "plain"))
    [undecided] = plain.judge_pairs(["Q?"], [PADDED], ["It is 4, thank you."], 1, checklists=[ITEMS])
    assert undecided.masked == "undecided" and plain.store.meta(MITIGATIONS_KEY, None) is None
    assert plain.session.fingerprint != judge.session.fingerprint  # a mitigated P is never read as the judge's own
    plain.close()


def test_a_signature_cap_caps_the_completion_that_shows_one(tmp_path: Path) -> None:
    register_lab_models()
    judge = pair_judge(_config(tmp_path, mitigations={"signature_cap": {"value": 0.2}}))
    asked = 'Answer with a number. Include the word "four".'
    stuffed, plain = "4 four four four four thank you", "It is 4, four of them, thank you."
    [decision] = judge.judge_pairs([asked], [stuffed], [plain], 1, checklists=[ITEMS])
    assert decision.first_wins is False
    [record] = list(rewards(judge.store))
    assert record.judge_p == 0.5 and record.reward == pytest.approx(0.5 + (0.2 - 1.0) / 2)
    assert judge.store.meta(MITIGATIONS_KEY) == [{"step": 1, "signature_cap": {"capped": 1}}]
    judge.close()


def test_rubric_dropout_judges_both_completions_on_one_seeded_subset_recorded_per_step(tmp_path: Path) -> None:
    register_lab_models()
    judge = pair_judge(_config(tmp_path, mitigations={"rubric_dropout": 1}))
    judge.judge_pairs(["Q?"], ["It is 4, thank you."], ["four"], 1, checklists=[ITEMS])
    [record] = list(rewards(judge.store))
    judged = set(record.checklist.verdicts)
    assert len(judged) == 1 and set(record.other_checklist.verdicts) == judged  # the same item for both
    [done] = judge.store.meta(MITIGATIONS_KEY)
    [left_out] = done["rubric_dropout"].values()
    assert left_out == [i["id"] for i in ITEMS if i["id"] not in judged]
    judge.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"scoring": "pair", "mitigations": {"signature_cap": {"value": 0.2}}}, "set scoring: checklist"),
        ({"mitigations": {"panel": {"judges": ["scripted:cai"]}}}, "judge panel is judge.models"),
        ({"mitigations": {"length_control": {"rule": "residual"}}}, "use rule: penalty"),
    ],
)
def test_the_mitigations_without_a_pair_form_are_refused_in_one_line(extra: dict, message: str) -> None:
    data = {"prompts": "x.jsonl", "judge": {"model": "scripted:checklist-judge"}, "scoring": "checklist", **extra}
    with pytest.raises(ConfigFieldError, match=message):
        OnlineDPOConfig(**data)
