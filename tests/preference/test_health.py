"""The sentences a reader sees first: the test of a judge at chance holds its error rate at every n, and the
failure and few-rows sentences name every count."""

from __future__ import annotations

import random
from math import comb

import pytest

from charter.preference.stats import (
    JudgeStats,
    chance_sentence,
    chance_stats,
    failure_sentence,
    headline,
    judge_stats,
    rows_sentence,
)
from tests.support.rundir import RunBuilder


@pytest.mark.parametrize("n", [3, 5, 10, 16, 30, 60])
def test_a_judge_at_chance_passes_for_one_at_most_one_time_in_40(n: int) -> None:
    """A judge that ignores the responses is decisive on a pair with probability at most 1/2; at exactly 1/2 (its
    worst case), the chance of a run of n pairs not being flagged, summed exactly over the binomial, is <= 2.5%."""
    passes = sum(
        comb(n, k) for k in range(n + 1) if chance_sentence(JudgeStats(position_checked=n, decisive=k)) is None
    )
    assert passes / 2**n <= 0.025


@pytest.mark.parametrize("q", [0.5, 0.7, 1.0])
def test_a_judge_blind_to_the_responses_is_decisive_at_most_half_the_time(tmp_path, q: float) -> None:
    """A content-blind judge by simulation, through the run store: each order's reading picks a position (the first
    with probability q), so the same response wins both orders only when the positions differ. The status' light
    count and the report's full pass agree."""
    rng = random.Random(0)
    with RunBuilder(tmp_path / "run") as run:
        for i in range(300):
            first, second = rng.random() < q, rng.random() < q
            p_ab = 0.6 if first else 0.4  # a shown first
            p_ba = 0.4 if second else 0.6  # a shown second: the first position is b
            run.pair(f"p{i}", f"q{i}", f"answer {i}", f"revision {i}")
            run.judgment(f"p{i}", (p_ab + p_ba) / 2, p_ab, p_ba)
        light, full = chance_stats(run.store, run.fp), judge_stats(run.store, run.fp)
    assert light.decisive == full.decisive and light.position_checked == full.position_checked == 300
    assert light.decisive / 300 <= 0.5 + 0.06
    assert chance_sentence(light) is not None


def test_the_sentence_names_the_figures() -> None:
    stats = JudgeStats(position_checked=16, position_inconsistent=16, decisive=0)
    assert chance_sentence(stats) == (
        "These preferences cannot be told from chance: the judge picked the same response in both orders in 0 of 16 "
        "pairs (0.0%, 95% CI 0.0-20.6%), where a judge that ignores the responses does so in at most half; 16 of 16 "
        "pairs (100.0%) were position-inconsistent."
    )
    assert chance_sentence(JudgeStats(position_checked=16, decisive=16)) is None
    assert chance_sentence(JudgeStats(position_checked=16, decisive=12)) is not None  # 75%, CI down to 47.6%
    assert chance_sentence(JudgeStats(position_checked=16, decisive=13)) is None
    assert chance_sentence(JudgeStats(judged=16)) is None  # one order: nothing separates content from position
    # identical responses can be decided by no judge: they are left out of the test
    assert chance_sentence(JudgeStats(position_checked=20, decisive=16, identical=4)) is None


def test_failures_and_few_rows_name_every_count() -> None:
    counts = {"prompts_used": 16, "pairs": 16, "judged": 4, "judge_failures": 12, "preferences": 3,
              "preferences_before_filters": 4, "dropped_ties": 1}  # fmt: skip
    kinds = {"judge": {"unparseable": 10, "provider": 2}}
    assert failure_sentence(kinds, counts) == (
        "12 of 16 judgments (unparseable: 10, provider: 2) failed; a failed item makes no row."
    )
    assert rows_sentence(counts) == (
        "Only 3 preference rows from 16 response pairs (18.8%): 12 judgments failed; 1 dropped by the filter 'ties'."
    )
    assert rows_sentence({**counts, "preferences": 8}) is None  # half kept
    assert headline(None, {**counts, "preferences": 8}, {}) == []
