"""Export and import of the spot-check sample and its labels: Argilla, Label Studio (JSON tasks) and CSV.

Responses are exported in the order the annotators see them: `response_A` was shown first. Labels in
files are in those screen terms (A, B, tie, skip) and mapped back to the pair's own a/b with `shown_order`.
An import is checked whole before anything is written, then written in one transaction.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charter.agreement.labels import (
    LabelError,
    judged_pairs,
    new_label,
    open_labels,
    put_labels,
    to_pair_terms,
    to_screen_terms,
    validate_labels,
)
from charter.records import HumanLabel, Message
from charter.runs import labels as stored
from charter.tables import iter_csv

FORMATS = ("argilla", "labelstudio", "csv")
SCREEN = {"first": "A", "second": "B", "tie": "tie", "skip": "skip"}
FROM_SCREEN = {"a": "first", "b": "second", "tie": "tie", "skip": "skip"}
CSV_COLUMNS = ("pair_id", "principle_id", "shown_order", "prompt", "response_A", "response_B", "annotator", "label")
LABEL_STUDIO_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <Text name="response_A" value="$response_A"/>
  <Text name="response_B" value="$response_B"/>
  <Choices name="preference" toName="prompt" choice="single" showInline="true">
    <Choice value="A"/><Choice value="B"/><Choice value="tie"/><Choice value="skip"/>
  </Choices>
</View>"""


class ImportFormatError(LabelError):
    """An import file is not in the format named."""


def render_prompt(messages: list[Message]) -> str:
    return "\n\n".join(f"{m.role}: {m.content}" for m in messages)


def _items(run_dir: Path) -> list[dict[str, Any]]:
    """Sampled pairs as shown (A first), each with its labels in screen terms."""
    store = open_labels(run_dir, read_only=True)
    try:
        pairs = judged_pairs(store)
        labels: dict[str, list[tuple[str, str]]] = {}
        for label in stored.labels(store):
            screen = SCREEN[to_screen_terms(label.label, label.shown_order)]
            labels.setdefault(label.pair_id, []).append((label.annotator, screen))
        items = []
        for row in stored.sample(store):
            if row.pair_id not in pairs:
                continue
            pair = pairs[row.pair_id].pair
            first, second = (pair.a, pair.b) if row.shown_order == "ab" else (pair.b, pair.a)
            items.append(
                {
                    **row.model_dump(),
                    "messages": pair.prompt,
                    "A": first,
                    "B": second,
                    "labels": labels.get(row.pair_id, []),
                }
            )
        return items
    finally:
        store.close()


def _argilla(item: dict) -> dict:
    return {
        "id": item["pair_id"],
        "fields": {"prompt": render_prompt(item["messages"]), "response_A": item["A"], "response_B": item["B"]},
        "metadata": {
            "pair_id": item["pair_id"],
            "principle_id": item["principle_id"],
            "shown_order": item["shown_order"],
        },
        "responses": {"preference": [{"value": lab, "user_id": who} for who, lab in item["labels"]]},
        "suggestions": {},
        "status": "completed" if item["labels"] else "pending",
    }


def _labelstudio(item: dict, index: int) -> dict:
    return {
        "id": index + 1,
        "data": {
            "pair_id": item["pair_id"],
            "principle_id": item["principle_id"],
            "shown_order": item["shown_order"],
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
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for it in items:
                base = [
                    it["pair_id"],
                    it["principle_id"],
                    it["shown_order"],
                    json.dumps([m.model_dump() for m in it["messages"]], ensure_ascii=False),
                    it["A"],
                    it["B"],
                ]
                for who, lab in it["labels"] or [("", "")]:
                    writer.writerow([*base, who, lab])
    elif fmt in ("argilla", "labelstudio"):
        records = [_argilla(it) if fmt == "argilla" else _labelstudio(it, i) for i, it in enumerate(items)]
        out.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        raise LabelError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    return len(items)


# -- import ----------------------------------------------------------------------------------------------
Parsed = list[tuple[str, HumanLabel]]  # (where in the file, label)


def _label(where: str, pair_id: Any, annotator: Any, screen: Any, order: Any) -> HumanLabel:
    if not isinstance(pair_id, str) or not pair_id:
        raise ImportFormatError(f"{where}: missing pair_id")
    if order not in ("ab", "ba"):
        raise ImportFormatError(f"{where}: shown_order {order!r} is not 'ab' or 'ba'")
    if not isinstance(screen, str) or screen.strip().lower() not in FROM_SCREEN:
        raise ImportFormatError(f"{where}: label {screen!r} is not one of A, B, tie, skip")
    if not isinstance(annotator, str) or not annotator.strip():
        raise ImportFormatError(f"{where}: missing annotator")
    try:
        return new_label(pair_id, annotator.strip(), to_pair_terms(FROM_SCREEN[screen.strip().lower()], order), order)
    except LabelError as exc:
        raise ImportFormatError(f"{where}: {exc}") from None


def _parse_csv(path: Path) -> Parsed:
    out = []
    for line, row in iter_csv(path, ImportFormatError):  # strict: a stray quote or a short row names its line
        missing = [c for c in ("pair_id", "shown_order", "annotator", "label") if c not in row]
        if missing:
            raise ImportFormatError(f"{path}: line 1: not a charter label CSV (missing column(s) {', '.join(missing)})")
        where = f"{path}: line {line}"
        if row["label"].strip():
            out.append((where, _label(where, row["pair_id"], row["annotator"], row["label"], row["shown_order"])))
    return out


def _load_json_list(path: Path, what: str) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(data, list):
        raise ImportFormatError(f"{path}: expected a JSON list of {what}, got {type(data).__name__}")
    return data


def _need(obj: Any, key: str, where: str, kind: type = dict) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        raise ImportFormatError(f"{where}: missing or malformed '{key}' ({kind.__name__} expected)")
    return value


def _parse_argilla(path: Path) -> Parsed:
    out = []
    for i, record in enumerate(_load_json_list(path, "Argilla records"), start=1):
        where = f"{path}: item {i}"
        meta = _need(record, "metadata", where)
        _need(record, "fields", where)
        responses = record.get("responses") or {}
        if isinstance(responses, dict):  # Argilla 2.x: {question: [{value, user_id}]}
            answers = (
                [(r.get("user_id"), r.get("value")) for r in _need(responses, "preference", where, list)]
                if "preference" in responses
                else []
            )
        elif isinstance(responses, list):  # Argilla 1.x FeedbackDataset: [{user_id, values: {q: {value}}}]
            answers = [
                (r.get("user_id"), ((r.get("values") or {}).get("preference") or {}).get("value"))
                for r in responses
                if isinstance(r, dict)
            ]
        else:
            raise ImportFormatError(f"{where}: malformed 'responses'")
        for who, value in answers:
            out.append((where, _label(where, meta.get("pair_id"), who, value, meta.get("shown_order"))))
    return out


def _annotator(completed_by: Any) -> Any:
    if isinstance(completed_by, dict):
        return completed_by.get("email") or completed_by.get("username") or completed_by.get("id")
    return str(completed_by) if isinstance(completed_by, int) else completed_by


def _parse_labelstudio(path: Path) -> Parsed:
    out = []
    for i, task in enumerate(_load_json_list(path, "Label Studio tasks"), start=1):
        where = f"{path}: item {i}"
        data = _need(task, "data", where)
        for annotation in task.get("annotations") or []:
            results = _need(annotation, "result", where, list)
            choices = [
                c
                for r in results
                if isinstance(r, dict) and r.get("type") == "choices"
                for c in (r.get("value") or {}).get("choices") or []
            ]
            if len(choices) != 1:
                raise ImportFormatError(f"{where}: expected one choice per annotation, found {len(choices)}")
            out.append(
                (
                    where,
                    _label(
                        where,
                        data.get("pair_id"),
                        _annotator(annotation.get("completed_by")),
                        choices[0],
                        data.get("shown_order"),
                    ),
                )
            )
    return out


PARSERS: dict[str, Callable[[Path], Parsed]] = {
    "csv": _parse_csv,
    "argilla": _parse_argilla,
    "labelstudio": _parse_labelstudio,
}


def import_labels(run_dir: str | Path, path: str | Path, fmt: str) -> int:
    """Read labels from a file; all are checked first, then written in one transaction. Returns the count."""
    if fmt not in PARSERS:
        raise LabelError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: no such file")
    parsed = PARSERS[fmt](path)
    store = open_labels(run_dir)
    try:
        labels = [label for _, label in parsed]
        validate_labels(store, labels, [where for where, _ in parsed])
        put_labels(store, labels, source=f"import:{fmt}")
        return len(labels)
    finally:
        store.close()
