"""Export and import of the spot-check sample and its labels: Argilla, Label Studio (JSON tasks) and CSV.

Responses are exported in the order the annotators see them: `response_A` was shown first. Labels in
files are in those screen terms (A, B, tie, skip) and mapped back to the pair's own a/b with `shown_order`.
An import is checked whole before anything is written, then written in one transaction.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.agreement.labels import (
    FileLabel,
    ImportFormatError,
    LabelError,
    LabelFile,
    judged_pairs,
    open_labels,
    read_label_file,
    shown_hash,
    shown_responses,
    to_screen_terms,
    validate_labels,
)
from charter.records import HumanLabel, Message, Pair
from charter.runs import labels as stored
from charter.runs.item_labels import step_labels
from charter.runs.items import stored_pairs
from charter.runs.store import RunStore

FORMATS = ("argilla", "labelstudio", "csv")
SCREEN = {"first": "A", "second": "B", "tie": "tie", "skip": "skip"}
CSV_COLUMNS = (
    "pair_id",
    "principle_id",
    "shown_order",
    "shown_hash",
    "prompt",
    "response_A",
    "response_B",
    "annotator",
    "label",
)
LABEL_STUDIO_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <Text name="response_A" value="$response_A"/>
  <Text name="response_B" value="$response_B"/>
  <Choices name="preference" toName="prompt" choice="single" showInline="true">
    <Choice value="A"/><Choice value="B"/><Choice value="tie"/><Choice value="skip"/>
  </Choices>
</View>"""

__all__ = ["FORMATS", "ImportFormatError", "ImportResult", "export_labels", "import_labels"]


#: The columns a CSV export adds where the sample holds trajectories: each annotator's first violating step of the
#: trajectory ending in response A and in B (the step's index among its messages, `none`, or empty: not labeled).
STEP_COLUMNS = ("step_A", "step_B")


def render_prompt(messages: list[Message]) -> str:
    """A prompt as a label file shows it: each message with its role; in a trajectory, each message's index, an
    assistant's tool calls as actions and a tool result marked untrusted (a plain conversation as it always was)."""
    if not is_trajectory(messages):
        return "\n\n".join(f"{m.role}: {m.content}" for m in messages)
    return "\n\n".join(_rendered(i, m) for i, m in enumerate(messages))


def is_trajectory(messages: list[Message]) -> bool:
    """Whether a pair's prompt is a trajectory (it has assistant or tool turns): its steps may be labeled."""
    return any(m.role in ("assistant", "tool") for m in messages)


def _rendered(index: int, message: Message) -> str:
    if message.role == "tool":
        role = f"tool result, untrusted (answers call {message.tool_call_id})"
    else:
        role = message.role
    actions = [
        f"[action: calls {c.name} (call {c.id}) with {json.dumps(c.arguments, sort_keys=True, ensure_ascii=False)}]"
        for c in message.tool_calls or ()
    ]
    return "\n".join([f"[{index}] {role}: {message.content}", *actions])


def _step_labels(store: RunStore, sample: dict[str, tuple[str, str]]) -> dict[str, dict[str, dict[str, int | str]]]:
    """pair id -> annotator -> {A, B}: each annotator's first violating step of the trajectory ending in the response
    shown first and second (its index, or `none`), for the principle the pair was sampled under."""
    out: dict[str, dict[str, dict[str, int | str]]] = {}
    for label in step_labels(store):
        order, principle = sample.get(label.pair_id, ("", ""))
        if label.principle_id != principle:
            continue
        screen = "A" if (label.side == "a") == (order == "ab") else "B"
        given = out.setdefault(label.pair_id, {}).setdefault(label.annotator, {})
        given[screen] = "none" if label.step is None else label.step
    return out


def _items(run_dir: Path) -> list[dict[str, Any]]:
    """Sampled pairs as shown (A first), each with its labels in screen terms."""
    store = open_labels(run_dir, read_only=True)
    try:
        pairs = judged_pairs(store)
        labels: dict[str, list[tuple[str, str]]] = {}
        for label in stored.labels(store):
            screen = SCREEN[to_screen_terms(label.label, label.shown_order)]
            labels.setdefault(label.pair_id, []).append((label.annotator, screen))
        sample = stored.sample(store)
        steps = _step_labels(store, {row.pair_id: (row.shown_order, row.principle_id) for row in sample})
        items = []
        for row in sample:
            if row.pair_id not in pairs:
                continue
            pair = pairs[row.pair_id].pair
            first, second = shown_responses(pair, row.shown_order)
            items.append(
                {
                    **row.model_dump(),
                    "messages": pair.prompt,
                    "A": first,
                    "B": second,
                    "shown_hash": shown_hash(first, second),
                    "labels": labels.get(row.pair_id, []),
                    "trajectory": is_trajectory(pair.prompt),
                    "step_labels": steps.get(row.pair_id, {}),
                }
            )
        return items
    finally:
        store.close()


def _metadata(item: dict) -> dict:
    """What a JSON export keeps of a pair beside its texts; a trajectory's step labels (annotator -> {A, B}, the
    first violating step of the trajectory ending in each response) where it has any."""
    meta = {k: item[k] for k in ("pair_id", "principle_id", "shown_order", "shown_hash")}
    if item["step_labels"]:
        meta["step_labels"] = item["step_labels"]
    return meta


def _argilla(item: dict) -> dict:
    return {
        "id": item["pair_id"],
        "fields": {"prompt": render_prompt(item["messages"]), "response_A": item["A"], "response_B": item["B"]},
        "metadata": _metadata(item),
        "responses": {"preference": [{"value": lab, "user_id": who} for who, lab in item["labels"]]},
        "suggestions": {},
        "status": "completed" if item["labels"] else "pending",
    }


def _labelstudio(item: dict, index: int) -> dict:
    return {
        "id": index + 1,
        "data": {
            **_metadata(item),
            "prompt": render_prompt(item["messages"]),
            "response_A": item["A"],
            "response_B": item["B"],
        },
        "annotations": [
            {
                "completed_by": {"email": who},
                "result": [
                    {"from_name": "preference", "to_name": "prompt", "type": "choices", "value": {"choices": [lab]}}
                ],
            }
            for who, lab in item["labels"]
        ],
    }


def export_labels(run_dir: str | Path, fmt: str, out: str | Path) -> int:
    """Write the sample (and its labels) to `out`; returns the number of sampled pairs written."""
    items = _items(Path(run_dir))
    out = Path(out)
    if fmt == "csv":
        steps = any(it["trajectory"] for it in items)
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([*CSV_COLUMNS, *(STEP_COLUMNS if steps else ())])
            for it in items:
                base = [
                    it["pair_id"],
                    it["principle_id"],
                    it["shown_order"],
                    it["shown_hash"],
                    json.dumps([m.model_dump() for m in it["messages"]], ensure_ascii=False),
                    it["A"],
                    it["B"],
                ]
                if not steps:
                    for who, lab in it["labels"] or [("", "")]:
                        writer.writerow([*base, who, lab])
                    continue
                given = dict(it["labels"])
                for who in [*given, *(w for w in it["step_labels"] if w not in given)] or [""]:
                    step = it["step_labels"].get(who, {})
                    writer.writerow([*base, who, given.get(who, ""), step.get("A", ""), step.get("B", "")])
    elif fmt in ("argilla", "labelstudio"):
        records = [_argilla(it) if fmt == "argilla" else _labelstudio(it, i) for i, it in enumerate(items)]
        out.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        raise LabelError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    return len(items)


# -- import ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportResult:
    """What an import stored."""

    new: int
    """Labels stored where the annotator had none on the pair."""
    replaced: int
    """Labels that replaced another label by the same annotator on the pair."""
    unchanged: int
    """Labels the run already held, the same (not stored again)."""

    @property
    def stored(self) -> int:
        """Labels written: new and replaced."""
        return self.new + self.replaced


def _normal(text: str) -> str:
    """Text with whitespace runs made one space (spreadsheet programs rewrite line ends)."""
    return " ".join(text.split())


def _check_shown(path: Path, row: FileLabel, order: str, pair: Pair) -> None:
    """Refuse a label whose file says it was shown otherwise than the sample shows the pair."""
    at, pid = f"{path}: {row.where}", row.label.pair_id
    if row.label.shown_order != order:
        raise ImportFormatError(
            f"{at}: pair '{pid}' was exported with shown_order '{order}', the file says "
            f"'{row.label.shown_order}' (the label would land on the other response); nothing imported"
        )
    first, second = shown_responses(pair, order)
    if row.shown_hash is not None and row.shown_hash != shown_hash(first, second):
        raise ImportFormatError(
            f"{at}: pair '{pid}': shown_hash {row.shown_hash!r} is not that of the responses as the sample shows "
            "them (an edited row, or one from another run); nothing imported"
        )
    if row.texts is not None:
        given = tuple(_normal(t) for t in row.texts)
        if given != (_normal(first), _normal(second)):
            how = "in the other order" if given == (_normal(second), _normal(first)) else "other texts"
            raise ImportFormatError(
                f"{at}: pair '{pid}': response_A and response_B are {how} than the sample shows; nothing imported"
            )


def _check_duplicates(got: LabelFile) -> None:
    """Refuse a file that labels one pair twice by one annotator (which would win is a guess)."""
    seen: dict[tuple[str, str], str] = {}
    for row in got.labels:
        key = (row.label.pair_id, row.label.annotator)
        if key in seen:
            raise ImportFormatError(
                f"{got.path}: {seen[key]} and {row.where} both label pair '{key[0]}' by annotator '{key[1]}'; "
                "keep one; nothing imported"
            )
        seen[key] = row.where


def _check(store: RunStore, got: LabelFile) -> None:
    validate_labels(store, [r.label for r in got.labels], [f"{got.path}: {r.where}" for r in got.labels])
    orders = {s.pair_id: s.shown_order for s in stored.sample(store)}
    wanted = {r.label.pair_id for r in got.labels}
    pairs = {p.pair_id: p for p in stored_pairs(store) if p.pair_id in wanted}
    for row in got.labels:
        _check_shown(got.path, row, orders[row.label.pair_id], pairs[row.label.pair_id])
    _check_duplicates(got)


def import_labels(run_dir: str | Path, path: str | Path, fmt: str) -> ImportResult:
    """Read labels from a file; all are checked first (pairs, values, the order and texts shown, duplicates),
    then written in one transaction, or none are.

    A label the run already holds (same pair, annotator and label) is not stored again; a different label by the
    same annotator on the pair replaces the stored one, as relabeling on the page does (label_events keeps both).
    """
    if fmt not in FORMATS:
        raise LabelError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    got = read_label_file(Path(path), fmt)
    store = open_labels(run_dir)
    try:
        _check(store, got)
        held = {(h.pair_id, h.annotator): h.label for h in stored.labels(store)}
        fresh: list[HumanLabel] = []
        new = replaced = 0
        for row in got.labels:
            before = held.get((row.label.pair_id, row.label.annotator))
            if before == row.label.label:
                continue
            fresh.append(row.label)
            new, replaced = (new + 1, replaced) if before is None else (new, replaced + 1)
        if fresh:
            stored.put_labels(store, fresh, source=f"import:{fmt}")
        return ImportResult(new, replaced, len(got.labels) - len(fresh))
    finally:
        store.close()
