"""`charter.mix`: combine charter's synthetic preferences with human-labeled ones at a chosen synthetic share.

Mixing in human data is the common mitigation against model collapse. Every output row says where it came
from: `synthetic` (true for charter rows, false for human rows) and `label_source`; charter's provenance
columns are kept (empty on human rows).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, cast

import numpy as np

from charter.api_args import Kinds, Range, public
from charter.errors import DatasetError
from charter.hub.load import TRL_COLUMNS, import_datasets
from charter.records import PreferenceRow, Role, as_dicts
from charter.records.base import as_messages
from charter.tables import read_rows

if TYPE_CHECKING:
    import datasets

Source = Any  # datasets.Dataset | datasets.DatasetDict | path | list[dict]
SOURCES = ("Dataset", "DatasetDict", str, Path, list, tuple)
SOURCE_KINDS = "a Dataset, a DatasetDict, a list of rows, a file, a folder or a Hub dataset id"


class MixedRow(TypedDict):
    """One row of a mixed dataset: TRL's conversational columns and where the label came from. Besides these keys
    a row holds every other column of charter's dataset (its provenance; None on human rows)."""

    prompt: list[dict[str, str]]
    """The conversation before the response, as `{role, content}` messages."""
    chosen: list[dict[str, str]]
    """The preferred response, as one assistant message."""
    rejected: list[dict[str, str]]
    """The other response, as one assistant message."""
    synthetic: bool
    """True for charter's (AI-labeled) rows, false for human-labeled ones."""
    label_source: str
    """Who labeled the pair: the row's own `label_source`, else `human` for human rows and `ai-judge:JUDGE_MODEL`
    for charter's."""


def rows_of(source: Source, split: str, name: str) -> list[dict]:
    """Rows from a Dataset, a DatasetDict (its `split`), a list of dicts, or a .jsonl/.parquet file or folder."""
    datasets = import_datasets()
    if isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise DatasetError(f"{name}: no split {split!r} (has {', '.join(source)})")
        source = source[split]
    if isinstance(source, datasets.Dataset):
        return source.to_list()
    if isinstance(source, (str, Path)):
        return _rows_from_path(Path(source), split, name)
    if isinstance(source, Iterable):
        return [dict(row) for row in source]
    raise DatasetError(f"{name}: expected a Dataset, DatasetDict, list of rows or a file, got {type(source).__name__}")


def _rows_from_path(path: Path, split: str, name: str) -> list[dict]:
    if path.suffix in (".jsonl", ".parquet"):
        return read_rows(path)
    if path.is_dir() or str(path).count("/") == 1:
        from charter.hub.load import load_preferences

        return rows_of(load_preferences(path), split, name)
    raise DatasetError(f"{path}: expected a .jsonl or .parquet file, a folder or a Hub dataset id")


def message_dicts(value: Any, role: Role, where: str) -> list[dict]:
    return as_dicts(as_messages(value, where, role=role))


def human_row(row: dict, columns: list[str], index: int) -> MixedRow:
    """A human-labeled row in charter's columns: conversational format, synthetic=false, label_source kept.

    Args:
        row: A human-labeled row with `prompt`, `chosen` and `rejected` (text or messages).
        columns: The columns of the mixed dataset; those the row does not fill are None.
        index: The row's position in the human dataset, for error messages and a missing `pair_id`.

    Returns:
        The row in charter's columns; its `pair_id` (where that is a column) is the row's `pair_id` or `id`, else
        `human-INDEX`.

    Raises:
        DatasetError: The row lacks `prompt`, `chosen` or `rejected`, or one of them is empty or malformed.
    """
    missing = [c for c in TRL_COLUMNS if c not in row]
    if missing:
        raise DatasetError(f"human dataset row {index}: missing column(s) {', '.join(missing)}")
    out: dict[str, Any] = {column: None for column in columns}
    out.update(
        prompt=message_dicts(row["prompt"], "user", f"human dataset row {index}: prompt"),
        chosen=message_dicts(row["chosen"], "assistant", f"human dataset row {index}: chosen"),
        rejected=message_dicts(row["rejected"], "assistant", f"human dataset row {index}: rejected"),
        synthetic=False,
        label_source=str(row.get("label_source") or "human"),
    )
    if "pair_id" in out:
        out["pair_id"] = str(row.get("pair_id") or row.get("id") or f"human-{index}")
    return cast(MixedRow, out)


def charter_row(row: dict) -> MixedRow:
    """A row of charter's dataset with its label's origin: `synthetic` (true unless the row says otherwise) and
    `label_source` (the row's own, else `ai-judge:JUDGE_MODEL`).

    Args:
        row: A row of charter's preference dataset; every column is kept.

    Returns:
        A copy of the row with `synthetic` and `label_source` set. `prompt`, `chosen` and `rejected` are the row's
        own (`mix` refuses a dataset without them).
    """
    out = dict(row)
    out["synthetic"] = True if row.get("synthetic") is None else bool(row["synthetic"])
    out["label_source"] = row.get("label_source") or f"ai-judge:{row.get('judge_model') or 'unknown'}"
    return cast(MixedRow, out)


def mix_counts(n_synthetic: int, n_human: int, ratio: float, size: int | None) -> tuple[int, int]:
    """How many synthetic and human rows give the synthetic share `ratio` (as many as possible without `size`)."""
    if not 0.0 <= ratio <= 1.0:
        raise DatasetError(f"ratio {ratio}: the synthetic share must be between 0 and 1")
    if size is None:
        limits = [n_synthetic / ratio if ratio > 0 else math.inf, n_human / (1 - ratio) if ratio < 1 else math.inf]
        size = int(math.floor(min(limits) + 1e-9))
    k_synthetic = int(round(size * ratio))
    k_human = size - k_synthetic
    if k_synthetic > n_synthetic or k_human > n_human:
        raise DatasetError(
            f"cannot mix {size} rows at ratio {ratio}: needs {k_synthetic} synthetic (have {n_synthetic})"
            f" and {k_human} human (have {n_human})"
        )
    if size == 0:
        raise DatasetError("nothing to mix: one of the datasets is empty")
    return k_synthetic, k_human


@public
def mix(
    charter_dataset: Annotated[Source, Kinds(*SOURCES, said=SOURCE_KINDS)],
    human_dataset: Annotated[Source, Kinds(*SOURCES, said=SOURCE_KINDS)],
    ratio: Annotated[float, Range(ge=0, le=1)] = 0.5,
    seed: int = 0,
    size: Annotated[int | None, Range(ge=1)] = None,
    split: str = "train",
) -> datasets.Dataset:
    """Combine charter rows with human-labeled rows so that a share `ratio` of the result is synthetic.

    Without `size`, as many rows as the smaller side allows. Rows are drawn without replacement and shuffled
    with `seed`. Human rows may hold plain strings (`prompt`, `chosen`, `rejected`); they become TRL's
    conversational format. Every row says where it came from: `synthetic` and `label_source`.

    Args:
        charter_dataset: charter's preferences: a `datasets.Dataset` or `DatasetDict`, a list of rows, a
            .jsonl/.parquet file, or an export folder, run directory or Hub dataset id (as `load_preferences` takes).
        human_dataset: Human-labeled pairs, in any of the same forms.
        ratio: The synthetic share of the result, from 0 to 1.
        seed: Seed of the draw and the shuffle.
        size: Rows in the result; None for as many as the two datasets allow at `ratio`.
        split: The split to take from a `DatasetDict` (or from what `load_preferences` returns).

    Returns:
        The mixed rows (`MixedRow`), with charter's columns plus `synthetic` and `label_source`.

    Raises:
        DatasetError: A source is of no known kind, lacks `split` or the prompt/chosen/rejected columns, or has a
            malformed row; `ratio` is outside 0..1; the datasets hold too few rows for `size` at `ratio`, or one is
            empty.
        HubError: A Hub dataset id cannot be downloaded.
        RunStoreError: A run directory given as a source has no readable run store.
        MissingExtra: The `datasets` package (the `hub` extra) is not installed.
    """
    datasets = import_datasets()
    synthetic = [charter_row(r) for r in rows_of(charter_dataset, split, "charter dataset")]
    if synthetic and any(c not in synthetic[0] for c in TRL_COLUMNS):
        raise DatasetError(f"charter dataset: needs columns {', '.join(TRL_COLUMNS)}")
    columns = list(synthetic[0]) if synthetic else [*TRL_COLUMNS, "synthetic", "label_source"]
    human = [human_row(r, columns, i) for i, r in enumerate(rows_of(human_dataset, split, "human dataset"))]
    k_synthetic, k_human = mix_counts(len(synthetic), len(human), ratio, size)
    rng = np.random.default_rng(seed)
    rows = [synthetic[i] for i in rng.choice(len(synthetic), k_synthetic, replace=False)]
    rows += [human[i] for i in rng.choice(len(human), k_human, replace=False)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    from datasets.table import InMemoryTable

    from charter.hub.export import loose_table

    return datasets.Dataset(InMemoryTable(loose_table(rows, PreferenceRow)))
