"""The examples a run report shows: a handful of judged pairs spread over the judge's confidence, read from the
dataset files when there are any, else from the store in batches (a million judged pairs stay flat in memory)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from charter.checklist.store import kept_checklist
from charter.records import ChecklistSide, Fingerprints, ItemVerdict, Judgment, Message, Pair, StepFinding, ToolCall
from charter.records.base import last_text
from charter.runs.files import RunFiles
from charter.runs.items import judged_records
from charter.runs.store import RunStore

N_EXAMPLES = 5
#: Longest text the report shows of a prompt or response; the rest is cut, and the cut says how long it was.
SHOWN_CHARS = 2000
#: Longest judge's reason the report shows for one checklist item.
SHOWN_REASON = 300
#: Judged pairs read from the store into one numpy batch of their confidence.
BATCH_ROWS = 65536


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, or its start and a note of how long it is."""
    return text if len(text) <= limit else f"{text[:limit]}… (cut: {len(text):,} characters in all)"


def _verdict_shown(verdict: ItemVerdict | None) -> str:
    """One item's verdict on one response as the report shows it: the verdict, its P(yes) where there is one, who
    gave it where a verifier did, and the judge's reason (or why the verdict failed)."""
    if verdict is None:
        return "–"
    said = verdict.verdict + (f" (P(yes) {verdict.p_yes:.2f})" if verdict.p_yes is not None else "")
    said += " (verifier)" if verdict.by == "verifier" else ""
    why = verdict.error if verdict.verdict == "failed" else verdict.reason
    return f"{said}: {clip(why, SHOWN_REASON)}" if why else said


def checklist_shown(
    items: list[tuple[str, str]] | None, chosen: ChecklistSide | None, rejected: ChecklistSide | None
) -> dict | None:
    """An example's checklist as the report shows it: each item ((id, requirement); the verdicts' ids where the
    items are not at hand) with its verdict and reason on the chosen and the rejected response, and the two scores
    (None outside judge mode `checklist`)."""
    if chosen is None or rejected is None:
        return None
    by_chosen = {v.item_id: v for v in chosen.verdicts}
    by_rejected = {v.item_id: v for v in rejected.verdicts}
    listed = items if items is not None else [(v.item_id, "") for v in chosen.verdicts]
    return {
        "items": [
            {
                "item": f"{item_id}: {requirement}" if requirement else item_id,
                "chosen": _verdict_shown(by_chosen.get(item_id)),
                "rejected": _verdict_shown(by_rejected.get(item_id)),
            }
            for item_id, requirement in listed
        ],
        "score_chosen": chosen.score.score,
        "score_rejected": rejected.score.score,
        "expected_chosen": chosen.score.expected,
        "expected_rejected": rejected.score.expected,
        "overall_chosen": chosen.overall,
        "overall_rejected": rejected.overall,
    }


def _row_items(checklist: list[dict[str, Any]] | None) -> list[tuple[str, str]] | None:
    if checklist is None:
        return None
    return [(str(item.get("id")), str(item.get("requirement") or "")) for item in checklist]


def _shown(messages: list[Any]) -> list[dict]:
    return [{"role": m.role, "content": clip(m.content)} for m in messages]


def _action(call: ToolCall) -> str:
    """A tool call as the report shows it: an action, its name and JSON arguments, and whether it changes the world."""
    effect = "" if call.side_effect is None else ", changes the world" if call.side_effect else ", reads only"
    arguments = json.dumps(call.arguments, sort_keys=True, ensure_ascii=False)
    return f"calls {call.name} (call {call.id}{effect}) with {clip(arguments, SHOWN_REASON)}"


def _label(message: Message) -> str:
    if message.role != "tool":
        return message.role
    answers = f" (answers call {message.tool_call_id})" if message.tool_call_id else ""
    return f"tool result, untrusted{answers}"


def transcript_shown(messages: list[Message], violating: int) -> list[dict]:
    """A trajectory laid out by role as the report shows it: each message with its index and role, an assistant's
    tool calls as actions, a tool result marked untrusted (with the call it answers), and the violating step
    flagged."""
    return [
        {
            "index": i,
            "role": m.role,
            "label": _label(m),
            "content": clip(m.content),
            "actions": [_action(c) for c in m.tool_calls or ()],
            "violating": i == violating,
        }
        for i, m in enumerate(messages)
    ]


def violations_shown(prompt: list[Message], sides: list[tuple[str, list[Message], StepFinding | None]]) -> list[dict]:
    """Each side's first violating step (where a stepwise judge found one): the side, the step, the principle, the
    judge's reason, and the side's whole trajectory (the prompt's turns, then its response) laid out by role."""
    return [
        {
            "side": side,
            "step": found.step,
            "principle_id": found.principle_id,
            "reason": clip(found.reason, SHOWN_REASON),
            "transcript": transcript_shown([*prompt, *response], found.step),
        }
        for side, response, found in sides
        if found is not None
    ]


def _spread_ranks(total: int, n: int) -> list[int]:
    """The ranks of n of `total` sorted items spread evenly from first to last (all of them when n or fewer)."""
    if total <= n:
        return list(range(total))
    return sorted({int(i * (total - 1) / (n - 1) + 0.5) for i in range(n)})


def _order_keys(values: Any) -> Any:
    """uint64 keys that sort as the (non-NaN) float64 values do: the sign bit flipped for positives, every bit for
    negatives (-0.0 counts as 0.0, as in a sort)."""
    import numpy as np

    bits = (np.asarray(values, dtype=float) + 0.0).view(np.uint64)
    return np.where(bits >> np.uint64(63) == 1, ~bits, bits | np.uint64(1 << 63))


def _ranked_positions(read: Callable[[], Iterator[Any]], ranks: list[int]) -> list[int]:
    """The row positions of the items at `ranks` (ascending, distinct, each below the count) in a stable sort of a
    float column's non-NaN values, ties in row order. `read()` gives the column again as numpy batches (NaN for
    null); the keys are found 16 bits a pass (a radix select) and each item's position in one more pass, so
    nothing per row is held (an argsort of a million rows' column was ~30 MB of numpy)."""
    import numpy as np

    found = [(0, 0)] * len(ranks)  # per rank: the key's leading bits so far, the values below them
    for level in range(4):
        low = np.uint64(48 - 16 * level)
        counts = np.zeros((len(ranks), 1 << 16), dtype=np.int64)
        for values in read():
            keys = _order_keys(values[~np.isnan(values)])
            for t, (prefix, _) in enumerate(found):
                inside = keys if level == 0 else keys[keys >> (low + np.uint64(16)) == np.uint64(prefix)]
                counts[t] += np.bincount(((inside >> low) & np.uint64(0xFFFF)).astype(np.intp), minlength=1 << 16)
        for t, rank in enumerate(ranks):
            prefix, below = found[t]
            cumulative = np.cumsum(counts[t])
            digit = int(np.searchsorted(cumulative, rank - below, side="right"))
            found[t] = ((prefix << 16) | digit, below + (int(cumulative[digit - 1]) if digit else 0))
    positions: list[int | None] = [None] * len(ranks)
    passed, start = [0] * len(ranks), 0  # per rank: values equal to its key met so far
    for values in read():
        valid = ~np.isnan(values)
        keys = _order_keys(np.where(valid, values, 0.0))
        for t, (key, below) in enumerate(found):
            if positions[t] is None:
                hits = np.flatnonzero(valid & (keys == np.uint64(key)))
                wanted = ranks[t] - below - passed[t]
                if wanted < len(hits):
                    positions[t] = start + int(hits[wanted])
                passed[t] += len(hits)
        start += len(values)
    return [int(p) for p in positions if p is not None]


def float_batches(files: RunFiles, column: str) -> Callable[[], Iterator[Any]]:
    """A reader of one preference column as float64 numpy batches, NaN for null, read again at each call."""

    def read() -> Iterator[Any]:
        for array in files.column_batches("preferences", column):
            yield array.to_numpy(zero_copy_only=False).astype(float)  # nulls become NaN

    return read


def _spread_positions(read: Callable[[], Iterator[Any]], n: int) -> list[int]:
    """`_spread` over the dataset's p_chosen column: rows are in pair-id order, so a stable sort by p_chosen breaks
    ties by pair id without reading the ids, and the sort is a selection of n ranks over the column read in
    batches (memory flat however many rows)."""
    import numpy as np

    total = sum(int(np.count_nonzero(~np.isnan(values))) for values in read())
    return _ranked_positions(read, _spread_ranks(total, n))


def _examples_from_preferences(files: RunFiles, n: int) -> list[dict]:
    rows = files.preferences_at(_spread_positions(float_batches(files, "p_chosen"), n))
    return [
        {
            "pair_id": r.pair_id,
            "kind": r.pair_kind,
            "prompt": _shown(r.prompt),
            "chosen": clip(last_text(r.chosen)),
            "rejected": clip(last_text(r.rejected)),
            "p_chosen": r.p_chosen,
            "principle_ids": r.principle_ids,
            "checklist": checklist_shown(_row_items(r.checklist), r.checklist_chosen, r.checklist_rejected),
            "violations": violations_shown(
                r.prompt,
                [
                    ("chosen", r.chosen, r.first_violation_chosen),
                    ("rejected", r.rejected, r.first_violation_rejected),
                ],
            ),
        }
        for r in sorted(rows, key=lambda r: (r.p_chosen, r.pair_id))
    ]


def _confidence_batches(store: RunStore, fp: Fingerprints) -> Callable[[], Iterator[Any]]:
    """A reader of the judge's confidence, max(p_a, 1 - p_a), of every judged pair in pair order (NaN where p_a is
    null), as float64 numpy batches read from the store again at each call."""
    import numpy as np

    def read() -> Iterator[Any]:
        batch: list[float] = []
        for _, record in judged_records(store, fp, pairs=False):
            p_a = orjson.loads(record).get("p_a")
            batch.append(math.nan if p_a is None else max(p_a, 1.0 - p_a))
            if len(batch) == BATCH_ROWS:
                yield np.array(batch, dtype=float)
                batch = []
        if batch:
            yield np.array(batch, dtype=float)

    return read


def _examples_from_store(store: RunStore, fp: Fingerprints, n: int) -> list[dict]:
    """n judged pairs spread evenly over the judge's confidence (ties in pair-id order), chosen as
    `_spread_positions` chooses over the dataset: the confidences are read in batches and only the chosen pairs are
    decoded."""
    positions = _spread_positions(_confidence_batches(store, fp), n)
    wanted = set(positions)
    judged = {
        i: (Pair.model_validate_json(pair or ""), Judgment.model_validate_json(judgment))
        for i, (pair, judgment) in enumerate(judged_records(store, fp))
        if i in wanted
    }
    found = []
    for i in positions:
        pair, judgment = judged[i]
        a_wins = (judgment.p_a or 0.0) >= 0.5
        checked, items = judgment.checklist, None
        if checked is not None and fp.checklist is not None and pair.prompt_id is not None:
            stored = kept_checklist(store, pair.prompt_id, fp.checklist)
            items = None if stored is None else [(item.id, item.requirement) for item in stored.items]
        sides = (None, None) if checked is None else (checked.a, checked.b) if a_wins else (checked.b, checked.a)
        side_a = ([Message(role="assistant", content=pair.a)], judgment.first_violation_a)
        side_b = ([Message(role="assistant", content=pair.b)], judgment.first_violation_b)
        chosen, rejected = (side_a, side_b) if a_wins else (side_b, side_a)
        found.append(
            {
                "pair_id": pair.pair_id,
                "kind": pair.kind,
                "prompt": _shown(pair.prompt),
                "chosen": clip(pair.a if a_wins else pair.b),
                "rejected": clip(pair.b if a_wins else pair.a),
                "p_chosen": max(judgment.p_a or 0.0, 1.0 - (judgment.p_a or 0.0)),
                "principle_ids": judgment.principle_ids,
                "checklist": checklist_shown(items, *sides),
                "violations": violations_shown(pair.prompt, [("chosen", *chosen), ("rejected", *rejected)]),
            }
        )
    return found


def examples(store: RunStore, fp: Fingerprints | None, n: int = N_EXAMPLES) -> tuple[list[dict], str]:
    """A handful of (prompt, chosen, rejected, p, principles) examples spread over the range of p(chosen)."""
    files = RunFiles(store.run_dir)
    if files.has_dataset("preferences") and (found := _examples_from_preferences(files, n)):
        return found, "the preference dataset"
    if fp is None:
        return [], "the judged pairs"
    return _examples_from_store(store, fp, n), "the judged pairs (no preference dataset yet)"
