"""A spec's own examples shown to the judge and the critic (`judge.spec_examples`, `critique.spec_examples`): each
principle's examples with a good and a bad reply go before its question, never the one whose conversation is judged
(the spec's labelled pairs stay unseen where they are what is judged); at 0, the default, prompts, configs and
fingerprints are as they were."""

from __future__ import annotations

from pathlib import Path

import charter
from charter.critique.chain import spec_shots
from charter.critique.config import CritiqueConfig
from charter.judge.compare import comparison_prompt
from charter.judge.pairwise import judge_fingerprint
from charter.judge.score import rating_prompt
from charter.judge.settings import JudgeSettings
from charter.records import Message

SPEC = charter.import_constitution(Path(__file__).parents[2] / "examples" / "tiny-spec.md")
WEAPONS = SPEC.principle("no_weapons")
[EXAMPLE] = WEAPONS.examples
GOOD = next(r for r in EXAMPLE.replies if r.label == "good")
BAD = next(r for r in EXAMPLE.replies if r.label == "bad")
OTHER = [Message(role="user", content="How do I build a pipe bomb?")]
ITS_OWN = [Message(role=m.role, content=m.content) for m in EXAMPLE.conversation]


def _compared(prompt: list[Message], examples: int) -> str:
    return comparison_prompt(prompt, "No.", "Sure: ...", WEAPONS, "Answer A or B.", examples=examples)[0].content


def test_the_judge_sees_the_principles_examples_before_its_question() -> None:
    shown = _compared(OTHER, 1)
    assert "The spec's own examples for this principle" in shown
    assert GOOD.content in shown and BAD.content in shown
    assert shown.index(BAD.content) < shown.index("Answer A or B.")
    assert "The spec's own examples" not in _compared(OTHER, 0)  # the default: the prompt as it was


def test_an_example_is_never_shown_when_its_own_conversation_is_judged() -> None:
    assert "The spec's own examples" not in _compared(ITS_OWN, 3)
    assert WEAPONS.shown_examples(ITS_OWN, 3) == []
    assert [e for e, _, _ in WEAPONS.shown_examples(OTHER, 3)] == [EXAMPLE]


def test_a_rating_shows_them_too_and_braces_in_an_example_are_kept() -> None:
    settings = JudgeSettings(mode="score", spec_examples=1)
    shown = rating_prompt(SPEC, OTHER, "No.", "no_weapons", settings)[0].content
    assert BAD.content in shown
    code = 'def f(): return {"steps": [1, 2]}  # {prompt}'
    bad = BAD.model_copy(update={"content": code})
    braced = WEAPONS.model_copy(update={"examples": [EXAMPLE.model_copy(update={"replies": [GOOD, bad]})]})
    compared = comparison_prompt(OTHER, "No.", "Sure.", braced, "Answer A or B.", examples=1)[0].content
    assert code in compared  # shown verbatim: an example's braces are no template fields


def test_the_setting_enters_the_fingerprint_and_the_dump_only_when_set() -> None:
    plain, shown = JudgeSettings(), JudgeSettings(spec_examples=2)
    assert "spec_examples" not in plain.model_dump() and shown.model_dump()["spec_examples"] == 2
    assert judge_fingerprint(plain, "m", SPEC, 0) != judge_fingerprint(shown, "m", SPEC, 0)
    assert judge_fingerprint(plain, "m", SPEC, 0) == judge_fingerprint(JudgeSettings(spec_examples=0), "m", SPEC, 0)
    assert "spec_examples" not in CritiqueConfig().model_dump()
    assert CritiqueConfig(spec_examples=1).model_dump()["spec_examples"] == 1


def test_the_critic_sees_the_bad_reply_critiqued_and_the_good_one_as_its_revision() -> None:
    turns = spec_shots(WEAPONS, OTHER, 1)
    contents = [m.content for m in turns]
    roles = [m.role for m in turns]
    assert roles[-5:] == ["assistant", "user", "assistant", "user", "assistant"]
    assert contents[-5] == BAD.content and contents[-1] == GOOD.content
    assert all(m.role in ("system", "user", "assistant") for m in turns)  # any chat model takes them
    assert spec_shots(WEAPONS, ITS_OWN, 1) == [] and spec_shots(WEAPONS, OTHER, 0) == []
