"""Votes combined in priority order (`judge.combine: priority`): a decisive verdict at a higher level wins over any
number of verdicts below it, undecided levels fall through, a hard constraint comes first, lower levels are not asked
once a higher one settles the pair (`settle_early`), conflicts between levels are recorded; the weighted mean stays
the default with the fingerprint it always had; a default principle's prompt says who may override it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import charter
from charter.constitutions.schema import Constitution
from charter.errors import ConfigError
from charter.judge.compare import comparison_prompt
from charter.judge.judgment import COMBINATIONS, priority_tiers, side
from charter.judge.pairwise import combination_lines, combination_summary, judge_fingerprint, judge_pair
from charter.judge.settings import JudgeConfig, JudgeSettings
from charter.providers import get_model
from charter.records import Judgment, Message, Pair
from charter.yamlio import model_from_data
from tests.support.priority import (
    CALLS,
    JUDGE,
    LONG,
    PROMPT,
    SAFE,
    ordered_constitution,
    principle,
    register_priority_judge,
)

register_priority_judge()
ALL = ["helpful", "safety", "detail"]


def _judge(constitution: Constitution, a: str, b: str, **settings: object) -> Judgment:
    judged = JudgeSettings(principles=ALL, **settings)  # type: ignore[arg-type]
    pair = Pair(pair_id="p", prompt=PROMPT, a=a, b=b)
    fp = judge_fingerprint(judged, JUDGE, constitution, 0)
    return asyncio.run(judge_pair(get_model(JUDGE), constitution, pair, judged, ALL, fp))


@pytest.mark.parametrize("mode", ["logprobs", "verdict", "cot"])
def test_a_decisive_higher_level_decides_whatever_the_levels_below_say(mode: str) -> None:
    constitution = ordered_constitution()
    weighted = _judge(constitution, SAFE, LONG, mode=mode)
    ordered = _judge(constitution, SAFE, LONG, mode=mode, combine="priority")
    assert weighted.p_a is not None and weighted.p_a < 0.5  # two user-level votes for LONG outweigh one root vote
    assert ordered.p_a is not None and ordered.p_a > 0.5  # the root level settles it for SAFE
    assert weighted.combined is None
    assert ordered.combined is not None and ordered.combined.settled_by == "root"
    pairs = {(c.settled_by, c.level, c.overruled, c.overruled_level) for c in ordered.combined.conflicts}
    assert pairs == {("safety", "root", "helpful", "user"), ("safety", "root", "detail", "user")}
    assert [v.principle_id for v in ordered.principles] == ["safety", "helpful", "detail"]  # highest level first


def test_the_same_pair_either_way_round_is_settled_for_the_same_response() -> None:
    flipped = _judge(ordered_constitution(), LONG, SAFE, combine="priority")
    assert flipped.p_a is not None and flipped.p_a < 0.5
    assert flipped.combined is not None and len(flipped.combined.conflicts) == 2


def test_settling_early_asks_no_lower_level_and_records_what_it_skipped() -> None:
    CALLS.clear()
    early = _judge(ordered_constitution(), SAFE, LONG, combine="priority", settle_early=True)
    assert CALLS == {"SAFE": 2}  # both orders of the root principle; no user-level call
    assert early.combined is not None
    assert early.combined.skipped == ["helpful", "detail"] and early.combined.conflicts == []
    assert [v.principle_id for v in early.principles] == ["safety"]
    assert early.principle_ids == ALL
    CALLS.clear()
    _judge(ordered_constitution(), SAFE, LONG, combine="priority")
    assert CALLS == {"SAFE": 2, "LONG": 4}


def test_an_undecided_level_falls_through_to_the_next() -> None:
    both_safe = f"{LONG} SAFE"
    judged = _judge(ordered_constitution(), "SAFE and short", both_safe, combine="priority", settle_early=True)
    assert judged.combined is not None and judged.combined.settled_by == "user"
    assert judged.p_a is not None and judged.p_a < 0.5
    assert judged.combined.skipped == [] and judged.combined.conflicts == []


def test_no_decisive_level_gives_the_mean_and_settles_nothing() -> None:
    judged = _judge(ordered_constitution(), SAFE, LONG, combine="priority", combine_margin=0.45)
    assert judged.combined is not None and judged.combined.settled_by is None and judged.combined.conflicts == []
    assert judged.p_a == pytest.approx((0.9 + 0.1 + 0.1) / 3)


def test_orders_that_disagree_are_undecided() -> None:
    assert side(0.9, 0.1) == 0 and side(0.9, 0.8) == 1 and side(0.2, None) == -1 and side(0.5, None) == 0


def test_a_hard_constraint_comes_before_every_level() -> None:
    constitution = Constitution.model_validate(
        {
            "name": "hard",
            "levels": ["root", "user"],
            "principles": [
                principle("helpful", "user", "LONG", hard=True),
                principle("safety", "root", "SAFE"),
                principle("detail", "user", "LONG"),
            ],
        }
    )
    assert priority_tiers(constitution, ALL) == [("hard", ["helpful"]), ("root", ["safety"]), ("user", ["detail"])]
    judged = _judge(constitution, SAFE, LONG, combine="priority")
    assert judged.p_a is not None and judged.p_a < 0.5
    assert judged.combined is not None and judged.combined.settled_by == "hard"
    assert {(c.settled_by, c.overruled) for c in judged.combined.conflicts} == {("helpful", "safety")}


def test_principles_ordered_by_number_and_a_flat_constitution() -> None:
    numbered = Constitution.model_validate(
        {
            "name": "numbered",
            "principles": [
                {**principle("helpful", "x", "LONG"), "level": None, "priority": 2},
                {**principle("safety", "x", "SAFE"), "level": None, "priority": 1},
                {**principle("detail", "x", "LONG"), "level": None, "priority": 2},
            ],
        }
    )
    assert [name for name, _ in priority_tiers(numbered, ALL)] == ["priority 1", "priority 2"]
    assert _judge(numbered, SAFE, LONG, combine="priority").p_a == pytest.approx(0.9)
    flat = Constitution.model_validate(
        {"name": "flat", "principles": [{**principle(p, "x", "LONG"), "level": None} for p in ALL]}
    )
    assert priority_tiers(flat, ALL) == [("all", ALL)]


def test_the_weighted_default_keeps_its_fingerprint_and_priority_changes_it() -> None:
    constitution = ordered_constitution()
    default = judge_fingerprint(JudgeSettings(), "m", constitution, 0)
    assert judge_fingerprint(JudgeSettings(combine="weighted", combine_margin=0.2), "m", constitution, 0) == default
    ordered = judge_fingerprint(JudgeSettings(combine="priority"), "m", constitution, 0)
    early = judge_fingerprint(JudgeSettings(combine="priority", settle_early=True), "m", constitution, 0)
    assert len({default, ordered, early}) == 3
    assert "combined by priority" in JudgeSettings(combine="priority").describe()
    assert "combined" not in JudgeSettings().describe()


def test_the_rules_are_a_table_and_an_unknown_one_is_one_line() -> None:
    assert list(COMBINATIONS) == ["weighted", "priority"]
    assert JudgeSettings.model_json_schema()["properties"]["combine"]["enum"] == ["weighted", "priority"]
    with pytest.raises(ConfigError, match="combined by one of weighted, priority, not 'lexical'"):
        model_from_data(JudgeSettings, {"combine": "lexical"}, "judge")


def test_a_panel_refuses_priority() -> None:
    with pytest.raises(ConfigError, match="combine priority judges with one judge model"):
        model_from_data(JudgeConfig, {"models": ["scripted:a", "scripted:b"], "combine": "priority"}, "judge")


def test_the_summary_counts_conflicts_per_pair_of_principles() -> None:
    constitution = ordered_constitution()
    judged = [
        _judge(constitution, SAFE, LONG, combine="priority"),
        _judge(constitution, LONG, SAFE, combine="priority"),
    ]
    summary = combination_summary(judged)
    assert summary == {
        "rule": "priority",
        "judged": 2,
        "settled_by": {"root": 2},
        "settled_early": 0,
        "skipped_principles": 0,
        "conflicts": {"safety > helpful": 2, "safety > detail": 2},
    }
    assert "| safety > helpful | 2 |" in combination_lines(summary)
    assert combination_summary([_judge(constitution, SAFE, LONG)]) is None


def test_a_default_principles_prompt_says_who_may_override_it_and_who_speaks() -> None:
    constitution = Constitution.model_validate(
        {
            "name": "defaults",
            "levels": ["root", "system", "developer", "user", "guideline"],
            "principles": [
                principle("tone", "guideline", "LONG", default=True, overridable_by=["developer", "user"]),
                principle("safety", "root", "SAFE"),
            ],
        }
    )
    conversation = [Message(role="system", content="Answer in French."), Message(role="user", content=PROMPT)]
    [asked] = comparison_prompt(conversation, SAFE, LONG, constitution.principle("tone"), "Answer A or B.")
    assert "This principle is a default" in asked.content
    assert "at level developer, user may override it" in asked.content
    assert "System messages speak at level system; Human messages speak at level user" in asked.content
    assert asked.content.index("This principle is a default") < asked.content.index("[prefers LONG]")
    [fixed] = comparison_prompt(conversation, SAFE, LONG, constitution.principle("safety"), "Answer A or B.")
    assert "default" not in fixed.content and "speak at level" not in fixed.content


def test_a_principle_in_a_chain_of_command_sees_the_system_message_a_flat_one_does_not() -> None:
    """Under a principle with a level the judge sees who said what at which authority, system messages included; a
    flat constitution's prompt stays as it was (so its stored judgments resume without a new call)."""
    spec = charter.import_constitution(Path(__file__).parents[2] / "examples" / "tiny-spec.md")
    ranked = spec.principles[0]
    flat = charter.load_constitution("harmless").principles[0]
    prompt = [Message(role="system", content="Answer only in French."), Message(role="user", content="hi")]
    assert ranked.ranked and not flat.ranked
    shown = comparison_prompt(prompt, "a", "b", ranked, "Answer A or B.")[0].content
    assert "Answer only in French." in shown and "SYSTEM" in shown.upper()
    assert "Answer only in French." not in comparison_prompt(prompt, "a", "b", flat, "Answer A or B.")[0].content


def test_a_rating_of_a_default_says_what_may_override_it() -> None:
    """Rated alone (modes `score`), a default principle's prompt carries the same paragraph as a comparison's: which
    levels may override it and who speaks at which level; a principle that is no default gets none."""
    from charter.judge.score import rating_prompt

    spec = charter.import_constitution(Path(__file__).parents[2] / "examples" / "tiny-spec.md")
    default = next(p for p in spec.principles if p.default)
    fixed = next(p for p in spec.principles if not p.default)
    prompt = [Message(role="user", content="Hola, ¿qué hora es?")]
    settings = JudgeSettings(mode="score")
    shown = rating_prompt(spec, prompt, "It is noon.", default.id, settings)[0].content
    assert "may override it" in shown and "speak at level user" in shown
    assert "may override it" not in rating_prompt(spec, prompt, "It is noon.", fixed.id, settings)[0].content
