"""P(yes) for each checklist item from the judge's token log-probabilities: asked through the real openai SDK of the
loopback server (OpenAI's wire format: `logprobs.content`, each token with its `top_logprobs`), read at each item's
verdict token, used in the pair's probability; where the provider gives none, the verdict stands and says so."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from charter.checklist import Checklist, checklist_from_rows
from charter.checklist.check import check_response as check_for_reward
from charter.checklist.probability import NO_LOGPROBS, verdict_probabilities
from charter.judge.checklist import judge_checklist_pair
from charter.judge.settings import JudgeSettings
from charter.providers import get_model
from charter.records import Message, Pair
from charter.testing.lab import CRITERIA, checklist_server_reply, verdict_alternatives
from charter.testing.loopback import LoopbackServer, tokens

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 2},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
]
CHECKLIST = checklist_from_rows(ITEMS, "items")
PROMPT = [Message(role="user", content="How long does it take?")]
#: How sure the judge server is of each verdict it writes.
SURE = 0.8


judge_reply = checklist_server_reply
unsure = verdict_alternatives(SURE)


@pytest.fixture
def server():
    with LoopbackServer(reply=judge_reply, alternatives=unsure).start() as running:
        yield running


def judge(server: LoopbackServer, **options):  # noqa: ANN201
    return get_model(f"openai-compatible:checklist-judge@{server.openai_url}", cache=None, **options)


async def test_each_verdict_gets_p_yes_from_its_tokens_top_alternatives(server) -> None:
    model = judge(server)
    checked = await check_for_reward(model, PROMPT, "It takes 4 days.", CHECKLIST)
    await model.aclose()
    body = server.requests[-1].body
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    number, polite = checked.verdicts["number"], checked.verdicts["polite"]
    assert (number.verdict, number.p_yes) == ("yes", pytest.approx(SURE / (SURE + 1 - SURE)))
    assert (polite.verdict, polite.p_yes) == ("no", pytest.approx(1 - SURE))
    assert number.p_yes_missing is None
    assert checked.reward == pytest.approx(2 / 3)  # the verdicts' score stands
    assert checked.score.expected == pytest.approx((2 * SURE + 1 * (1 - SURE)) / 3)


async def test_the_pairs_probability_compares_the_expected_scores(server) -> None:
    model = judge(server)
    pair = Pair(pair_id="p", prompt=PROMPT, a="It takes 4 days, thank you.", b="It takes a few days.")
    settings = JudgeSettings(mode="checklist")
    judgment = await judge_checklist_pair(model, pair, CHECKLIST, settings, "explicit", ["helpful"], "fp")
    await model.aclose()
    record = judgment.checklist
    assert record is not None and record.from_probabilities
    expected_a = (2 * SURE + 1 * SURE) / 3  # both items yes, each at P(yes) = SURE
    expected_b = (2 * (1 - SURE) + 1 * (1 - SURE)) / 3  # both no
    assert record.a.score.expected == pytest.approx(expected_a) and record.b.score.expected == pytest.approx(expected_b)
    assert judgment.p_a == pytest.approx(0.5 + (expected_a - expected_b) / 2)  # 0.8, not the verdicts' 1.0
    assert [v.p_yes for v in record.a.verdicts] == pytest.approx([SURE, SURE])


async def test_a_response_that_fails_a_gate_loses_the_pair_on_the_expected_scores_too(server) -> None:
    # the number is a gate (cap 0.1): a polite question without one meets more weight, but fails the gate
    gated = checklist_from_rows(
        [
            {"id": "number", "requirement": CRITERIA["number"][0], "weight": 1, "gate": {"cap": 0.1}},
            {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 3},
            {"id": "question", "requirement": CRITERIA["question"][0], "weight": 3},
        ],
        "items",
    )
    model = judge(server)
    pair = Pair(pair_id="p", prompt=PROMPT, a="Thank you for asking, could you wait?", b="It takes 4 days.")
    judgment = await judge_checklist_pair(model, pair, gated, JudgeSettings(mode="checklist"), "explicit",
                                          ["helpful"], "fp")  # fmt: skip
    await model.aclose()
    record = judgment.checklist
    assert record is not None and record.from_probabilities and record.a.score.gates_failed == ["number"]
    assert record.a.score.expected == pytest.approx(0.1)  # (1 * 0.2 + 6 * 0.8) / 7 uncapped, capped at 0.1
    assert record.b.score.expected == pytest.approx((SURE + 6 * (1 - SURE)) / 7)
    assert judgment.p_a is not None and judgment.p_a < 0.5  # the response that met the gate is preferred


async def test_a_server_without_logprobs_leaves_the_verdicts_and_says_so() -> None:
    with LoopbackServer(reply=judge_reply, logprobs={}).start() as server:  # an empty table: no logprobs given
        model = judge(server)
        pair = Pair(pair_id="p", prompt=PROMPT, a="It takes 4 days, thank you.", b="It takes a few days.")
        judgment = await judge_checklist_pair(model, pair, CHECKLIST, JudgeSettings(mode="checklist"), "explicit",
                                              ["helpful"], "fp")  # fmt: skip
        await model.aclose()
    record = judgment.checklist
    assert record is not None and not record.from_probabilities
    assert all(v.p_yes is None and v.p_yes_missing == NO_LOGPROBS for v in record.a.verdicts + record.b.verdicts)
    assert judgment.p_a == 1.0 and record.a.score.expected is None  # 0.5 + (1 - 0) / 2: from the verdicts alone


async def test_a_model_told_not_to_ask_sends_no_logprobs(server) -> None:
    model = judge(server, token_logprobs=False)
    checked = await check_for_reward(model, PROMPT, "It takes 4 days.", CHECKLIST)
    await model.aclose()
    assert "logprobs" not in server.requests[-1].body and "top_logprobs" not in server.requests[-1].body
    assert checked.verdicts["number"].p_yes_missing == NO_LOGPROBS


async def test_a_cached_reply_keeps_its_probabilities(server, tmp_path: Path) -> None:
    for _ in range(2):
        model = get_model(f"openai-compatible:checklist-judge@{server.openai_url}", cache=str(tmp_path / "c.sqlite"))
        checked = await check_for_reward(model, PROMPT, "It takes 4 days.", CHECKLIST)
        await model.aclose()
        assert checked.verdicts["number"].p_yes == pytest.approx(SURE)
    assert server.hits == 1 and checked.cached


def test_a_scripted_judge_is_asked_as_before() -> None:
    from charter.checklist.check import checklist_params

    model = get_model("scripted:cai", cache=None)
    params = checklist_params(None, ["number"], "explicit", model)
    assert "top_logprobs" not in params.model_dump(mode="json")


def _tokens(pieces: list[str], alternatives: dict[int, dict[str, float]]) -> list:
    return [
        {"token": p, "logprob": 0.0, "bytes": list(p.encode()),
         "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in alternatives.get(i, {}).items()]}
        for i, p in enumerate(pieces)
    ]  # fmt: skip


def test_a_quote_in_the_verdict_token_and_spellings_that_are_neither() -> None:
    text = '{"a": {"reason": "r", "verdict": "Yes"}, "b": "no", "c": {"reason": "r", "verdict": "n/a"}, "d": "no"}'
    pieces = tokens(text)
    at = pieces.index("Yes")
    pieces[at - 1 : at + 1] = [' "Yes']  # a tokenizer that joins the quote to the word
    last = len(pieces) - 1 - pieces[::-1].index("no")
    pieces[last : last + 1] = ["n", "o"]  # d's verdict in two tokens: "n" could start no or n/a
    alternatives = {
        pieces.index(' "Yes'): {' "Yes': math.log(0.6), ' "yes': math.log(0.1), ' "No': math.log(0.2),
                                ' "n': math.log(0.1)},
        pieces.index("no"): {"no": math.log(0.5), "Yes": math.log(0.3), "n": math.log(0.1), "The": math.log(0.1)},
        last: {"n": math.log(0.5), "The": math.log(0.1)},
    }  # fmt: skip
    found = verdict_probabilities(text, ["a", "b", "d"], _tokens(pieces, alternatives))
    assert found["a"] == pytest.approx(0.7 / 0.9)  # " \"n" could be no or n/a: it counts for neither
    assert found["b"] == pytest.approx(0.3 / 0.8)
    assert found["d"] == "the verdict token's alternatives name neither yes nor no"
    assert (
        verdict_probabilities(text, ["a"], _tokens(["{}"], {}))["a"] == "the log-probabilities do not spell the reply"
    )
    assert verdict_probabilities(text, ["a"], None)["a"] == NO_LOGPROBS
    missing = verdict_probabilities(text, ["z"], _tokens(pieces, {}))["z"]
    assert missing == "the verdict was not found in the reply's tokens"


def test_the_checklist_fixture_is_what_the_tests_say() -> None:
    assert isinstance(CHECKLIST, Checklist) and [i.id for i in CHECKLIST.items] == ["number", "polite"]
