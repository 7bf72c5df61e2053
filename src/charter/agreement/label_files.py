"""Reading label files (CSV, Argilla 1.x/2.x, Label Studio) into rows to check; nothing here touches a run.

Every reader answers a file of the wrong shape with one `ImportFormatError` naming the file and the row or item,
never another exception: a reader only looks into a value after checking its type.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.agreement.labels import LabelError, new_label, to_pair_terms
from charter.records import HumanLabel
from charter.tables import iter_csv, read_text_file

FROM_SCREEN = {"a": "first", "b": "second", "tie": "tie", "skip": "skip"}
REQUIRED_CSV = ("pair_id", "shown_order", "annotator", "label")

__all__ = ["FileLabel", "ImportFormatError", "LabelFile", "read_label_file", "shown_hash"]


class ImportFormatError(LabelError):
    """An import file is not in the format named, or its labels do not fit the run."""


def shown_hash(first: str, second: str) -> str:
    """The fingerprint of two responses in the order shown (16 hex digits of a SHA-256)."""
    return hashlib.sha256(json.dumps([first, second], ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FileLabel:
    """One label read from a file, with what the file says was shown."""

    where: str
    """Its place in the file: 'line 4' or 'item 2'."""
    label: HumanLabel
    """The label in the pair's own terms (through the file's shown_order)."""
    shown_hash: Any = None
    """The file's `shown_hash` of the responses as shown; None when the file has none (files from older exports)."""
    texts: tuple[str, str] | None = None
    """The file's response_A and response_B; None when it carries no texts."""


@dataclass(frozen=True)
class LabelFile:
    """A label file read whole."""

    path: Path
    """The file."""
    rows: int
    """How many rows (CSV) or items (JSON) it has, labeled or not."""
    labels: list[FileLabel]
    """Its labels, in file order."""


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _texts(obj: Any) -> tuple[str, str] | None:
    first, second = _get(obj, "response_A"), _get(obj, "response_B")
    return (first, second) if isinstance(first, str) and isinstance(second, str) else None


def _answer(where: str, number: int) -> str:
    """An item's place, and the answer's among the item's answers after the first."""
    return where if number == 1 else f"{where} (answer {number})"


def _label(path: Path, where: str, pair_id: Any, annotator: Any, screen: Any, order: Any) -> HumanLabel:
    at = f"{path}: {where}"
    if not isinstance(pair_id, str) or not pair_id:
        raise ImportFormatError(f"{at}: missing pair_id")
    if not isinstance(order, str) or order not in ("ab", "ba"):
        raise ImportFormatError(f"{at}: shown_order {order!r} is not 'ab' or 'ba'")
    if not isinstance(screen, str) or screen.strip().lower() not in FROM_SCREEN:
        raise ImportFormatError(f"{at}: label {screen!r} is not one of A, B, tie, skip")
    if not isinstance(annotator, str) or not annotator.strip():
        raise ImportFormatError(f"{at}: missing annotator")
    try:
        return new_label(pair_id, annotator.strip(), to_pair_terms(FROM_SCREEN[screen.strip().lower()], order), order)
    except LabelError as exc:
        raise ImportFormatError(f"{at}: {exc}") from None


def _read_csv(path: Path) -> LabelFile:
    out, rows = [], 0
    for line, row in iter_csv(path, ImportFormatError):  # strict: a stray quote or a short row names its line
        missing = [c for c in REQUIRED_CSV if c not in row]
        if missing:
            raise ImportFormatError(f"{path}: line 1: not a charter label CSV (missing column(s) {', '.join(missing)})")
        rows += 1
        where = f"line {line}"
        if row["label"].strip():
            label = _label(path, where, row["pair_id"], row["annotator"], row["label"], row["shown_order"])
            out.append(FileLabel(where, label, row.get("shown_hash"), _texts(row)))
    return LabelFile(path, rows, out)


def _load_json_list(path: Path, what: str) -> list:
    text = read_text_file(path, ImportFormatError, "JSON file")
    if not text.strip():
        raise ImportFormatError(f"{path}: empty file (expected a JSON list of {what})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ImportFormatError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, list):
        raise ImportFormatError(f"{path}: expected a JSON list of {what}, got {type(data).__name__}")
    return data


def _need(obj: Any, key: str, at: str, kind: type = dict) -> Any:
    value = _get(obj, key)
    if not isinstance(value, kind):
        raise ImportFormatError(f"{at}: missing or malformed '{key}' ({kind.__name__} expected)")
    return value


def _argilla_answers(responses: Any, at: str) -> list[tuple[Any, Any]]:
    """(user, value) of each answer to the 'preference' question, from a 2.x dict or a 1.x list."""
    if responses is None or responses == {} or responses == []:
        return []
    if isinstance(responses, dict):  # Argilla 2.x: {question: [{value, user_id}]}
        answers = responses.get("preference", [])
        if not isinstance(answers, list) or not all(isinstance(r, dict) for r in answers):
            raise ImportFormatError(f"{at}: malformed 'responses.preference' (a list of objects expected)")
        return [(r.get("user_id"), r.get("value")) for r in answers]
    if isinstance(responses, list):  # Argilla 1.x FeedbackDataset: [{user_id, values: {q: {value}}}]
        if not all(isinstance(r, dict) for r in responses):
            raise ImportFormatError(f"{at}: malformed 'responses' (a list of objects expected)")
        return [(r.get("user_id"), _get(_get(r.get("values"), "preference"), "value")) for r in responses]
    raise ImportFormatError(f"{at}: malformed 'responses' (an object or a list expected)")


#: What a JSON export holds of one item, given it and where it is: the pair's metadata (`pair_id`, `shown_order`,
#: `shown_hash`), the texts shown, and each answer as (annotator, value).
ItemReader = Callable[[Any, str], tuple[dict, dict, Iterable[tuple[Any, Any]]]]


def _read_json_items(path: Path, what: str, read_item: ItemReader) -> LabelFile:
    """The labels of a JSON list of items (an Argilla or Label Studio export), one per answer of each item."""
    out = []
    items = _load_json_list(path, what)
    for i, item in enumerate(items, start=1):
        where = f"item {i}"
        meta, texts, answers = read_item(item, f"{path}: {where}")
        for j, (who, value) in enumerate(answers, start=1):
            label = _label(path, where, meta.get("pair_id"), who, value, meta.get("shown_order"))
            out.append(FileLabel(_answer(where, j), label, meta.get("shown_hash"), _texts(texts)))
    return LabelFile(path, len(items), out)


def _argilla_item(record: Any, at: str) -> tuple[dict, dict, Iterable[tuple[Any, Any]]]:
    meta = _need(record, "metadata", at)
    fields = _need(record, "fields", at)
    return meta, fields, _argilla_answers(record.get("responses"), at)


def _read_argilla(path: Path) -> LabelFile:
    return _read_json_items(path, "Argilla records", _argilla_item)


def _annotator(completed_by: Any) -> Any:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("username") or completed_by.get("id")
    return str(completed_by) if isinstance(completed_by, int) and not isinstance(completed_by, bool) else completed_by


def _choices(annotation: Any, at: str) -> list[Any]:
    choices: list[Any] = []
    for result in _need(annotation, "result", at, list):
        if _get(result, "type") != "choices":
            continue
        got = _get(_get(result, "value"), "choices")
        if not isinstance(got, list):
            raise ImportFormatError(f"{at}: malformed 'value.choices' (a list expected)")
        choices.extend(got)
    if len(choices) != 1:
        raise ImportFormatError(f"{at}: expected one choice per annotation, found {len(choices)}")
    return choices


def _labelstudio_item(task: Any, at: str) -> tuple[dict, dict, Iterable[tuple[Any, Any]]]:
    data = _need(task, "data", at)
    annotations = task.get("annotations")
    if annotations is None:
        annotations = []
    if not isinstance(annotations, list):
        raise ImportFormatError(f"{at}: malformed 'annotations' (list expected)")
    return data, data, _labelstudio_answers(annotations, at)


def _labelstudio_answers(annotations: list[Any], at: str) -> Iterator[tuple[Any, Any]]:
    """Each annotation's (annotator, choice), read as it is labeled: an error names the first broken one, and an
    annotation that is not an object is one (`_choices` checks it before its annotator is read)."""
    for annotation in annotations:
        choice = _choices(annotation, at)[0]
        yield _annotator(annotation.get("completed_by")), choice


def _read_labelstudio(path: Path) -> LabelFile:
    return _read_json_items(path, "Label Studio tasks", _labelstudio_item)


READERS: dict[str, Callable[[Path], LabelFile]] = {
    "csv": _read_csv,
    "argilla": _read_argilla,
    "labelstudio": _read_labelstudio,
}


def read_label_file(path: Path, fmt: str) -> LabelFile:
    """A label file's labels; a file with no rows, or rows but no labels, is an error naming it."""
    got = READERS[fmt](path)  # a missing file or a folder is one line from the reader
    kind = "rows" if fmt == "csv" else "items"
    if got.rows == 0:
        raise ImportFormatError(f"{path}: no {kind} to import (the file is empty or holds only a header)")
    if not got.labels:
        raise ImportFormatError(f"{path}: none of its {got.rows} {kind} holds a label")
    return got
