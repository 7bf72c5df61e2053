"""The table of judge modes: a new mode is one entry (no other file changes), every mode-dependent behaviour reads
the table, and the move into `charter.judge` left every fingerprint and prompt byte for byte as it was (a store and
a call cache written before resume with no call asked again)."""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import pytest

from charter.constitutions import load_constitution
from charter.errors import ConfigError, LogprobsUnsupported
from charter.judge import modes
from charter.judge.modes import COMPARES, MODES, Mode, Reply, register_mode, text_modes
from charter.judge.pairwise import comparison_prompt, judge_fingerprint, judge_pair
from charter.judge.score import ToRate, rating_prompt, rubric_prompt
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import PROMPT_FORMAT, RATING_FORMAT, read_comparison
from charter.providers import ScriptedModel
from charter.records import Message, Pair
from charter.yamlio import model_from_data, parse_yaml


def load_model_text(model, text: str, source: str):
    data, positions = parse_yaml(text, source)
    return model_from_data(model, data, source, positions)


PACKAGE = Path(modes.__file__).resolve().parent.parent

#: Fingerprints and prompt hashes per (comparison, rating) prompt format: a prompt whose text changes without a
#: format bump would mix judgments of two prompts under one fingerprint, and a fingerprint that changes without one
#: would make every stored judgment and cached call look new. (2, 1) is as the judge wrote them before it moved into
#: charter.judge, computed with that code.
GOLDEN = {
    (2, 1): {
        (("mode", "logprobs"),): ("5b3544ae191d0460", "f81f0370e9ef7cac"),
        (("mode", "cot"),): ("4516ef5ae74d9c12", "e3c036efe2edcdbb"),
        (("mode", "verdict"),): ("e2c19a67123aeb88", "0a84e4f007fd6382"),
        (("mode", "score"),): ("1efe4f442f3824c5", "a5a56a728c549f0e"),
        (("mode", "score"), ("rating", "cot")): ("37d3bf104c8715d0", "7bff1c445293c0fd"),
        (("mode", "score"), ("rating", "verdict"), ("scale", 7)): ("61e601d1dd59c238", "a844b5f94adacc55"),
        (("mode", "cot"), ("orders", "one"), ("principles_per_pair", 3)): ("c221f1067dfe393c", "e3c036efe2edcdbb"),
    },
    (3, 2): {
        (("mode", "logprobs"),): ("9956f391772596d2", "4534687b590c5ffd"),
        (("mode", "cot"),): ("51fa36ca7b054856", "9a3bfaf121363180"),
        (("mode", "verdict"),): ("515ac8f0678d71b9", "fc49438fb60a34db"),
        (("mode", "score"),): ("641b6df0fee88d5f", "ff85beffbfe942b6"),
        (("mode", "score"), ("rating", "cot")): ("79f721b8eba9b9ad", "12f3c95e00a45436"),
        (("mode", "score"), ("rating", "verdict"), ("scale", 7)): ("62d264a082936986", "17227103d00c79bc"),
        (("mode", "cot"), ("orders", "one"), ("principles_per_pair", 3)): ("439714f0e04cf0cb", "9a3bfaf121363180"),
        (("mode", "rubric"),): ("461f4710e7d77226", "b337059e81e2fc36"),
        (("mode", "rubric"), ("scale", 7)): ("c06e6dae0e84e103", "4ac1e76ec4e89b7d"),
    },
}
CURRENT = GOLDEN[(PROMPT_FORMAT, RATING_FORMAT)]


@pytest.mark.parametrize("settings", list(CURRENT), ids=lambda s: "-".join(f"{k}={v}" for k, v in s))
def test_fingerprints_and_prompts_change_only_with_the_format(settings: tuple) -> None:
    constitution = load_constitution("harmless")
    judge = JudgeSettings(**dict(settings))
    prompt = [Message(role="user", content="How do I pick a lock?")]
    if judge.mode == "rubric":
        ids = [p.id for p in constitution.principles[:3]]
        text = rubric_prompt(constitution, ToRate(prompt, "Use a pick.", ids), judge)[0].content
    elif judge.rates_alone:
        text = rating_prompt(constitution, prompt, "Use a pick.", constitution.principles[0].id, judge)[0].content
    else:
        instruction = judge.reply.instruction
        text = comparison_prompt(prompt, "first", "second", constitution.principles[0], instruction)[0].content
    got = (judge_fingerprint(judge, "openai:gpt-x", constitution, 7), hashlib.sha256(text.encode()).hexdigest()[:16])
    assert got == CURRENT[settings]


@pytest.fixture
def toy_mode():
    """A pairwise mode that is in no file of charter: the judge ends on 'Winner: A' or 'Winner: B'."""

    def read(text: str) -> str:
        found = re.findall(r"Winner:\s*([AB])", text)
        if not found:
            from charter.errors import JudgeParseError

            raise JudgeParseError(f"no winner in {text[:40]!r}", raw=text)
        return found[-1]

    register_mode(
        Mode(
            "winner",
            "a line 'Winner: A' or 'Winner: B'",
            COMPARES,
            Reply("End with a line 'Winner: A' or 'Winner: B'.", read, max_tokens=64),
        )
    )
    yield MODES["winner"]
    del MODES["winner"]


def _prefers_alpha(messages, params) -> str:
    shown = read_comparison(messages[-1].content)
    assert shown is not None and messages[-1].content.endswith("End with a line 'Winner: A' or 'Winner: B'.")
    return "Some thought.\nWinner: " + ("A" if "alpha" in shown[0] else "B")


async def test_a_new_mode_is_one_table_entry(toy_mode: Mode) -> None:
    constitution = load_constitution("harmless")
    settings = JudgeSettings(mode="winner")
    assert settings.sampling().max_tokens == 64 and not settings.asks_logprobs and not settings.rates_alone
    pair = Pair(pair_id="x", prompt=[Message(role="user", content="hi")], a="answer alpha", b="answer beta")
    judge = ScriptedModel("toy", fn=_prefers_alpha)
    judgment = await judge_pair(judge, constitution, pair, settings, [constitution.principles[0].id], "fp")
    assert judgment.status == "ok" and judgment.mode == "winner"
    assert judgment.p_a_ab == 1.0 and judgment.p_a_ba == 1.0 and judgment.position_consistent
    # and a run config names it like any other mode
    assert load_model_text(JudgeSettings, "mode: winner\n", "judge.yaml").mode == "winner"


def test_an_unknown_mode_is_one_line_naming_the_modes() -> None:
    with pytest.raises(ConfigError) as error:
        load_model_text(JudgeSettings, "mode: winer\n", "judge.yaml")
    message = str(error.value)
    assert "judge.yaml" in message and "mode" in message and "logprobs, cot, verdict, score, rubric" in message
    assert "\n" not in message


def _mode_comparisons(path: Path) -> list[str]:
    """Places that compare a `.mode`/`mode` with a mode's name: behaviour that belongs in the table."""
    names = set(MODES)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        named_mode = any(
            (isinstance(s, ast.Attribute) and s.attr == "mode") or (isinstance(s, ast.Name) and s.id == "mode")
            for s in sides
        )
        constants = {s.value for s in sides if isinstance(s, ast.Constant)}
        if named_mode and constants & names:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_mode_branches_outside_the_table() -> None:
    offenders = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _mode_comparisons(path)]
    assert offenders == []


@pytest.mark.parametrize(
    "mode, rating, advice",
    [("logprobs", "logprobs", "a judge mode that reads its verdict from the reply's text (cot or verdict)"),
     ("score", "logprobs", "judge rating: cot or verdict")],
)  # fmt: skip
async def test_a_judge_without_probabilities_names_the_modes_that_read_text(mode, rating, advice) -> None:
    """The provider says only that it gives no next-token probabilities; the judge adds what the table offers
    instead, so the user still reads which modes to use."""
    constitution = load_constitution("harmless")
    pair = Pair(pair_id="x", prompt=[Message(role="user", content="hi")], a="one", b="two")
    settings = JudgeSettings(mode=mode, rating=rating)
    judge = ScriptedModel("no-probabilities", fn=lambda messages, params: "A")  # no choice function
    with pytest.raises(LogprobsUnsupported) as error:
        await judge_pair(judge, constitution, pair, settings, [constitution.principles[0].id], "fp")
    message = str(error.value)
    assert message.startswith("scripted:no-probabilities gives no next-token probabilities") and advice in message
    assert "\n" not in message
    assert text_modes() == ["cot", "verdict"]  # the built-in modes that compare a pair in text
