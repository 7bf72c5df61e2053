"""Preference rows and filters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.preference.config import FiltersConfig
from charter.preference.filters import apply_filters
from charter.preference.rows import preference_row
from charter.records import Judgment, Message, Pair, Provenance, Vote

PROV = Provenance(
    run_id="r",
    created_at="2025-01-01T00:00:00Z",
    constitution_name="c",
    constitution_hash="h",
    settings_fingerprint="s",
)


def judged(
    pair_id: str,
    p_a: float,
    consistent: bool | None = True,
    principle: str = "p0",
    a: str = "A text",
    prompt_id: str | None = None,
    a_source: str = "initial",
    b_source: str = "revision",
    kind: str = "revision",
):
    pair = Pair(
        pair_id=pair_id,
        prompt_id=prompt_id or pair_id,
        kind=kind,
        prompt=[Message(role="user", content="q")],
        a=a,
        b="B text",
        a_source=a_source,
        b_source=b_source,
    )
    p_ba = p_a if consistent is not False else 1 - p_a
    vote = Vote(principle_id=principle, p_a=p_a, p_a_ab=p_a, p_a_ba=p_ba, consistent=consistent)
    judgment = Judgment(
        pair_id=pair_id,
        fingerprint="j",
        status="ok",
        mode="logprobs",
        orders="both",
        judge_model="j",
        principle_ids=[principle],
        p_a=p_a,
        p_a_ab=p_a,
        p_a_ba=p_ba,
        position_consistent=consistent,
        principles=[vote],
    )
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
    rows = [
        judged("tie", 0.5),
        judged("weak", 0.55),
        judged("incons", 0.9, consistent=False),
        judged("ok1", 0.9),
        judged("dup", 0.9),
        judged("cap1", 0.8, principle="p1", a="one"),
        judged("cap2", 0.8, principle="p1", a="two"),
    ]
    kept, counts = apply_filters(rows, FiltersConfig(min_confidence=0.1, max_per_principle=1))
    assert [r.pair_id for r in kept] == ["ok1", "cap1"]
    assert counts["dropped_ties"] == 1 and counts["dropped_low_confidence"] == 1
    assert counts["dropped_inconsistent"] == 1 and counts["dropped_duplicates"] == 1
    assert counts["dropped_principle_cap"] == 1 and counts["preferences"] == 2


def test_best_vs_worst_keeps_one_pair_per_prompt():
    def sample_row(left: int, right: int, p_left: float):
        return judged(
            f"q:s{left}-s{right}",
            p_left,
            prompt_id="q",
            a_source=f"sample:{left}",
            b_source=f"sample:{right}",
            kind="samples",
        )

    rows = [sample_row(0, 1, 0.9), sample_row(0, 2, 0.6), sample_row(1, 2, 0.3)]
    kept, counts = apply_filters(rows, FiltersConfig(), strategy="best_vs_worst")
    assert len(kept) == 1 and {kept[0].chosen_source, kept[0].rejected_source} == {"sample:0", "sample:1"}
    assert counts["dropped_not_best_vs_worst"] == 2


# -- the filters' engine (SQLite, a window at a time) against a plain pass over a list ---------------------------


from charter.preference.filters import Candidate, Selection, Waterfall, best_vs_worst, first_counts, select  # noqa: E402  # noqa: E402


def plain_select(rows: list[Candidate], filters: FiltersConfig, strategy: str, calibrated: float | None):
    """The waterfall as a plain loop over a list: what the engine must keep and count (without the length
    balance, which tests/preference/test_length_balance.py holds to its own figures)."""
    counts = first_counts(any(r.chosen_verified is not None for r in rows), strategy, len(rows), False)
    if strategy == "best_vs_worst":
        best = {row.index for row in best_vs_worst(rows)}
        counts["dropped_not_best_vs_worst"] = len(rows) - len(best)
        rows = [row for row in rows if row.index in best]
    waterfall, kept, seen = Waterfall(filters, calibrated), [], set()
    for row in rows:
        reason = waterfall.alone(row) or waterfall.after(row.first_principle, row.digest in seen)
        if reason:
            counts[reason] += 1
            continue
        seen.add(row.digest)
        kept.append(row)
    counts["preferences"] = len(kept)
    counts["calibrated"] = sum(row.p_chosen_calibrated is not None for row in kept)
    return [row.index for row in kept], counts


_candidate = st.builds(
    lambda prompt, kind, sources, p, cal, consistent, principle, text, verified: (
        prompt,
        kind,
        *sources,
        p,
        cal,
        consistent,
        principle,
        text,
        verified,
    ),
    st.sampled_from(["q0", "q1", "q2"]),
    st.sampled_from(["revision", "samples"]),
    st.permutations(["s0", "s1", "s2"]).map(lambda s: s[:2]),
    st.sampled_from([0.5, 0.55, 0.6, 0.7, 0.9, 1.0]),
    st.one_of(st.none(), st.sampled_from([0.4, 0.55, 0.8])),
    st.sampled_from([True, False, None]),
    st.sampled_from(["p0", "p1"]),
    st.sampled_from([b"t0", b"t1", b"t2"]),
    st.sampled_from([True, False, None]),
)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(_candidate, max_size=40),
    dedupe=st.booleans(),
    cap=st.sampled_from([None, 1, 3]),
    ties=st.booleans(),
    inconsistent=st.booleans(),
    min_confidence=st.sampled_from([0.0, 0.1]),
    verify=st.sampled_from(["drop", "mark"]),
    strategy=st.sampled_from(["all", "best_vs_worst"]),
    calibrated=st.sampled_from([None, 0.2]),
)
def test_the_filters_engine_keeps_what_a_plain_pass_keeps(
    tmp_path_factory, rows, dedupe, cap, ties, inconsistent, min_confidence, verify, strategy, calibrated
):
    """The filters run over SQLite a window at a time (flat memory at a million rows), in a scratch file or in
    memory, keep exactly the rows, and count exactly the drops, of a plain pass over the list."""
    candidates = [Candidate(i, *row) for i, row in enumerate(rows)]
    filters = FiltersConfig(
        dedupe=dedupe,
        max_per_principle=cap,
        drop_ties=ties,
        drop_inconsistent=inconsistent,
        min_confidence=min_confidence,
        verify=verify,
    )
    kept, counts = plain_select(candidates, filters, strategy, calibrated)
    assert select(candidates, filters, strategy, calibrated) == (kept, counts)
    selection = Selection(
        tmp_path_factory.mktemp("sel") / "s.sqlite", Waterfall(filters, calibrated), strategy, window=3
    )  # windows smaller than the data
    try:
        for candidate in candidates:
            selection.add_candidate(candidate)
        assert selection.run() == counts
        assert list(selection.kept()) == kept
    finally:
        selection.close()


def test_filters_drop_from_a_written_dataset_without_building_rows_twice(tmp_path):
    """write_dataset with `keep` writes every row once and copies the kept ones into place, both files."""
    from charter.runs.files import RunFiles
    from charter.tables import read_jsonl

    rows = [judged(f"x{i}", 0.9 - i / 100, a=f"A {i}") for i in range(7)]
    files = RunFiles(tmp_path)
    built = []
    files.write_dataset("preferences", (built.append(r) or r for r in rows), keep=lambda: iter([1, 4, 5]))
    assert len(built) == 7
    assert [r["pair_id"] for r in files.dataset_rows("preferences")] == ["x1", "x4", "x5"]
    assert [row["pair_id"] for row in read_jsonl(files.dataset_path("preferences", ".jsonl"))] == ["x1", "x4", "x5"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["preferences.jsonl", "preferences.parquet"]


def test_a_large_sft_file_is_written_by_a_second_process_the_same(tmp_path, monkeypatch):
    """From SFT_BESIDE chains the SFT file is written by a fresh Python process while this one writes the
    preferences: same rows and counts as written here; a failure there is a one-line error here."""
    from charter.errors import DatasetError
    from charter.preference import dataset
    from charter.runs.files import RunFiles
    from tests.support.rundir import RunBuilder

    def build(folder, beside):
        monkeypatch.setattr(dataset, "SFT_BESIDE", 1 if beside else 10**9)
        with RunBuilder(folder) as run:
            for i in range(5):
                run.chain(f"q{i}", ["harm"], final=f"revised {i}")
                run.pair(f"x{i}", f"q{i}", f"answer {i}", f"other {i}")
                run.judgment(f"x{i}", 0.9)
            return run.write_dataset().counts, RunFiles(folder).dataset_rows("sft")

    here, beside = build(tmp_path / "here", False), build(tmp_path / "beside", True)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "created_at"} for r in rows]  # noqa: E731
    assert here[0]["sft"] == beside[0]["sft"] == 5 and strip(here[1]) == strip(beside[1])

    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "nowhere"))
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "sitecustomize.py").write_text("raise SystemExit('the second process could not start')")
    with pytest.raises(DatasetError, match=r"^writing data/sft\.\* in a second process failed: .*could not start$"):
        build(tmp_path / "broken", True)
