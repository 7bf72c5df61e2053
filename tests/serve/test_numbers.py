"""`charter serve reward` at the edges of its numbers: a request whose checklist weight is not a finite number (NaN,
an infinity, a number past a float's range, text, a boolean, or so large that sums overflow), or whose body holds a
NaN or an infinity anywhere, is a 400 of one line, never a 500; nothing it sends reaches the store, which every
later reader still reads."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from charter.testing.lab import CRITERIA
from tests.serve.conftest import AUTH
from tests.support.numbers import huge_weights, json_not_finite

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 2, "gate": True},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _body(spelled: str, index: int, native: bool) -> bytes:
    items = [dict(item) for item in ITEMS]
    items[index]["weight"] = "@weight@"
    if native:
        body: dict = {"prompt": "How many?", "completions": ["4, thank you", "four"], "checklist": items}
    else:
        body = {"query": ["Q: 4, thanks", "Q: 5"], "prompts": ["Q: ", "Q: "], "checklists": [ITEMS, items]}
    return json.dumps(body).replace('"@weight@"', spelled).encode()


def test_a_weight_that_is_not_a_finite_number_is_a_400_and_the_store_stays_readable(start) -> None:
    server = start({"model": "scripted:checklist-judge"}, scoring="checklist")
    headers = {**AUTH, "Content-Type": "application/json"}

    @SETTINGS
    @given(spelled=json_not_finite() | huge_weights().map(repr), index=st.sampled_from([0, 1]), native=st.booleans())
    def refused(spelled: str, index: int, native: bool) -> None:
        path = "/v1/rewards" if native else "/get_reward"
        status, _, answer = server.request(path, _body(spelled, index, native), headers)
        assert status == 400, (spelled, status, answer)
        assert "\n" not in answer["error"] and ("weight" in answer["error"] or "finite" in answer["error"]), answer

    refused()
    for anywhere in (b'{"prompt": "Q?", "completions": ["a"], "reference": NaN}', b'{"query": [Infinity]}'):
        status, _, answer = server.request("/v1/rewards", anywhere, headers)
        assert status == 400 and "not a finite number" in answer["error"], answer
    status, good = server.post("/v1/rewards", {"prompt": "How many?", "completions": ["4, thank you"],
                                               "checklist": ITEMS}, AUTH)  # fmt: skip
    assert status == 200 and good["rewards"] == [1.0], good
    server.stop()
    log = server.log.read_text()
    assert " 500 " not in log and "Traceback" not in log
    with RunStore(server.store) as store:
        stored = list(rewards(store))
    assert [r.reward for r in stored] == [1.0]  # the refused requests wrote nothing
