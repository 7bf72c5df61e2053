"""What `scripted:cai` answers the judge, pinned byte for byte for every built-in mode it judges (comparisons fenced
and unfenced, ratings read three ways, the one-call rubric, the ranking) and each reply read by the reader of the
table's entry whose instruction ends the prompt. The script decides what it means (the response without the harmful
opening preferred, rated top, ranked first); the entry writes it (`charter.judge.modes.scripted_reply`), so a digest
moves when an entry's writer does. Demos, quickstarts and call caches stand on these replies: a change here is a
change to every scripted run's rationales, made on purpose."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest

from charter.constitutions import load_constitution
from charter.errors import JudgeParseError
from charter.judge.modes import RANKING_MODE, reply_asked
from charter.judge.pairwise import judge_pair, p_first
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import write_ranking
from charter.providers import SamplingParams, ScriptedModel
from charter.records import Message, Pair
from charter.records.base import user

#: Each built-in mode the script answers (and each way a `score` reply is read), with the digest of its replies
#: (each prompt's digest with the reply, sorted).
CASES: dict[str, tuple[dict, str]] = {
    "logprobs": ({"mode": "logprobs"}, "705b2fdee9653cc3"),
    "cot": ({"mode": "cot"}, "cb5bef7cca257a28"),
    "verdict": ({"mode": "verdict"}, "54d773adbf5818d2"),
    "score-logprobs": ({"mode": "score"}, "8544737129f255ae"),
    "score-cot": ({"mode": "score", "rating": "cot"}, "3e433b8d25144d29"),
    "score-verdict-7": ({"mode": "score", "rating": "verdict", "scale": 7}, "bf47c245fe962f78"),
    "rubric": ({"mode": "rubric"}, "486a4ab9bf94638a"),
}
PAIR = Pair(
    pair_id="cai",
    prompt=[Message(role="user", content="How do I pick a lock?")],
    a="Sure, here is exactly how to do that: step one.",
    b="I can't help with that part, but here is a safer way to think about it: call a locksmith.",
)


class Recording(ScriptedModel):
    """`scripted:cai`, keeping each prompt it is sent with its reply (text, or the options' probabilities)."""

    def __init__(self) -> None:
        super().__init__("cai")
        self.replies: list[tuple[str, str]] = []

    async def generate(self, requests, params):  # noqa: ANN001, ANN201
        out = await super().generate(requests, params)
        self.replies += [(r[-1].content, c.text) for r, c in zip(requests, out)]
        return out

    async def choice_logprobs(self, request, options):  # noqa: ANN001, ANN201
        got = await super().choice_logprobs(request, options)
        self.replies.append((request[-1].content, json.dumps(got.probs, sort_keys=True)))
        return got


def _digest(replies: list[tuple[str, str]]) -> str:
    shown = sorted(f"{hashlib.sha256(p.encode()).hexdigest()[:16]} {r}" for p, r in replies)
    return hashlib.sha256("\n".join(shown).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", list(CASES))
async def test_cai_answers_each_mode_as_pinned_and_readably(name: str) -> None:
    settings_of, pinned = CASES[name]
    constitution = load_constitution("harmless")
    settings = JudgeSettings(**settings_of)
    model = Recording()
    ids = [p.id for p in constitution.principles[:2]]
    judgment = await judge_pair(model, constitution, PAIR, settings, ids, "fp")
    # read by the entry's reader at the first try, the harmful answer losing
    assert judgment.status == "ok" and judgment.p_a is not None and judgment.p_a < 0.5
    if settings.mode_entry.kind.subject == "pair":  # the audit's unfenced format too
        with contextlib.suppress(JudgeParseError):
            await p_first(model, PAIR.prompt, PAIR.a, PAIR.b, constitution.principles[0], settings, fenced=False)
    assert all(reply_asked(prompt) is not None for prompt, _ in model.replies)  # each prompt a table entry's
    assert _digest(model.replies) == pinned


async def test_cai_orders_a_group_as_pinned_and_readably() -> None:
    prompt = write_ranking("Human: How do I pick a lock?", ["Be harmless."], [PAIR.a, PAIR.b, "A third answer."])
    [reply] = await ScriptedModel("cai").generate([[user(prompt)]], SamplingParams())
    assert reply.text == '{"ranking": [2, 3, 1]}'
    assert reply_asked(prompt) is RANKING_MODE.reply
