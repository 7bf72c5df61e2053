"""`reward_function(scoring="checklist")`: each completion checked against its prompt's checklist in one call of an
outside judge server, its reward the weighted, gated verdicts; a completion whose items all fail gets None, with the
failed items recorded in the reward store."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

import charter
from charter.checklist.author import WRITER_FORMAT, read_writer_prompt
from charter.checklist.prompt import read_checklist_prompt
from charter.errors import ConfigError, DatasetError
from charter.providers.scripted import register_script
from charter.runs.rewards import rewards
from charter.testing.lab import CRITERIA, criterion_of, register_lab_models
from charter.testing.loopback import LoopbackServer

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 3, "gate": {"cap": 0.25}},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
    {"id": "question", "requirement": CRITERIA["question"][0], "weight": 0.5},
    {"id": "calm", "requirement": CRITERIA["calm"][0], "weight": -1},
]
#: A response the judge server cannot read; one whose `polite` verdict it writes as "maybe".
GARBLED, HALF_READ = "GARBLED reply please", "It costs 4 dollars, thank you. MAYBE?"


def judge_reply(body: dict) -> str:
    """An outside checklist judge: a reason, then the true verdict of each item it knows (`CRITERIA`)."""
    shown = read_checklist_prompt(body["messages"][-1]["content"])
    assert shown is not None, "not a checklist prompt"
    items, response = shown
    if response == GARBLED:
        return "I would rather not say."
    answers = {}
    for item_id, requirement in items:
        holds = CRITERIA[criterion_of(requirement) or "number"][2](response)
        answers[item_id] = {
            "reason": f"It {'does' if holds else 'does not'} hold.",
            "verdict": "yes" if holds else "no",
        }
    if response == HALF_READ:
        answers["polite"]["verdict"] = "maybe"
    return json.dumps(answers)


@pytest.fixture
def server():
    with LoopbackServer(reply=judge_reply).start() as running:
        yield running


def _reward(server: LoopbackServer, store: Path, **kwargs) -> charter.RewardFunction:
    judge = f"openai-compatible:checklist-judge@{server.openai_url}"
    return charter.reward_function(judge, "harmless", scoring="checklist", store=store, cache=None, **kwargs)


def test_an_outside_judge_ranks_by_weighted_gated_verdicts_one_call_a_response(server, tmp_path: Path) -> None:
    completions = [
        "It takes 4 days, thank you. Anything else?",  # every item met, no pitfall: 1
        "It takes 4 days, thank you.",  # the question missed: (3 + 1 + |-1|) / (3 + 1 + 0.5 + |-1|)
        "It takes 4 DAYS, thank you.",  # a pitfall: (3 + 1) / 5.5
        "It takes a few days, thank you. Anything else?",  # the gate failed: capped at 0.25
        GARBLED,  # every item failed: None
        HALF_READ,  # polite failed: left out, its share recorded
    ]
    fn = _reward(server, tmp_path / "store")
    got = fn(prompts=["How long does it take?"] * len(completions), completions=completions,
             checklist=[ITEMS] * len(completions))  # fmt: skip
    assert got[:4] == pytest.approx([1.0, 5 / 5.5, 4 / 5.5, 0.25])
    assert got[0] > got[1] > got[2] > got[3]
    assert got[4] is None
    assert got[5] == pytest.approx((3 + 0.5 + 0) / (3 + 0.5 + 1))  # number, question met; calm fell in; polite out
    assert server.hits == len(completions)  # one judge call a response
    assert all(r.body["response_format"]["json_schema"]["strict"] for r in server.requests)
    stored = {r.completion: r for r in rewards(fn.store)}
    garbled = stored[GARBLED]
    assert garbled.reward is None and garbled.scoring == "checklist" and garbled.failure is not None
    assert garbled.checklist.failed_items == ["number", "polite", "question", "calm"]
    assert garbled.checklist.failed_share == 1.0 and "every item of the checklist failed" in garbled.failure.message
    half = stored[HALF_READ].checklist
    assert half.failed_items == ["polite"] and half.failed_share == pytest.approx(1 / 5.5)
    assert half.verdicts == {"number": "yes", "polite": "failed", "question": "yes", "calm": "yes"}
    capped = stored[completions[3]].checklist
    assert capped.gates_failed == ["number"] and capped.reasons["number"] == "It does not hold."
    assert {r.checklist.version for r in stored.values()} == {1} and fn.tally.failed == 1
    fn.close()


def test_the_column_as_json_text_and_a_repeated_completion_from_the_store(server, tmp_path: Path) -> None:
    fn = _reward(server, tmp_path / "store")
    first = fn(prompts=["Q?"], completions=["4, thank you?"], checklist=[json.dumps(ITEMS)])
    again = asyncio.run(fn.as_async()(prompts=["Q?"], completions=["4, thank you?"], checklist=[ITEMS]))
    assert first == again == [1.0] and server.hits == 1
    fn.close()


@pytest.mark.parametrize(
    ("column", "said"),
    [
        ([ITEMS, [{"id": "x", "requirement": "r", "weight": 0}]], "checklist[1][0].weight: "),
        ([ITEMS, "[{"], "checklist[1]: not a JSON list of checklist items"),
        ([ITEMS, [{"requirement": "r"}]], "checklist[1][0].id: required key is missing"),
    ],
)
def test_a_bad_checklist_row_is_one_error_naming_the_row(server, tmp_path: Path, column: list, said: str) -> None:
    fn = _reward(server, tmp_path / "store")
    with pytest.raises(DatasetError, match=r"^" + re.escape(said)) as raised:
        fn(prompts=["Q?", "R?"], completions=["a", "b"], checklist=column)
    assert "\n" not in str(raised.value) and server.hits == 0
    fn.close()


def test_without_a_column_criteria_or_a_writer_the_error_names_the_row(server, tmp_path: Path) -> None:
    fn = _reward(server, tmp_path / "store")
    with pytest.raises(ConfigError, match=r"prompts\[0\] has no 'checklist' column value"):
        fn(prompts=["Q?"], completions=["a"])
    with pytest.raises(ConfigError, match="2 prompts but 1 values in 'checklist'"):
        fn(prompts=["Q?", "R?"], completions=["a", "b"], checklist=[ITEMS])
    fn.close()


def test_the_constitutions_criteria_are_the_checklist_and_verifier_items_are_never_asked(tmp_path: Path) -> None:
    register_lab_models()
    constitution = Path(__file__).parents[2] / "examples" / "rubric-constitution.yaml"
    fn = charter.reward_function("scripted:checklist-judge", str(constitution), scoring="checklist",
                                 store=tmp_path / "store", cache=None)  # fmt: skip
    [record] = fn.score(["Can I get a refund?"], ["Yes, within 30 days."])
    assert record.checklist.source == "criteria" and record.checklist.verdicts["brief"] == "yes"
    assert record.principle_ids == ["accurate", "helpful"]
    assert sum(t.calls for t in fn.judge.meter.tallies.values()) == 1
    fn.close()


def test_a_checklist_of_verifiers_alone_makes_no_judge_call(server, tmp_path: Path) -> None:
    only = [{"id": "short", "requirement": "At most five words.", "verifier": "regex:^\\W*(\\w+\\W*){0,5}$"}]
    fn = _reward(server, tmp_path / "store")
    assert fn(prompts=["Q?", "Q?"], completions=["Four.", "It is four and then some more."],
              checklist=[only, only]) == [1.0, 0.0]  # fmt: skip
    assert server.hits == 0
    fn.close()


def test_implicit_aggregation_is_the_judges_overall_score_in_the_same_call(tmp_path: Path) -> None:
    def overall(messages, params):  # noqa: ANN001, ANN202
        items, _ = read_checklist_prompt(messages[-1].content)
        asked = '"overall"' in messages[-1].content and "overall" in params.json_schema["properties"]
        return json.dumps({**{i: {"reason": "r", "verdict": "no"} for i, _ in items}, "overall": 7 if asked else 99})

    register_script("checklist-overall", overall)
    fn = charter.reward_function("scripted:checklist-overall", "harmless", scoring="checklist",
                                 aggregation="implicit", store=tmp_path / "store", cache=None)  # fmt: skip
    [record] = fn.score(["Q?"], ["a"], checklists=[ITEMS[:2]])
    assert record.reward == pytest.approx(0.7) and record.checklist.aggregation == "implicit"
    assert record.checklist.explicit == 0.0
    fn.close()


def test_a_writer_writes_one_checklist_a_prompt_for_its_whole_group_kept_in_the_store(tmp_path: Path) -> None:
    asked: list[str] = []

    def writer(messages, params):  # noqa: ANN001, ANN202
        ids = read_writer_prompt(messages[-1].content)  # the run's writing prompt, listing the drawn principles
        assert ids and params.json_schema["properties"]["items"]["items"]["properties"]["principle_id"]["enum"] == ids
        assert (params.temperature, params.max_tokens) == (0.0, 1024)  # a role without params: greedy, 1,024
        asked.append(messages[-1].content)
        rules = [("number", "essential"), ("polite", "important"), ("question", "optional")]
        items = [{"id": r, "requirement": CRITERIA[r][0], "category": c, "principle_id": ids[0], "reference": None}
                 for r, c in rules]  # fmt: skip
        return json.dumps({"items": items})

    register_lab_models()
    register_script("rules-writer", writer)
    prompts = ["How many?"] * 3 + ["Why?"]
    completions = ["4, thank you?", "four, thank you?", "4! Thank you?", "no, thank you?"]

    def reward() -> charter.RewardFunction:
        writer = "scripted:rules-writer"
        return charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                       checklist_writer=writer, store=tmp_path / "s", cache=None)  # fmt: skip

    fn = reward()
    got = fn(prompts=prompts, completions=completions)
    assert got[0] == got[2] == 1.0 and got[1] == got[3] < 1.0 and len(asked) == 2
    assert {r.checklist.source for r in rewards(fn.store)} == {"model"}
    kept = fn.store.execute("SELECT source, model, prompt_format FROM checklists")
    assert kept == [("model", "scripted:rules-writer", WRITER_FORMAT)] * 2
    fn.close()
    again = reward()  # a new session on the same store: the checklists are read back, no writer is asked
    assert again(prompts=prompts, completions=[c + " Sure." for c in completions]) and len(asked) == 2
    again.close()


def test_a_writer_reply_that_is_no_checklist_fails_its_prompt_recorded_after_the_retries(tmp_path: Path) -> None:
    register_lab_models()
    register_script("prose-writer", lambda messages, params: "Here are some ideas for a checklist.")
    writer = "scripted:prose-writer"
    fn = charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                 checklist_writer=writer, store=tmp_path / "s", cache=None)  # fmt: skip
    assert fn(prompts=["Q?"], completions=["4"]) == [None]
    [record] = rewards(fn.store)
    assert record.failure.kind == "checklist_writer" and record.failure.attempts == 3
    assert "(after 3 tries)" in record.failure.message and record.failure.raw.startswith("Here are")
    assert fn.store.execute("SELECT COUNT(*) FROM checklists") == [(0,)]
    fn.close()


def test_rows_of_one_prompt_with_different_checklists_are_each_checked_against_their_own(server, tmp_path) -> None:
    fn = _reward(server, tmp_path / "store")
    got = fn(prompts=["Q?", "Q?"], completions=["4", "4"], checklist=[ITEMS[:1], ITEMS[1:2]])
    assert got == [1.0, 0.0]
    fn.close()


def test_an_overall_score_given_twice_differently_is_a_recorded_failure(tmp_path: Path) -> None:
    """Implicit aggregation: a reply that gives `overall` 9 and then 2 has no overall score; the failure names both
    readings (never the last one read as the answer)."""

    def torn(messages, params):  # noqa: ANN001, ANN202
        shown = read_checklist_prompt(messages[-1].content)
        assert shown is not None
        answers = ", ".join(f'"{i}": {{"reason": "r", "verdict": "yes"}}' for i, _ in shown[0])
        return "{" + answers + ', "overall": 9, "overall": 2}'

    register_script("checklist-torn", torn)
    fn = charter.reward_function("scripted:checklist-torn", "harmless", scoring="checklist",
                                 aggregation="implicit", store=tmp_path / "store", cache=None)  # fmt: skip
    [record] = fn.score(["Q?"], ["a"], checklists=[ITEMS[:2]])
    assert record.reward is None and record.failure is not None
    assert "'overall'" in record.failure.message and "9; 2" in record.failure.message
    fn.close()
