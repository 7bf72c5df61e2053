"""The score table a mixture is planned from: one score per source and target subtask (higher is better).

Read from files or from Python values:

- long form (CSV with a header, JSON Lines, or a JSON list of objects): one row per source and target with
  `source`, `target`, `score` and optionally `n` (the items the score rests on). A row without a score is an
  error: leave the row out for a source that was not scored on a target;
- wide form (CSV whose first column is `source`, or a JSON object `{source: {target: score}}`): one row per
  source, one column per target; an empty cell (or a JSON null) is "no score";
- `charter eval rm` summaries (JSON with `subsets`), one per source: each subset is a target, its accuracy the
  score and its n the n; a subset whose every comparison failed has no score (a recorded failure, never 0).
  The source is the file's stem, or NAME in `NAME=PATH`.

Every problem is one `DatasetError` naming the file and line (or key): a missing or non-numeric score, a
duplicate (source, target), an empty name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from charter.errors import DatasetError
from charter.tables import iter_csv, iter_jsonl, read_text_file

LONG_COLUMNS = ("source", "target", "score")
SCORE_SUFFIXES = (".csv", ".json", ".jsonl")


@dataclass(frozen=True)
class Score:
    """One source's score on one target, and where it was read."""

    value: float
    n: int | None
    where: str


@dataclass
class ScoreTable:
    """Scores by (source, target); sources and targets in order of first appearance."""

    scores: dict[tuple[str, str], Score] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    """(source, target) -> why it has no score although it was evaluated (every comparison failed)."""
    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    """(path, sha256) of each file read."""

    def name(self, source: str, target: str) -> None:
        if source not in self.sources:
            self.sources.append(source)
        if target not in self.targets:
            self.targets.append(target)

    def add(self, source: str, target: str, score: Score) -> None:
        """Add a score; a second one for the same (source, target) is an error naming both places."""
        first = self.scores.get((source, target))
        if first is not None:
            raise DatasetError(
                f"{score.where}: a second score for source {source!r}, target {target!r} ({first.where})"
            )
        self.name(source, target)
        self.scores[(source, target)] = score

    def get(self, source: str, target: str) -> Score | None:
        return self.scores.get((source, target))


def _name(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise DatasetError(f"{where}: {key}: missing (a non-empty name)")
    return str(value).strip()


def _number(value: Any, where: str, key: str, text: bool = False) -> float:
    """A finite number; a text cell is parsed where the file is text (`text`: CSV), and is an error elsewhere (JSON,
    Python values): `"0.9"` is not a number there. Anything else is an error naming where."""
    if isinstance(value, str) and not text:
        raise DatasetError(f"{where}: {key}: a number, not the text {value!r} (write it without quotes)")
    if isinstance(value, str):
        cell = value.strip()
        try:
            value = float(cell)
        except ValueError:
            raise DatasetError(f"{where}: {key}: not a number ({cell!r})") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetError(f"{where}: {key}: not a number ({value!r})")
    if not math.isfinite(value):
        raise DatasetError(f"{where}: {key}: not a finite number ({value!r})")
    return float(value)


def _count(value: Any, where: str, text: bool = False) -> int | None:
    if value is None or value == "" and text:
        return None
    number = _number(value, where, "n", text)
    if number < 0 or number != int(number):
        raise DatasetError(f"{where}: n: not a count ({value!r})")
    return int(number)


def add_long_row(table: ScoreTable, row: Mapping[str, Any], where: str, text: bool = False) -> None:
    """One long-form row: source, target, score (required) and n (optional); `text`: its cells are text (CSV)."""
    source, target = _name(row.get("source"), where, "source"), _name(row.get("target"), where, "target")
    if row.get("score") is None or row.get("score") == "":
        raise DatasetError(
            f"{where}: score: missing (a source not scored on a target is left out of the table, not given an "
            "empty score)"
        )
    score = _number(row["score"], where, "score", text)
    table.add(source, target, Score(score, _count(row.get("n"), where, text), where))


def add_wide_row(
    table: ScoreTable,
    source: Any,
    cells: Mapping[str, Any],
    where: str,
    place: Callable[[str], str],
    text: bool = False,
) -> None:
    """One source's row of a wide table: an empty cell or null is no score. `place` names a target's cell; `text`:
    the cells are text (CSV)."""
    source = _name(source, where, "source")
    for target, value in cells.items():
        target = _name(target, where, "target")
        table.name(source, target)
        if value is not None and not (text and value == ""):
            cell = place(target)
            table.add(source, target, Score(_number(value, cell, "score", text), None, cell))


def _read_csv(table: ScoreTable, path: Path) -> None:
    header: list[str] | None = None
    for line, row in iter_csv(path):
        where = f"{path}:{line}"
        if header is None:
            header = list(row)
            if not (set(LONG_COLUMNS) <= set(header) or header[:1] == ["source"]):
                raise DatasetError(
                    f"{path}:1: expected columns source, target, score[, n] (long form) or source and one column "
                    f"per target (wide form); found {', '.join(header)}"
                )
        if set(LONG_COLUMNS) <= set(header):
            add_long_row(table, row, where, text=True)
        else:
            cells = {k: v for k, v in row.items() if k != "source"}
            place = lambda target, where=where: f"{where}: {target}"  # noqa: E731
            add_wide_row(table, row["source"], cells, where, place, text=True)
    if header is None:
        raise DatasetError(f"{path}: no rows")


def _read_eval(table: ScoreTable, data: dict, path: Path, source: str) -> None:
    subsets = data.get("subsets")
    if not isinstance(subsets, dict) or not subsets:
        raise DatasetError(f"{path}: subsets: expected the per-subset accuracies of `charter eval rm`")
    for target, acc in subsets.items():
        where = f"{path}: subsets.{target}"
        if not isinstance(acc, dict):
            raise DatasetError(f"{where}: expected an object with accuracy and n")
        table.name(source, str(target))
        if acc.get("accuracy") is None:
            failed = acc.get("failures")
            table.failed[(source, str(target))] = (
                f"every comparison failed ({failed} failed)" if failed else "no pair scored"
            )
            continue
        table.add(
            source, str(target), Score(_number(acc["accuracy"], where, "accuracy"), _count(acc.get("n"), where), where)
        )


def _read_json(table: ScoreTable, path: Path, source: str | None) -> None:
    try:
        data = orjson.loads(read_text_file(path, DatasetError, "JSON file"))
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON: {exc}") from None
    if isinstance(data, dict) and "subsets" in data:
        return _read_eval(table, data, path, source or path.stem)
    if source is not None:
        raise DatasetError(f"{source}={path}: NAME= is for a `charter eval rm` summary (this file has no subsets)")
    if isinstance(data, list):
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise DatasetError(f"{path}: [{i}]: expected an object with source, target and score")
            add_long_row(table, row, f"{path}: [{i}]")
        return None
    if isinstance(data, dict):
        for name, cells in data.items():
            if not isinstance(cells, dict):
                raise DatasetError(f"{path}: {name}: expected an object of target -> score")
            add_wide_row(table, name, cells, f"{path}: {name}", lambda target, name=name: f"{path}: {name}.{target}")
        return None
    raise DatasetError(f"{path}: expected a list of rows, an object of source -> target -> score, or an eval summary")


def split_named(spec: str) -> tuple[str | None, Path]:
    """`NAME=PATH` -> (NAME, PATH); a plain path (or one that exists with `=` in it) -> (None, PATH)."""
    name, sep, rest = spec.partition("=")
    if sep and name and rest and not Path(spec).exists() and "/" not in name:
        return name, Path(rest)
    return None, Path(spec)


def read_file(table: ScoreTable, spec: str | Path) -> None:
    """Add the scores of one file (`NAME=PATH` names the source of an eval summary)."""
    from charter.hub.croissant import sha256

    name, path = split_named(spec) if isinstance(spec, str) else (None, Path(spec))
    if path.suffix not in SCORE_SUFFIXES:
        raise DatasetError(f"{path}: expected a .csv, .json or .jsonl score table")
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    if name is not None and path.suffix != ".json":
        raise DatasetError(f"{spec}: NAME= is for a `charter eval rm` summary (a .json file)")
    if path.suffix == ".csv":
        _read_csv(table, path)
    elif path.suffix == ".jsonl":
        for line, row in iter_jsonl(path):
            add_long_row(table, row, f"{path}:{line}")
    else:
        _read_json(table, path, name)
    table.files.append((str(path), sha256(path)))


def read_scores(scores: Any) -> ScoreTable:
    """The score table from a file, a list of files, a `{source: {target: score}}` mapping or a list of long rows.

    Raises:
        DatasetError: A file cannot be read or holds a bad row (named by file and line or key); the table is empty.
    """
    table = ScoreTable()
    if isinstance(scores, str | Path):
        read_file(table, scores)
    elif isinstance(scores, Mapping):
        for name, cells in scores.items():
            if not isinstance(cells, Mapping):
                raise DatasetError(f"scores[{name!r}]: expected a mapping of target -> score")
            add_wide_row(
                table, name, cells, f"scores[{name!r}]", lambda target, name=name: f"scores[{name!r}][{target!r}]"
            )
    elif isinstance(scores, Sequence):
        for i, item in enumerate(scores):
            if isinstance(item, str | Path):
                read_file(table, item)
            elif isinstance(item, Mapping):
                add_long_row(table, item, f"scores[{i}]")
            else:
                raise DatasetError(f"scores[{i}]: expected a file or a row with source, target and score")
    if not table.scores:
        raise DatasetError("the score table holds no score")
    return table
