"""`charter serve reward` with `scoring: checklist`: the request carries the checklist (`checklist` on the native
endpoint, `checklists` per query on OpenRLHF's), each completion is checked against it, and the answer names the
failed items; a bad checklist is a 400 of one line naming the item and the key."""

from charter.testing.lab import CRITERIA
from tests.serve.conftest import AUTH

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 2, "gate": True},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
    {"id": "unknown", "requirement": "The response rhymes.", "weight": 1},
]


def test_the_request_carries_the_checklist_and_the_answer_its_verdicts(start) -> None:
    server = start({"model": "scripted:checklist-judge"}, scoring="checklist")
    body = {"prompt": "How many?", "completions": ["4, thank you", "4", "four"], "checklist": ITEMS}
    status, got = server.post("/v1/rewards", body, AUTH)
    assert status == 200, got
    assert got["rewards"] == [1.0, 2 / 3, 0.0]  # `unknown` is n/a to this judge: left out of both sums
    first = got["results"][0]["checklist"]
    assert first["verdicts"] == {"number": "yes", "polite": "yes", "unknown": "n/a"} and first["version"] == 1
    assert got["results"][2]["checklist"]["gates_failed"] == ["number"]
    openrlhf = {"query": ["Q: 4, thanks", "Q: 5"], "prompts": ["Q: ", "Q: "], "checklists": [ITEMS, ITEMS[1:]]}
    status, got = server.post("/get_reward", openrlhf, AUTH)
    assert status == 200 and got["rewards"] == [1.0, 0.0], got


def test_a_bad_checklist_is_a_400_naming_the_item_and_key(start) -> None:
    server = start({"model": "scripted:checklist-judge"}, scoring="checklist")
    bad = [{"id": "x", "requirement": "r", "category": "vital"}]
    status, got = server.post("/v1/rewards", {"prompt": "Q?", "completions": ["a"], "checklist": bad}, AUTH)
    assert status == 400 and got["error"].startswith("checklist[0][0].category: unknown category 'vital'"), got
    status, got = server.post("/get_reward", {"query": ["a"], "prompts": [""], "checklists": []}, AUTH)
    assert status == 400 and got["error"] == "checklists: expected a list of 1 (one checklist, or null, per query)"
    status, got = server.post("/v1/rewards", {"prompt": "Q?", "completions": ["a"]}, AUTH)
    assert status == 400 and "has no 'checklist' column value" in got["error"], got


def test_a_checklist_sent_to_a_scoring_that_reads_none_is_a_400_naming_the_scoring(start) -> None:
    server = start()  # the default scoring, which rates each completion on the rubric
    status, got = server.post("/v1/rewards", {"prompt": "Q?", "completions": ["a"], "checklist": ITEMS}, AUTH)
    assert status == 400 and got["error"] == "checklist: the server's scoring is score, which reads no checklist", got
    openrlhf = {"query": ["Q: a"], "prompts": ["Q: "], "checklists": [ITEMS]}
    status, got = server.post("/get_reward", openrlhf, AUTH)
    assert status == 400 and got["error"] == "checklists: the server's scoring is score, which reads no checklist", got
