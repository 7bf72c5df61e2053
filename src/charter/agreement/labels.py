"""The judged pairs humans check, and checking and storing their labels (the store side is charter.runs.labels).

Labels are in the pair's own terms: 'a' means the pair's response `a` is better, whatever order the
annotator saw the two responses in (`shown_order` 'ab': a was shown first, 'ba': b first).

Reading label files (CSV, Argilla 1.x/2.x, Label Studio) into rows to check; nothing here touches a run.

Every reader answers a file of the wrong shape with one `ImportFormatError` naming the file and the row or item,
never another exception: a reader only looks into a value after checking its type.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.errors import RunStoreError, UserError
from charter.judge_prompt import with_actions
from charter.records import HumanLabel, Judgment, Pair
from charter.runs import labels as stored
from charter.runs.items import judged_pairs as stored_judged_pairs
from charter.runs.items import pair_ids
from charter.runs.labels import SpotSample
from charter.runs.store import RunStore, open_store
from charter.tables import iter_csv, read_text_file

LABELS = ("a", "b", "tie", "skip")
ANNOTATOR_RE = re.compile(r"^[\w .@+-]{1,64}$")

__all__ = [
    "FileLabel",
    "ImportFormatError",
    "JudgedPair",
    "LabelError",
    "SpotSample",
    "check_annotator",
    "judged_pairs",
    "LabelFile",
    "new_label",
    "open_labels",
    "put_label",
    "put_labels",
    "read_label_file",
    "require_judged",
    "shown_hash",
    "to_pair_terms",
    "to_screen_terms",
    "validate_labels",
]


class LabelError(UserError):
    """A label cannot be stored (unknown pair, bad value, bad annotator name)."""


@dataclass(frozen=True)
class JudgedPair:
    """A pair joined with its successful judgment (under the judge settings in effect)."""

    pair: Pair
    judgment: Judgment

    @property
    def pair_id(self) -> str:
        return self.pair.pair_id

    @property
    def p_a(self) -> float:
        return float(self.judgment.p_a or 0.0)


def open_labels(run_dir: str | Path, read_only: bool | None = False) -> RunStore:
    """Open a run's store (its label tables are part of every store); `read_only` as `open_store` takes it."""
    return open_store(run_dir, read_only=read_only)


def judged_pairs(store: RunStore) -> dict[str, JudgedPair]:
    """pair_id -> JudgedPair for every current pair whose current judgment succeeded, in pair order."""
    fingerprints = store.fingerprints()
    if fingerprints is None:
        return {}
    return {pair.pair_id: JudgedPair(pair, judgment) for pair, judgment in stored_judged_pairs(store, fingerprints)}


def require_judged(store: RunStore) -> dict[str, JudgedPair]:
    """Judged pairs, or a clear error when the run has none yet."""
    pairs = judged_pairs(store)
    if not pairs:
        raise RunStoreError(
            f"{store.run_dir}: no judged pairs yet (pairs: {store.count('pairs')}, ok judgments: "
            f"{store.count('judgments', 'status = ?', ('ok',))}); run the judge stage first"
        )
    return pairs


def check_annotator(name: str) -> str:
    """A valid annotator name (letters, digits, space, . @ + - _; at most 64)."""
    if not ANNOTATOR_RE.match(name or ""):
        raise LabelError(f"annotator name {name!r}: use 1-64 letters, digits, spaces or . @ + - _")
    return name.strip()


def new_label(pair_id: str, annotator: str, label: str, shown_order: str) -> HumanLabel:
    """A label to store, checked for its values (one-line error)."""
    if label not in LABELS:
        raise LabelError(f"label {label!r} is not one of {', '.join(LABELS)}")
    if shown_order not in ("ab", "ba"):
        raise LabelError(f"shown order {shown_order!r} is not 'ab' or 'ba'")
    return HumanLabel(
        pair_id=pair_id,
        annotator=check_annotator(annotator),
        label=label,  # type: ignore[arg-type]
        shown_order=shown_order,
        created_at=time.time(),
    )  # type: ignore[arg-type]


def validate_labels(store: RunStore, labels: list[HumanLabel], where: list[str] | None = None) -> None:
    """Refuse the whole batch if any label names an unknown or unsampled pair; `where` names each item."""
    known = pair_ids(store)
    sampled = {s.pair_id for s in stored.sample(store)}
    for i, item in enumerate(labels):
        at = f"{where[i]}: " if where else ""
        if item.pair_id not in known:
            raise LabelError(f"{at}pair '{item.pair_id}' does not exist in {store.run_dir}")
        if item.pair_id not in sampled:
            raise LabelError(
                f"{at}pair '{item.pair_id}' is not in the spot-check sample (draw it with spotcheck first)"
            )
        check_annotator(item.annotator)


def put_labels(store: RunStore, labels: list[HumanLabel], source: str = "web") -> None:
    """Check, then store labels in one transaction; a second label by an annotator replaces the first."""
    validate_labels(store, labels)
    stored.put_labels(store, labels, source)


def put_label(store: RunStore, pair_id: str, annotator: str, label: str, shown_order: str, source: str = "web") -> None:
    """Store one label at once (see put_labels)."""
    put_labels(store, [new_label(pair_id, annotator, label, shown_order)], source)


def to_pair_terms(position_label: str, shown_order: str) -> str:
    """'first'/'second' on screen (or A/B as displayed) -> 'a'/'b' of the pair."""
    first, second = ("a", "b") if shown_order == "ab" else ("b", "a")
    return {"first": first, "second": second}.get(position_label, position_label)


def to_screen_terms(label: str, shown_order: str) -> str:
    """'a'/'b' of the pair -> 'first'/'second' as shown; tie and skip unchanged."""
    if label not in ("a", "b"):
        return label
    return "first" if (label == "a") == (shown_order == "ab") else "second"


FROM_SCREEN = {"a": "first", "b": "second", "tie": "tie", "skip": "skip"}
REQUIRED_CSV = ("pair_id", "shown_order", "annotator", "label")


class ImportFormatError(LabelError):
    """An import file is not in the format named, or its labels do not fit the run."""


def shown_responses(pair: Pair, order: str) -> tuple[str, str]:
    """A pair's responses in the order shown (`ab`: `a` first), each with the tools it calls written after its text
    as proposed actions (a response that calls none is its text, as always)."""
    a, b = with_actions(pair.a, pair.a_tool_calls), with_actions(pair.b, pair.b_tool_calls)
    return (a, b) if order == "ab" else (b, a)


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
