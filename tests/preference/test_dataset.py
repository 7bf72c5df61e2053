"""Preference rows and filters."""

from __future__ import annotations

from charter.preference.config import FiltersConfig
from charter.preference.dataset import apply_filters, preference_row
from charter.records import Judgment, Message, Pair, Provenance, Vote

PROV = Provenance(run_id="r", created_at="2025-01-01T00:00:00Z", constitution_name="c", constitution_hash="h",
                  settings_fingerprint="s")


def judged(pair_id: str, p_a: float, consistent: bool | None = True, principle: str = "p0", a: str = "A text",
           prompt_id: str | None = None, a_source: str = "initial", b_source: str = "revision",
           kind: str = "revision"):
    pair = Pair(pair_id=pair_id, prompt_id=prompt_id or pair_id, kind=kind, prompt=[Message(role="user", content="q")],
                a=a, b="B text", a_source=a_source, b_source=b_source)
    p_ba = p_a if consistent is not False else 1 - p_a
    vote = Vote(principle_id=principle, p_a=p_a, p_a_ab=p_a, p_a_ba=p_ba, consistent=consistent)
    judgment = Judgment(pair_id=pair_id, fingerprint="j", status="ok", mode="logprobs", orders="both",
                        judge_model="j", principle_ids=[principle], p_a=p_a, p_a_ab=p_a, p_a_ba=p_ba,
                        position_consistent=consistent, principles=[vote])
    return preference_row(pair, judgment, PROV)


def test_chosen_is_the_preferred_response_with_probability_in_its_terms():
    row = judged("x", 0.2)
    assert row.chosen[0].content == "B text" and row.chosen_source == "revision"
    assert abs(row.p_chosen - 0.8) < 1e-9 and abs(row.margin - 0.6) < 1e-9
    assert row.per_principle[0].p_chosen == 0.8 and row.per_order.ab == 0.8
    assert row.run_id == "r" and row.synthetic and row.judge_fingerprint == "j"


def test_the_row_form_round_trips():
    row = judged("x", 0.2)
    flat = row.to_row()
    assert isinstance(flat["per_principle"], str) and list(flat)[:3] == ["prompt", "chosen", "rejected"]
    assert type(row).from_row(flat) == row


def test_filters_count_what_they_drop():
    rows = [judged("tie", 0.5), judged("weak", 0.55), judged("incons", 0.9, consistent=False),
            judged("ok1", 0.9), judged("dup", 0.9), judged("cap1", 0.8, principle="p1", a="one"),
            judged("cap2", 0.8, principle="p1", a="two")]
    kept, counts = apply_filters(rows, FiltersConfig(min_confidence=0.1, max_per_principle=1))
    assert [r.pair_id for r in kept] == ["ok1", "cap1"]
    assert counts["dropped_ties"] == 1 and counts["dropped_low_confidence"] == 1
    assert counts["dropped_inconsistent"] == 1 and counts["dropped_duplicates"] == 1
    assert counts["dropped_principle_cap"] == 1 and counts["preferences"] == 2


def test_best_vs_worst_keeps_one_pair_per_prompt():
    def sample_row(left: int, right: int, p_left: float):
        return judged(f"q:s{left}-s{right}", p_left, prompt_id="q", a_source=f"sample:{left}",
                      b_source=f"sample:{right}", kind="samples")

    rows = [sample_row(0, 1, 0.9), sample_row(0, 2, 0.6), sample_row(1, 2, 0.3)]
    kept, counts = apply_filters(rows, FiltersConfig(), strategy="best_vs_worst")
    assert len(kept) == 1 and {kept[0].chosen_source, kept[0].rejected_source} == {"sample:0", "sample:1"}
    assert counts["dropped_not_best_vs_worst"] == 2
