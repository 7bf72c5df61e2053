"""Preference datasets in, `datasets.Dataset` out: from a run directory, a parquet/JSONL file or a Hub name.

Rows follow docs/reference/formats.md (TRL conversational: `prompt`, `chosen`, `rejected` message lists, plus
`p_chosen`, `margin` and provenance). Plain-text rows (`prompt`, `chosen`, `rejected` strings, as in
human-labeled pair files) are turned into one user message and one assistant message.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Literal

from charter import tables
from charter.errors import ConfigError, DatasetError
from charter.records import Role, as_dicts
from charter.records.base import as_messages
from charter.runs.files import RunFiles

REQUIRED = ("prompt", "chosen", "rejected")
FORMAT_HINT = (
    "expected TRL preference format: prompt, chosen, rejected as lists of {role, content} messages "
    "or strings (see docs/reference/formats.md)"
)
MarginSource = Literal["off", "margin", "logit"]


def resolve_source(source: str | Path) -> tuple[str, Path | None]:
    """Where a dataset comes from: ("run", run dir), ("file", path) or ("hub", None)."""
    path = Path(source)
    if path.is_dir():
        if RunFiles.is_run_dir(path) and RunFiles(path).has_dataset("preferences"):
            return "run", path
        raise DatasetError(f"{path}: not a run directory with data/preferences.parquet or .jsonl")
    if path.suffix in (".parquet", ".jsonl", ".json"):
        if not path.exists():
            raise DatasetError(f"{path}: file not found")
        return "file", path
    if str(source).count("/") == 1 and not path.exists():
        return "hub", None
    raise DatasetError(f"{source}: not a run directory, a .parquet/.jsonl file or a Hub dataset name (owner/name)")


def require_dataset(config: Any) -> str:
    """A training config's dataset; it may only be left out inside a run config (the run fills it in)."""
    if not config.dataset:
        raise ConfigError("dataset: required (a run directory, a .parquet/.jsonl file or a Hub dataset name)")
    return str(config.dataset)


def run_dir_of(source: str | Path) -> Path | None:
    """The run directory a dataset source points into, if any."""
    path = Path(source)
    if path.is_dir() and RunFiles.is_run_dir(path):
        return path
    if path.is_file() and path.parent.name == "data" and RunFiles.is_run_dir(path.parent.parent):
        return path.parent.parent
    return None


def read_rows(source: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """All rows of a preference dataset as dicts (small enough for memory: preference sets are)."""
    kind, path = resolve_source(source)
    if kind == "hub":
        return _read_hub(str(source), split)
    assert path is not None
    return RunFiles(path).dataset_rows("preferences") if kind == "run" else tables.read_rows(path)


def _read_hub(name: str, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        return datasets.load_dataset(name, split=split).to_list()
    except Exception as exc:  # offline, unknown name, missing split: all one line for the user
        raise DatasetError(f"Hub dataset {name} (split {split}) could not be loaded: {type(exc).__name__}") from None


def message_dicts(value: Any, role: Role, where: str = "dataset") -> list[dict[str, str]]:
    """A message list (as dicts, for TRL) from a message list or a plain string."""
    return as_dicts(as_messages(value, where, role=role))


def check_columns(rows: list[dict[str, Any]], source: str | Path, extra: tuple[str, ...] = ()) -> None:
    """One-line errors for an empty dataset or missing columns."""
    if not rows:
        raise DatasetError(f"{source}: the dataset is empty (no preference rows); {FORMAT_HINT}")
    missing = [c for c in (*REQUIRED, *extra) if c not in rows[0]]
    if missing:
        raise DatasetError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; {FORMAT_HINT}"
        )


def column_number(
    row: dict[str, Any], key: str, where: str, low: float | None = None, high: float | None = None
) -> float | None:
    """The number a row's column holds (None where it has none). Text, a boolean, NaN, an infinity, or a number
    outside `low`..`high` is a DatasetError naming the row and the column: never read as a number."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DatasetError(f"{where}: {key}: expected a number, got {value!r:.40}")
    value = float(value)
    if not math.isfinite(value):
        raise DatasetError(f"{where}: {key}: {value!r} is not a finite number")
    if low is not None and value < low or high is not None and value > high:
        raise DatasetError(f"{where}: {key}: {value!r} is outside {low}..{high}")
    return value


#: The number columns of a preference row, with their ranges (None: unbounded).
NUMBER_COLUMNS: tuple[tuple[str, float | None, float | None], ...] = (
    ("p_chosen", 0.0, 1.0),
    ("p_chosen_calibrated", 0.0, 1.0),
    ("margin", None, None),
)


def judge_p(row: dict[str, Any], calibrated: bool, where: str) -> float | None:
    """The row's P(chosen) in 0..1 (its calibrated one where asked and present), or None without one."""
    p = column_number(row, "p_chosen_calibrated", where, 0.0, 1.0) if calibrated else None
    return p if p is not None else column_number(row, "p_chosen", where, 0.0, 1.0)


def margin_of(row: dict[str, Any], source: MarginSource, scale: float, calibrated: bool, where: str = "row") -> float:
    """The reward-model margin for a row from the judge's confidence (`where` names the row in errors).

    `margin`: the row's `margin` (2 p - 1, or from p_chosen when absent); `logit`: log(p / (1 - p)),
    the Bradley-Terry reward gap at which the model would agree with the judge's probability.
    """
    p = column_number(row, "p_chosen_calibrated", where, 0.0, 1.0) if calibrated else None
    if source == "margin":
        margin = column_number(row, "margin", where) if p is None else None
        if margin is not None:
            return scale * margin
    p = p if p is not None else column_number(row, "p_chosen", where, 0.0, 1.0)
    if p is None:
        raise DatasetError(f"{where}: p_chosen: missing (a margin needs it)")
    if source == "margin":
        return scale * (2 * p - 1)
    q = min(max(p, 1e-4), 1 - 1e-4)
    return scale * math.log(q / (1 - q))


def margin_columns(source: MarginSource) -> tuple[str, ...]:
    """The column a margin source needs (a `margin` column can stand in for p_chosen in `margin` mode)."""
    return () if source in ("off", "margin") else ("p_chosen",)


def to_training_rows(
    rows: list[dict[str, Any]],
    source: str | Path,
    margin: MarginSource = "off",
    margin_scale: float = 1.0,
    calibrated: bool = False,
) -> list[dict[str, Any]]:
    """Rows reduced to what TRL needs: prompt/chosen/rejected messages and, if asked, a margin."""
    check_columns(rows, source, margin_columns(margin))
    if margin == "margin" and "margin" not in rows[0] and "p_chosen" not in rows[0]:
        raise DatasetError(f"{source}: margin: margin needs a margin or p_chosen column; {FORMAT_HINT}")
    out = []
    for index, row in enumerate(rows):
        where = f"{source}: row {index + 1}"
        for key, low, high in NUMBER_COLUMNS:  # each checked, whether or not this training reads it
            column_number(row, key, where, low, high)
        item: dict[str, Any] = {
            "prompt": message_dicts(row["prompt"], "user", f"{where}: prompt"),
            "chosen": message_dicts(row["chosen"], "assistant", f"{where}: chosen"),
            "rejected": message_dicts(row["rejected"], "assistant", f"{where}: rejected"),
        }
        if margin != "off":
            item["margin"] = margin_of(row, margin, margin_scale, calibrated, where)
        out.append(item)
    return out


def split_rows(rows: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded held-out split; at least one held-out row when the fraction is positive and rows allow."""
    import random

    if fraction <= 0 or len(rows) < 2:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(rows) * fraction))
    held_set = set(order[:held])
    return [r for i, r in enumerate(rows) if i not in held_set], [rows[i] for i in sorted(held_set)]


def mean_p_chosen(rows: list[dict[str, Any]], calibrated: bool = False, source: str | Path = "") -> float | None:
    """Mean judge confidence in the chosen response, or None without a p_chosen column (a value that is not a number
    in 0..1 is a DatasetError naming the row of `source`)."""
    values = [judge_p(row, calibrated, f"{source}: row {i + 1}") for i, row in enumerate(rows)]
    known = [p for p in values if p is not None]
    return sum(known) / len(known) if known else None
