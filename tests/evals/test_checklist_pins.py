"""An evaluation's checklist judgments (`scoring: checklist`) are pinned byte for byte: the judge's fingerprint, each
judgment as stored and each request the judge is sent (what the call cache keys on), as the code wrote them before
their mode was read from the table's entry, so that a winrate or arena written before resumes with no new call."""

from __future__ import annotations

import json

from charter.checklist.items import checklist_from_rows
from charter.checklist.prompt import read_checklist_prompt
from charter.evals.winrate import checklist_judgments
from charter.providers import ScriptedModel
from charter.records import Message, Pair, fingerprint

ITEMS = [
    {"id": "number", "requirement": "The response gives a number.", "weight": 2},
    {"id": "polite", "requirement": "The response thanks the user.", "weight": 1, "principle_id": "kind"},
]
SENT: list[str] = []


def _judge(messages, params) -> str:  # noqa: ANN001
    SENT.append(fingerprint([[m.model_dump() for m in messages], params.model_dump(mode="json")]))
    items, response = read_checklist_prompt(messages[-1].content)
    if "mute" in response:
        return "no idea"
    return json.dumps({i: {"reason": "r", "verdict": "yes" if i[0] in response else "no"} for i, _ in items})


async def test_checklist_judgments_keep_their_fingerprints_records_and_requests() -> None:
    SENT.clear()
    prompt = [Message(role="user", content="How many?")]
    pairs = [
        Pair(pair_id="p1", prompt_id="q1", prompt=prompt, a="number 4, polite", b="number 4"),
        Pair(pair_id="p2", prompt_id="q1", prompt=prompt, a="number 4", b="mute"),
    ]
    checklists = {"q1": checklist_from_rows(ITEMS, "pins.jsonl: row 1: checklist", "column")}
    judged = await checklist_judgments(ScriptedModel("pins", fn=_judge), pairs, checklists)
    assert {j.pair_id: j.fingerprint for j in judged.values()} == {"p1": FP, "p2": FP}
    assert {k: fingerprint(j.model_dump(mode="json")) for k, j in judged.items()} == RECORDS
    assert judged["p2"].status == "failed" and judged["p2"].failure is not None
    assert sorted(SENT) == sorted(REQUESTS)


#: Computed with the code before the change.
FP = "a430b425b3f9ad25"
RECORDS = {"p1": "1e6b625ec853b5b1", "p2": "ebbf31a390894271"}
REQUESTS = ["5de8a1453e6fc06a", "945e736873ee55d8", "c71d44a00fda2df5"]
