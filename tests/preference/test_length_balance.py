"""`filters.length_balance`: the share of rows whose chosen response is the longer one is held within a band, by
dropping the over-represented side's least confident rows; counted in the waterfall, in memory and in SQLite alike."""

from pathlib import Path

import pytest

from charter.preference.config import FiltersConfig
from charter.preference.filters import Candidate, Selection, Waterfall, length_balance_drops, select
from charter.runs.counts import filter_steps


def _rows(longer: int, shorter: int, equal: int = 0) -> list[Candidate]:
    flags = [True] * longer + [False] * shorter + [None] * equal
    return [
        Candidate(i, f"p{i}", "revision", "a", "b", 0.6 + 0.39 * ((i * 37) % 100) / 100, None, True, "harm",
                  bytes([i % 256, i // 256]), None, flag)
        for i, flag in enumerate(flags)
    ]  # fmt: skip


def test_the_drops_bring_the_share_into_the_band() -> None:
    assert length_balance_drops(80, 20, (0.4, 0.6)) == (True, 50)  # 30 / 50 = 0.6
    assert length_balance_drops(10, 90, (0.4, 0.6)) == (False, 75)  # 10 / 25 = 0.4
    assert length_balance_drops(50, 50, (0.4, 0.6)) == (None, 0)
    assert length_balance_drops(0, 0, (0.4, 0.6)) == (None, 0)


@pytest.mark.parametrize("stored", [False, True])
def test_a_judge_that_favours_length_is_balanced_least_confident_first(tmp_path: Path, stored: bool) -> None:
    rows = _rows(longer=160, shorter=40, equal=10)
    filters = FiltersConfig(length_balance=(0.4, 0.6), dedupe=False)
    if stored:
        selection = Selection(tmp_path / "scratch.sqlite", Waterfall(filters), "all", window=17)
        for row in rows:
            selection.add_candidate(row)
        counts = selection.run()
        kept = list(selection.kept())
        selection.close()
    else:
        kept, counts = select(rows, filters)
    by_index = {r.index: r for r in rows}
    longer = sum(by_index[i].chosen_longer is True for i in kept)
    shorter = sum(by_index[i].chosen_longer is False for i in kept)
    assert (
        longer / (longer + shorter) == pytest.approx(0.6) and shorter == 40 and counts["dropped_length_balance"] == 100
    )
    dropped = [r for r in rows if r.index not in set(kept)]
    assert max(r.p_chosen for r in dropped) <= min(r.p_chosen for r in rows if r.index in kept and r.chosen_longer)
    assert sum(by_index[i].chosen_longer is None for i in kept) == 10  # equal lengths are left alone
    steps = {s["step"]: s for s in filter_steps(counts)}
    assert steps["over the length balance (chosen the longer too often, or too rarely)"]["remaining"] == len(kept)


def test_the_band_is_checked() -> None:
    with pytest.raises(ValueError, match="low <= high"):
        FiltersConfig(length_balance=(0.7, 0.3))
