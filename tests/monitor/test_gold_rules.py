"""The stop rule on the gold estimate the record shows: people-corrected (PPI) where people's labels give both steps
an estimate, the gold evaluator's otherwise."""

from __future__ import annotations

import pytest

from charter.monitor.gold import GoldScore, ScoredAnswers, monitor_lines, people_change, rule_change, step_record

N = 40


def _scored(step: int, reward: float, gold: float, labels: dict[int, float]) -> ScoredAnswers:
    answers = [f"answer {i} at step {step}" for i in range(N)]
    return ScoredAnswers(step, answers, [reward] * N, [GoldScore(gold)] * N, labels=[labels.get(i) for i in range(N)])


def _record(now: ScoredAnswers, best: ScoredAnswers) -> dict:
    return dict(step_record(now, best, 4.0, ["q"] * N, [[]] * N, {}))


def test_people_who_see_no_fall_overrule_a_gold_judge_that_does() -> None:
    """The gold judge turns on every answer (1 -> 0) while people, on 20 prompts labelled at both steps, like them as
    much as before: the raw gold alone would flag the step, the people-corrected change does not."""
    both = {i: 1.0 for i in range(20)}
    best, now = _scored(0, 0.0, 1.0, both), _scored(5, 1.0, 0.0, both)
    record = _record(now, best)
    raw = record["gold_change"]
    assert raw["change"] == -1.0 and raw["high"] is not None and raw["high"] < 0  # the raw gold fell, surely
    corrected = record["people_change"]
    assert corrected is not None and corrected["n"] == 20
    assert corrected["low"] < 0 < corrected["high"] and corrected["change"] == pytest.approx(0.0)
    assert not record["flagged"]
    assert rule_change(record) == (corrected, "the people-corrected gold")


def test_people_who_see_a_fall_flag_a_step_the_gold_judge_scores_the_same() -> None:
    best = _scored(0, 0.0, 1.0, {i: 1.0 for i in range(20)})
    now = _scored(5, 1.0, 1.0, {i: 0.0 for i in range(20)})
    record = _record(now, best)
    assert record["gold_change"]["change"] == 0.0  # the raw gold saw nothing
    corrected = record["people_change"]
    assert corrected is not None and corrected["change"] == pytest.approx(-1.0) and corrected["high"] < 0
    assert record["flagged"]
    shown = "\n".join(monitor_lines(_summary([_record(best, best), record])))
    assert "people-corrected" in shown and "**flag**" in shown


def test_labels_on_other_prompts_at_the_two_steps_compare_the_two_intervals() -> None:
    best = _scored(0, 0.0, 1.0, {i: 1.0 for i in range(20)})
    now = _scored(5, 1.0, 1.0, {i: 0.0 for i in range(20, 40)})
    change = people_change(now, best)
    assert change is not None and change["n"] == 20
    then, shown = best.people, now.people
    assert then is not None and shown is not None
    assert change["low"] == pytest.approx(shown["low"] - then["high"])
    assert change["high"] == pytest.approx(shown["high"] - then["low"]) and change["high"] < 0
    assert _record(now, best)["flagged"]


def test_without_an_estimate_at_both_steps_the_rule_reads_the_raw_gold() -> None:
    best = _scored(0, 0.0, 1.0, {})
    now = _scored(5, 1.0, 0.0, {i: 1.0 for i in range(20)})  # only the later step carries labels
    record = _record(now, best)
    assert record["people_change"] is None and record["flagged"]
    assert rule_change(record)[1] == "gold"
    assert rule_change({"gold_change": record["gold_change"]})[1] == "gold"  # a record written before the rule


def test_the_gold_best_step_is_chosen_by_the_estimate_shown() -> None:
    labelled = _scored(3, 0.5, 0.6, {i: 1.0 for i in range(10)})
    plain = _scored(4, 0.5, 0.8, {})
    assert plain.estimate == pytest.approx(0.8) and labelled.people is not None
    assert labelled.estimate == labelled.people["value"] and labelled.estimate > plain.estimate


def _summary(steps: list[dict]) -> dict:
    return {"prompts": N, "every": 5, "gold": "gold", "on_gap": "warn", "steps": steps, "best_step": 0,
            "best_gold": 1.0, "best_checkpoint": None, "flagged_at": 5, "stopped": None, "false_positive_rates": {},
            "seconds": 0.0, "calls": 0, "cached": 0, "cost_usd": 0.0}  # fmt: skip
