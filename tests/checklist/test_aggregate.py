"""The explicit aggregation, checked against hand-computed scores: weights, pitfalls, n/a and failed items left out
with the denominator adjusted, gates capping, no score (never 0) when every item failed, and two scores as a
preference with ties as the rating modes have them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.checklist import Checklist, ChecklistItem, ItemVerdict, preference, score_checklist, verifier_verdicts
from charter.checklist.aggregate import ChecklistScore
from charter.errors import ConfigError
from charter.verify import register_verifier
from tests.support.numbers import usable_weights


def _checklist(gate_a: float | None = None, gate_p: float | None = None) -> Checklist:
    return Checklist(
        source="criteria",
        items=[
            ChecklistItem(id="a", requirement="Meets A.", weight=1.0, category="essential", gate_cap=gate_a),
            ChecklistItem(id="b", requirement="Meets B.", weight=0.7, category="important"),
            ChecklistItem(id="c", requirement="Meets C.", weight=0.3, category="optional"),
            ChecklistItem(id="p", requirement="Pads.", weight=-0.9, category="pitfall", gate_cap=gate_p),
        ],
    )


def _verdicts(**said: str) -> list[ItemVerdict]:
    return [ItemVerdict(item_id=i, verdict=v) for i, v in said.items()]  # type: ignore[arg-type]


def test_the_score_is_the_normalised_weighted_sum() -> None:
    # P = 1 + 0.7 + 0.3 = 2.0, N = 0.9; yes on a and c: (1.3 + 0.9) / 2.9
    got = score_checklist(_checklist(), _verdicts(a="yes", b="no", c="yes", p="no"))
    assert got.status == "ok" and got.score == pytest.approx(2.2 / 2.9)
    assert got.counted == ["a", "b", "c", "p"] and got.failed == [] and got.failed_share == 0


def test_a_pitfall_answered_yes_takes_its_weight_away() -> None:
    # every item yes: (2.0 - 0.9 + 0.9) / 2.9
    got = score_checklist(_checklist(), _verdicts(a="yes", b="yes", c="yes", p="yes"))
    assert got.score == pytest.approx(2.0 / 2.9)
    assert score_checklist(_checklist(), _verdicts(a="yes", b="yes", c="yes", p="no")).score == pytest.approx(1.0)
    assert score_checklist(_checklist(), _verdicts(a="no", b="no", c="no", p="yes")).score == pytest.approx(0.0)


def test_failed_and_na_items_leave_the_sum_and_the_denominator_and_the_failed_share_is_recorded() -> None:
    # counted: a (1.0) and p (-0.9); a yes, p no: (1.0 + 0.9) / (1.0 + 0.9) = 1
    got = score_checklist(_checklist(), _verdicts(a="yes", b="failed", c="n/a", p="no"))
    assert got.score == pytest.approx(1.0)
    assert got.failed == ["b"] and got.not_applicable == ["c"] and got.counted == ["a", "p"]
    assert got.failed_share == pytest.approx(0.7 / (0.7 + 1.0 + 0.9))  # n/a is not applicable weight


def test_an_item_without_a_verdict_is_a_failed_one() -> None:
    got = score_checklist(_checklist(), _verdicts(a="yes", c="yes", p="no"))
    assert got.failed == ["b"] and got.score == pytest.approx((1.3 + 0.9) / (1.3 + 0.9))


def test_a_response_whose_items_all_failed_has_no_score_never_zero() -> None:
    got = score_checklist(_checklist(), _verdicts(a="failed", b="failed", c="failed", p="failed"))
    assert got.score is None and got.status == "failed" and got.failed_share == 1.0
    assert got.gates_unread == []
    none_apply = score_checklist(_checklist(), _verdicts(a="n/a", b="n/a", c="n/a", p="n/a"))
    assert none_apply.score is None and none_apply.status == "not_applicable" and none_apply.failed_share == 0


def test_a_failed_gate_caps_the_score_and_the_lowest_cap_wins() -> None:
    # a gated at 0.3 and answered no: (0.7 + 0.3 + 0.9) / 2.9 = 0.655..., capped at 0.3
    got = score_checklist(_checklist(gate_a=0.3), _verdicts(a="no", b="yes", c="yes", p="no"))
    assert got.score == pytest.approx(0.3) and got.cap == 0.3 and got.gates_failed == ["a"]
    # the pitfall gated at 0.1 fails by a yes: both gates fail, the lower cap holds
    both = score_checklist(_checklist(gate_a=0.3, gate_p=0.1), _verdicts(a="no", b="yes", c="yes", p="yes"))
    assert both.score == pytest.approx(0.1) and both.gates_failed == ["a", "p"]
    # a score already under the cap stays
    low = score_checklist(_checklist(gate_a=0.5), _verdicts(a="no", b="no", c="no", p="yes"))
    assert low.score == pytest.approx(0.0)


def test_a_gate_that_is_met_na_or_unread_caps_nothing() -> None:
    met = score_checklist(_checklist(gate_a=0.3), _verdicts(a="yes", b="no", c="no", p="no"))
    assert met.cap is None and met.score == pytest.approx(1.9 / 2.9)
    unread = score_checklist(_checklist(gate_a=0.3), _verdicts(a="failed", b="yes", c="no", p="no"))
    assert unread.cap is None and unread.gates_unread == ["a"] and unread.score == pytest.approx(1.6 / 1.9)
    na = score_checklist(_checklist(gate_a=0.3), _verdicts(a="n/a", b="yes", c="no", p="no"))
    assert na.cap is None and na.gates_unread == []


def test_the_expected_score_uses_each_items_probability_of_yes() -> None:
    verdicts = [
        ItemVerdict(item_id="a", verdict="yes", p_yes=0.9),
        ItemVerdict(item_id="b", verdict="no", p_yes=0.2),
        ItemVerdict(item_id="c", verdict="yes", p_yes=0.5),
        ItemVerdict(item_id="p", verdict="no", p_yes=0.1),
    ]
    got = score_checklist(_checklist(), verdicts)
    # 0.9 + 0.14 + 0.15 - 0.09 = 1.1; (1.1 + 0.9) / 2.9
    assert got.expected == pytest.approx(2.0 / 2.9) and got.score == pytest.approx(2.2 / 2.9)
    partly = score_checklist(_checklist(), [*verdicts[:3], ItemVerdict(item_id="p", verdict="no")])
    assert partly.expected is None  # one counted item without P(yes): no expected score


def _score(score: float | None, expected: float | None = None) -> ChecklistScore:
    return ChecklistScore(score=score, status="ok" if score is not None else "failed", expected=expected)


def test_two_scores_make_a_preference_as_the_rating_modes_do() -> None:
    won = preference(_score(2.2 / 2.9), _score(2.0 / 2.9))
    assert won.decision == "a" and won.p_a == pytest.approx(0.5 + (0.2 / 2.9) / 2) and not won.from_probabilities
    lost = preference(_score(0.25), _score(0.75))
    assert lost.decision == "b" and lost.p_a == pytest.approx(0.25)
    tie = preference(_score(0.4), _score(0.4))
    assert tie.decision == "tie" and tie.p_a == 0.5
    assert preference(_score(1.0), _score(0.0)).p_a == 1.0


def test_the_expected_scores_decide_where_both_responses_have_them() -> None:
    soft = preference(_score(1.0, expected=0.6), _score(1.0, expected=0.8))
    assert soft.from_probabilities and soft.decision == "b" and soft.p_a == pytest.approx(0.4)
    hard = preference(_score(1.0, expected=0.6), _score(0.5))
    assert not hard.from_probabilities and hard.p_a == pytest.approx(0.75)
    assert not preference(_score(1.0, 0.6), _score(0.5, 0.8), use_probabilities=False).from_probabilities


def test_a_response_without_a_score_leaves_the_pair_undecided() -> None:
    undecided = preference(_score(None), _score(0.5))
    assert undecided.p_a is None and undecided.decision is None


def test_verifier_items_are_checked_by_code_and_a_crashing_verifier_fails_its_item() -> None:
    def crash(response: str, reference: str | None, prompt: str) -> bool:
        raise RuntimeError("boom")

    register_verifier("test-crash", crash)
    checklist = Checklist(
        source="column",
        items=[
            ChecklistItem(id="digit", requirement="Has a digit.", weight=1.0, verifier="regex:\\d"),
            ChecklistItem(id="crash", requirement="Crashes.", weight=1.0, verifier="test-crash"),
            ChecklistItem(id="judged", requirement="Is kind.", weight=1.0),
        ],
    )
    got = verifier_verdicts(checklist, "It costs 4 dollars.")
    assert set(got) == {"digit", "crash"}
    assert got["digit"].verdict == "yes" and got["digit"].by == "verifier"
    assert got["crash"].verdict == "failed" and "boom" in (got["crash"].error or "")
    assert verifier_verdicts(checklist, "No figure.")["digit"].verdict == "no"
    assert [i.id for i in checklist.judged] == ["judged"]
    # a verifier's verdict is certain: with the judge's P(yes) for the rest, there is an expected score
    scored = score_checklist(checklist, {**got, "judged": ItemVerdict(item_id="judged", verdict="yes", p_yes=0.5)})
    assert scored.expected == pytest.approx(0.75) and scored.score == pytest.approx(1.0)


@settings(max_examples=300, deadline=None)
@given(
    answers=st.lists(
        st.tuples(
            usable_weights(),
            st.sampled_from(["yes", "no", "n/a", "failed"]),
            st.none() | st.floats(min_value=0, max_value=1),
            st.none() | st.floats(min_value=0, max_value=1),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_every_checklist_it_takes_scores_in_0_to_1_or_none(answers: list) -> None:
    items = [
        ChecklistItem(id=f"i{n}", requirement="Meets it.", weight=weight, gate_cap=cap)
        for n, (weight, _, _, cap) in enumerate(answers)
    ]
    verdicts = [
        ItemVerdict(item_id=f"i{n}", verdict=said, p_yes=p if said in ("yes", "no") else None)
        for n, (_, said, p, _) in enumerate(answers)
    ]
    scored = score_checklist(Checklist(source="column", items=items), verdicts)
    for value in (scored.score, scored.expected):
        assert value is None or math.isfinite(value) and 0.0 <= value <= 1.0, scored
    assert (scored.score is None) == (scored.status != "ok")
    assert math.isfinite(scored.failed_share) and 0.0 <= scored.failed_share <= 1.0


def test_a_weight_that_skipped_validation_is_an_error_not_a_division_by_zero() -> None:
    nan = ChecklistItem.model_construct(id="a", requirement="Meets A.", weight=math.nan, gate_cap=None)
    with pytest.raises(ConfigError, match="checklist items a: a weight is a finite number"):
        score_checklist(Checklist.model_construct(source="column", items=[nan], version=1), _verdicts(a="yes"))


def _unsure(**said: tuple[str, float]) -> list[ItemVerdict]:
    """Verdicts with the judge's P(yes): `a=("no", 0.45)`."""
    return [ItemVerdict(item_id=i, verdict=v, p_yes=p) for i, (v, p) in said.items()]  # type: ignore[arg-type]


def test_a_failed_gate_caps_the_expected_score_too() -> None:
    # a gated at 0.3 is answered no, yet the judge thought it likely met: the expected score is capped as the score is
    sure_of_the_rest = _unsure(a=("no", 0.45), b=("yes", 0.95), c=("yes", 0.95), p=("no", 0.05))
    gated = score_checklist(_checklist(gate_a=0.3), sure_of_the_rest)
    uncapped = (0.45 + 0.7 * 0.95 + 0.3 * 0.95 - 0.9 * 0.05 + 0.9) / 2.9
    assert uncapped > 0.3 and gated.cap == 0.3
    assert gated.score == pytest.approx(0.3) and gated.expected == pytest.approx(0.3)
    # the same P(yes) without the gate: the expected score stands uncapped
    assert score_checklist(_checklist(), sure_of_the_rest).expected == pytest.approx(uncapped)


def test_a_gated_response_loses_the_pair_even_where_its_probabilities_look_better() -> None:
    # the pair's preference compares the expected scores: a response that failed a gate must not win on them
    checklist = _checklist(gate_a=0.3)
    gated = score_checklist(checklist, _unsure(a=("no", 0.4), b=("yes", 0.9), c=("yes", 0.9), p=("no", 0.1)))
    plain = score_checklist(checklist, _unsure(a=("yes", 0.6), b=("no", 0.2), c=("no", 0.2), p=("yes", 0.7)))
    got = preference(gated, plain)
    assert got.from_probabilities and got.decision == "b" and got.p_a is not None and got.p_a < 0.5
    assert preference(plain, gated).decision == "a"
