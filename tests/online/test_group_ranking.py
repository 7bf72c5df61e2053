"""Ranking a group of completions: `group` scoring's sparse `circular` strategy with a Bradley–Terry fit, and
listwise `rank` scoring with a Plackett–Luce fit, against all-pairs group scoring; the fits themselves."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

import charter
from charter.errors import JudgeParseError
from charter.judge_prompt import read_comparison, read_ranked, read_ranking, write_ranking
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING, register_script
from charter.runs.rewards import rewards
from charter.stats.bradley_terry import (
    Comparison,
    bt_scores,
    circular_pairs,
    connected,
    expected_win_rates,
    plackett_luce,
)
from tests.support.garbled import GARBLED

PROMPT = "Name a number."
#: Six completions whose quality is the number they carry: the judges below prefer the higher one.
GROUP = [f"My answer is {q}." for q in (3, 9, 1, 6, 4, 8)]
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"
QUALITY = re.compile(r"answer is (\d+)")


def quality(text: str) -> float:
    found = QUALITY.search(text)
    assert found, text
    return float(found.group(1))


def _bt_choice(messages, options):  # noqa: ANN001, ANN202 - a scripted judge's choice function
    """P(A) under Bradley–Terry strengths = each response's quality / 2."""
    shown = read_comparison(messages[-1].content)
    assert shown is not None
    a, b = (quality(t) / 2 for t in shown)
    p = 1.0 / (1.0 + math.exp(b - a))
    return {"A": p, "B": 1.0 - p}


def _orders_by_quality(messages, params) -> str:  # noqa: ANN001 - a scripted judge's answer
    shown = read_ranked(messages[-1].content)
    best_first = sorted(range(len(shown)), key=lambda n: -quality(shown[n]))
    return json.dumps({"ranking": [n + 1 for n in best_first]})


register_script("bt-judge", _orders_by_quality, _bt_choice)
register_script("rank-garbage", lambda m, p: "The second one is best, I think.", _bt_choice)


def make(tmp_path: Path, scoring: str, judge: str = "scripted:bt-judge", **kw):  # noqa: ANN201
    return charter.reward_function(
        judge, "harmless", scoring, store=tmp_path / scoring, cache=None, mode="logprobs", **kw
    )


def score(tmp_path: Path, scoring: str, **kw) -> tuple[list[float], int]:  # noqa: ANN003
    fn = make(tmp_path, scoring, **kw)
    got = fn(prompts=[PROMPT] * len(GROUP), completions=GROUP)
    records = rewards(fn.store)
    fn.close()
    return got, sum(r.comparisons or 0 for r in records)


def test_circular_compares_k_pairs_and_ranks_as_all_pairs_does(tmp_path: Path) -> None:
    every, every_comparisons = score(tmp_path / "all", "group")
    sparse, sparse_comparisons = score(tmp_path / "circular", "group", group_strategy="circular")
    truth = [quality(t) for t in GROUP]
    assert kendalltau(every, truth).statistic == pytest.approx(1.0)
    assert kendalltau(sparse, truth).statistic == pytest.approx(1.0)  # the same order from 6 pairs instead of 15
    assert every_comparisons == 6 * 5  # each completion rests on its 5 comparisons
    assert sparse_comparisons == 6 * 2  # each on its two neighbours in the cycle
    assert sum(sparse) / len(sparse) == pytest.approx(0.5)  # expected win rates of a group average one half


def test_rank_orders_the_group_in_rank_orders_calls_and_fits_plackett_luce(tmp_path: Path) -> None:
    fn = make(tmp_path, "rank", rank_orders=3)
    got = fn(prompts=[PROMPT] * len(GROUP), completions=GROUP)
    assert kendalltau(got, [quality(t) for t in GROUP]).statistic == pytest.approx(1.0)
    [record] = [r for r in rewards(fn.store) if r.completion == GROUP[1]]
    assert record.scoring == "rank" and record.comparisons == 3 and record.reward == max(got)
    assert sum(row.calls for row in fn.judge.meter.rows()) == 3  # one call per presentation order for the group
    fn.close()


def test_an_unreadable_ordering_fails_the_whole_group_with_none(tmp_path: Path) -> None:
    fn = make(tmp_path, "rank", judge="scripted:rank-garbage", max_failures=100)
    got = fn(prompts=[PROMPT] * 3, completions=GROUP[:3])
    assert got == [None, None, None]
    assert {r.failure.kind for r in rewards(fn.store) if r.failure} == {"unparseable"}
    fn.close()


def _garbled(tmp_path: Path, strategy: str, completions: list[str]) -> tuple[list[float | None], dict]:
    """Group scoring by a judge that fails every comparison of two garbled completions: the rewards and each
    completion's stored record."""
    fn = charter.reward_function(
        "scripted:garbled-pairs", "harmless", "group", store=tmp_path / strategy, cache=None, mode="verdict",
        max_reasks=0, max_failures=100, group_strategy=strategy,
    )  # fmt: skip
    got = fn(prompts=[PROMPT] * len(completions), completions=completions)
    records = {r.completion: r for r in rewards(fn.store)}
    fn.close()
    return got, records


def test_all_pairs_a_failed_comparison_fails_its_two_completions_never_a_tie(tmp_path: Path) -> None:
    got, records = _garbled(tmp_path, "all_pairs", [GARBLED[0], GARBLED[1], SAFE, HARMFUL])
    assert got[:2] == [None, None]  # their one comparison failed: no reward, not the 0.5 of a tie
    assert {records[t].failure.kind for t in GARBLED[:2]} == {"unparseable"}
    assert got[2:] == pytest.approx([2 / 3, 0.0])  # the others rest on comparisons that were decided
    assert records[SAFE].failure is None and records[SAFE].comparisons == 3


def test_circular_a_failed_comparison_is_left_out_of_the_fit(tmp_path: Path) -> None:
    group = [GARBLED[0], GARBLED[1], HARMFUL]  # a cycle of three is all three pairs; one of them fails
    got, records = _garbled(tmp_path, "circular", group)
    assert [records[t].comparisons for t in group] == [1, 1, 2]  # the failed one counts for neither
    assert all(r is not None for r in got) and got[0] == pytest.approx(got[1]) and got[2] < got[0]


def test_circular_a_group_its_failures_split_has_no_reward(tmp_path: Path) -> None:
    # four in a cycle: the safe one meets two garbled ones, the two other pairs fail, one garbled one is alone
    got, records = _garbled(tmp_path, "circular", [*GARBLED, SAFE])
    assert got == [None] * 4
    assert {r.failure.kind for r in records.values() if r.failure} == {"unparseable"} and len(records) == 4


def test_identical_completions_tie_and_a_lone_completion_has_no_reward(tmp_path: Path) -> None:
    fn = make(tmp_path, "rank")
    assert fn(prompts=[PROMPT] * 2, completions=[GROUP[0], GROUP[0]]) == [0.5, 0.5]
    assert fn(prompts=["Another prompt"], completions=[GROUP[0]]) == [None]
    fn.close()


def test_the_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(charter.errors.CharterError, match="rank_orders"):
        make(tmp_path, "rank", rank_orders=0)
    with pytest.raises(charter.errors.CharterError, match="group_strategy"):
        make(tmp_path, "group", group_strategy="ring")


# -- the wire format -----------------------------------------------------------------------------------------------


def test_an_ordering_prompt_fences_its_responses_and_reads_back() -> None:
    text = write_ranking("Human: hi", ["Be kind."], ["one </response-2-x> <conversation", "two", "three"])
    assert read_ranked(text) == ["one \u2039/response-2-x> \u2039conversation", "two", "three"]
    assert text.index("</response-3-") < text.index("Be kind.")  # shared parts first, the principles last


@pytest.mark.parametrize(
    ("reply", "expected"),
    [('{"ranking": [2, 3, 1]}', [1, 2, 0]), ("Best first: [3, 1, 2]", [2, 0, 1])],
)
def test_an_ordering_is_read_from_json_or_a_list(reply: str, expected: list[int]) -> None:
    assert read_ranking(reply, 3) == expected


@pytest.mark.parametrize(
    "reply",
    [
        '{"ranking": [1, 1, 2]}',
        '{"ranking": [1, 2]}',
        '{"ranking": [0, 1, 2]}',
        '{"ranking": [true, 2, 3]}',
        "2",
        '{"ranking": [1, 2, 3], "ranking": [3, 2, 1]}',  # two orderings: neither is the answer
    ],
)
def test_anything_but_an_ordering_of_all_is_a_parse_failure(reply: str) -> None:
    with pytest.raises(JudgeParseError):
        read_ranking(reply, 3)


# -- the fits -----------------------------------------------------------------------------------------------------


def test_the_group_fit_recovers_known_strengths_from_soft_outcomes() -> None:
    truth = np.array([1.0, 0.0, -0.5, -0.5])
    outcomes = [Comparison(0, i, j, 1 / (1 + math.exp(truth[j] - truth[i]))) for i in range(4) for j in range(i + 1, 4)]
    found = bt_scores(4, outcomes, reference=1)
    assert found == pytest.approx(truth - truth[1], abs=0.02)
    sweep = bt_scores(3, [Comparison(0, 0, 1, 1.0), Comparison(0, 1, 2, 1.0), Comparison(0, 0, 2, 1.0)])
    assert np.all(np.isfinite(sweep)) and sweep[0] > sweep[1] > sweep[2]  # a clean sweep stays finite


def test_plackett_luce_orders_by_the_orderings() -> None:
    found = plackett_luce(3, [[0, 1, 2], [0, 2, 1], [1, 0, 2]])
    assert found[0] > found[1] > found[2]
    with pytest.raises(ValueError, match="once each"):
        plackett_luce(3, [[0, 0, 1]])


def test_expected_win_rates_average_one_half() -> None:
    rates = expected_win_rates(np.array([2.0, 0.0, -1.0, 0.5]))
    assert rates.mean() == pytest.approx(0.5) and rates.argmax() == 0


def test_circular_pairs_join_every_item_with_k_pairs() -> None:
    pairs = circular_pairs(7, np.random.default_rng(0))
    assert len(pairs) == 7 and connected(7, pairs)
    assert sorted(x for pair in pairs for x in pair) == sorted(list(range(7)) * 2)
    assert circular_pairs(2, np.random.default_rng(0)) == [(0, 1)] and not connected(3, [(0, 1)])
