"""A checklist judge for the evaluations (`eval winrate`, `eval arena` with `scoring: checklist`): each answer
checked once against its prompt's checklist (one call an answer, verifier items by code), and each comparison the
preference of the two answers' scores (`charter.checklist.preference`).

A prompt's checklist is the prompts file's `checklist` column (a list of items or its JSON text; a bad one is one
`DatasetError` naming the file, the row and the key), else the constitution's criteria. A comparison where either
answer has no score (every item failed, none applies) is a failed judgment, left out and counted, never a tie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from charter.checklist.aggregate import preference
from charter.checklist.check import Aggregation, CheckedResponse, check_response
from charter.checklist.items import Checklist, checklist_from_criteria, checklist_from_rows
from charter.constitutions import Constitution
from charter.errors import ConfigError
from charter.providers import ManagedModel
from charter.records import Failure, Judgment, Pair, Vote, fingerprint
from charter.training import data

#: The mode a checklist judgment names.
MODE = "checklist"


def prompt_checklists(source: str, column: str, prompts: Sequence[Any]) -> dict[str, Any]:
    """The `column` value of each of `prompts` (as `load_prompts` read them) in the prompts file, by the prompt's
    fingerprint; a prompt whose row has none is left out."""
    found: dict[str, Any] = {}
    rows = data.read_rows(source)
    key = "prompt" if rows and "prompt" in rows[0] else "messages"
    wanted = {prompt_key(p) for p in prompts}
    for i, row in enumerate(rows):
        value = row.get(column)
        if value is None or not row.get(key):
            continue
        prompt = data.message_dicts(row[key], "user", f"{source}: row {i + 1}")
        if key == "messages" and prompt and prompt[-1]["role"] == "assistant":
            prompt = prompt[:-1]
        if prompt_key(prompt) in wanted:
            found[prompt_key(prompt)] = (f"{source}: row {i + 1}: {column}", value)
    return found


def prompt_key(prompt: Any) -> str:
    """A prompt's key in `prompt_checklists`: the fingerprint of its messages' roles and contents."""
    return fingerprint([[{"role": m["role"], "content": m["content"]} for m in prompt]])


def checklist_for(prompt: Any, given: Mapping[str, Any], constitution: Constitution) -> Checklist:
    """A prompt's checklist: its row's column value, else the constitution's criteria (a `ConfigError` naming the
    column when there are none)."""
    found = given.get(prompt_key(prompt))
    if found is not None:
        where, value = found
        return checklist_from_rows(value, where, "column")
    if not constitution.has_criteria:
        raise ConfigError(
            f"scoring checklist: a prompt has no checklist column value and the constitution {constitution.name} has "
            "no criteria"
        )
    return checklist_from_criteria(constitution)


async def checklist_judgments(
    model: ManagedModel,
    pairs: Sequence[Pair],
    checklists: Mapping[str, Checklist],
    aggregation: Aggregation = "explicit",
    concurrency: int = 16,
) -> dict[str, Judgment]:
    """Each pair's judgment by pair id: both answers checked against `checklists[pair.prompt_id]` (each distinct
    answer of a prompt once), P(a better) their preference."""
    limit = asyncio.Semaphore(concurrency)
    checked: dict[tuple[str, str], asyncio.Task[CheckedResponse]] = {}

    async def one(prompt_id: str, pair: Pair, text: str) -> CheckedResponse:
        async with limit:
            return await check_response(model, pair.prompt, text, checklists[prompt_id], aggregation)

    def check(pair: Pair, text: str) -> asyncio.Task[CheckedResponse]:
        key = (str(pair.prompt_id), text)
        if key not in checked:
            checked[key] = asyncio.ensure_future(one(key[0], pair, text))
        return checked[key]

    tasks = [(pair, check(pair, pair.a), check(pair, pair.b)) for pair in pairs]
    judge_fp = fingerprint([model.served_id, MODE, aggregation, [c.fingerprint for c in checklists.values()]])
    out = {}
    for pair, a, b in tasks:
        out[pair.pair_id] = _judgment(pair, await a, await b, model.model_id, judge_fp)
    return out


def _judgment(pair: Pair, a: CheckedResponse, b: CheckedResponse, judge: str, judge_fp: str) -> Judgment:
    ids = list(dict.fromkeys(i.principle_id or MODE for i in a.checklist.items))
    p = preference(a.scored(), b.scored()).p_a
    if p is None:
        why = (a.failure if a.reward is None else f"b: {b.failure}") or "no checklist score"
        failure = Failure(kind="checklist", message=why)
        return Judgment(pair_id=pair.pair_id, fingerprint=judge_fp, status="failed", mode=MODE, orders="one",
                        judge_model=judge, principle_ids=ids, failure=failure)  # fmt: skip
    vote = Vote(principle_id=MODE, p_a=p, p_a_ab=p, score_a=a.reward, score_b=b.reward)
    return Judgment(pair_id=pair.pair_id, fingerprint=judge_fp, status="ok", mode=MODE, orders="one",
                    judge_model=judge, principle_ids=ids, p_a=p, p_a_ab=p, principles=[vote])  # fmt: skip


async def judge_by_checklist(
    model: ManagedModel, constitution: Constitution, pairs: Sequence[Pair], source: str, config: Any, close: bool = True
) -> dict[str, Judgment]:
    """The judgments of an evaluation with `scoring: checklist`: each prompt's checklist from the prompts file's
    `config.checklist_column` (else the constitution's criteria), `config.aggregation`, `config.concurrency`."""
    prompts = {str(p.prompt_id): [m.model_dump() for m in p.prompt] for p in pairs}
    given = prompt_checklists(source, config.checklist_column, list(prompts.values()))
    checklists = {pid: checklist_for(prompt, given, constitution) for pid, prompt in prompts.items()}
    try:
        return await checklist_judgments(model, pairs, checklists, config.aggregation, config.concurrency)
    finally:
        if close:
            await model.aclose()


__all__ = ["MODE", "checklist_for", "checklist_judgments", "judge_by_checklist", "prompt_checklists", "prompt_key"]
