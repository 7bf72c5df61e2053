"""The folder that is uploaded, written and read back. Built: parquet per configuration and split in the layout the
Hub's dataset viewer reads (data/<config>/<split>-00000-of-00001.parquet, listed under `configs:` in the card), the
constitution, the run config with secrets stripped, the dataset card, and croissant.json (the same for machines).

Rows are published exactly as the run wrote them: they carry their provenance already, and a row that
does not is an error when it is read (charter.runs.files), never repaired here.

Read back (`charter.load_preferences`): a published dataset (Hub repo id, export folder or run directory) back as the
splits TRL trains on, conversational columns and provenance kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NotRequired, TypedDict

import numpy as np
import yaml

from charter.agreement.gate import Gates
from charter.api_args import Range, public
from charter.errors import DatasetError, HubError, missing_extra
from charter.hub.card import RunData, build_card
from charter.hub.croissant import DataFile, Published, croissant_document, write_croissant
from charter.records import LabelRow, PreferenceRow, SFTRow
from charter.records.base import parquet_row, uses_tools
from charter.redaction import redact, strip_secrets
from charter.runs.files import RunFiles
from charter.tables import arrow_schema

if TYPE_CHECKING:
    import datasets

ROW_TYPES = {"preferences": PreferenceRow, "sft": SFTRow, "human_labels": LabelRow}


@dataclass
class ExportSummary:
    """What was written where."""

    folder: Path
    files: list[str]
    splits: dict[str, dict[str, int]]


def data_path(config: str, split: str) -> str:
    return f"data/{config}/{split}-00000-of-00001.parquet"


def to_table(rows: list[dict], kind: Any) -> Any:
    """An arrow table of a record type's rows, typed even where a column is all null."""
    import pyarrow as pa

    columns = kind.columns() if hasattr(kind, "columns") else list(kind.model_fields)
    wide = any(uses_tools(row) for row in rows)  # conversations with tool calls keep them
    rows = [parquet_row(row) for row in rows] if wide else rows
    return pa.Table.from_pylist(rows, schema=arrow_schema(kind, columns, getattr(kind, "JSON_COLUMNS", ()), wide))


def loose_table(rows: list[dict], kind: Any) -> Any:
    """An arrow table of rows that may hold more or fewer columns than `kind` (mixed data): columns that are
    all null take their type from `kind` where it has them."""
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    known = {
        f.name: f.type
        for f in arrow_schema(
            kind, [c for c in table.column_names if c in kind.model_fields], getattr(kind, "JSON_COLUMNS", ())
        )
    }
    for index, name in enumerate(table.column_names):
        if pa.types.is_null(table.schema.field(name).type) and name in known:
            table = table.set_column(index, name, table.column(name).cast(known[name]))
    return table


def write_parquet(rows: list[dict], kind: Any, path: Path) -> None:
    """Write rows through `datasets`, so the file carries the features the Hub viewer and `load_dataset` read."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    write_dataset(Dataset(InMemoryTable(to_table(rows, kind))), path)


def write_dataset(dataset: Any, path: Path) -> None:
    """Write a `datasets.Dataset` as one parquet file, without a progress bar."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    path.parent.mkdir(parents=True, exist_ok=True)
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        dataset.to_parquet(str(path))
    finally:
        if not was_disabled:
            enable_progress_bars()


def split_by_prompt(rows: list[PreferenceRow], test_size: float, seed: int) -> dict[str, list[PreferenceRow]]:
    """Seeded train/test split that keeps all rows of a prompt together. Tiny sets (one prompt) get no test split."""
    key = lambda row: row.prompt_id or row.pair_id  # noqa: E731
    prompt_ids = sorted({key(row) for row in rows})
    n_test = math.ceil(len(prompt_ids) * test_size) if len(prompt_ids) > 1 and test_size > 0 else 0
    n_test = min(n_test, len(prompt_ids) - 1)
    order = np.random.default_rng(seed).permutation(len(prompt_ids))
    test_ids = {prompt_ids[i] for i in order[:n_test]}
    splits: dict[str, list[PreferenceRow]] = {"train": [], "test": []}
    for row in rows:
        splits["test" if key(row) in test_ids else "train"].append(row)
    return {name: part for name, part in splits.items() if part}


def configurations(run: RunData, test_size: float, seed: int) -> dict[str, dict[str, list[Any]]]:
    """config -> split -> records."""
    configs: dict[str, dict[str, list[Any]]] = {"preferences": split_by_prompt(run.preferences, test_size, seed)}
    if run.sft:
        configs["sft"] = {"train": run.sft}
    if run.human_labels:
        configs["human_labels"] = {"train": run.human_labels}
    return configs


class DataFiles(TypedDict):
    split: str
    path: str


class CardConfig(TypedDict):
    """One entry of a dataset card's `configs:` metadata (the Hub's format)."""

    config_name: str
    data_files: list[DataFiles]
    default: NotRequired[bool]


def card_configs(splits: dict[str, dict[str, int]]) -> list[CardConfig]:
    """The `configs:` metadata that tells the Hub (and `load_dataset`) which files make which split."""
    configs = []
    for config, parts in splits.items():
        entry = CardConfig(
            config_name=config, data_files=[DataFiles(split=split, path=data_path(config, split)) for split in parts]
        )
        if config == "preferences":
            entry["default"] = True
        configs.append(entry)
    return configs


def _row(record: Any) -> dict[str, Any]:
    return record.to_row() if hasattr(record, "to_row") else record.model_dump(mode="json")


def build_folder(
    run: RunData,
    folder: str | Path,
    repo_id: str,
    gates: Gates,
    *,
    test_size: float = 0.1,
    seed: int = 0,
    license: str = "other",
) -> ExportSummary:
    """Write the upload folder for a run into `folder` (which should be empty)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    splits: dict[str, dict[str, int]] = {}
    written: list[DataFile] = []
    published: list[PreferenceRow] = []
    for config, parts in configurations(run, test_size, seed).items():
        splits[config] = {}
        for split, records in parts.items():
            path = data_path(config, split)
            write_parquet([_row(r) for r in records], ROW_TYPES[config], folder / path)
            files.append(path)
            written.append(DataFile(config, split, path, ROW_TYPES[config], records))
            splits[config][split] = len(records)
            if config == "preferences":
                published += records
    if run.constitution_yaml is not None:
        (folder / "constitution.yaml").write_text(run.constitution_yaml, encoding="utf-8")
        files.append("constitution.yaml")
    config_text = yaml.safe_dump(strip_secrets(run.run_config), sort_keys=False, allow_unicode=True)
    (folder / "run_config.yaml").write_text(config_text, encoding="utf-8")
    files.append("run_config.yaml")
    card = build_card(run, published, repo_id, card_configs(splits), splits, gates, license)
    card.save(folder / "README.md")
    files.append("README.md")
    named = [("agreement", gates.agreement), ("judge-audit", gates.audit), ("constitution-test", gates.constitution)]
    contents = Published(folder, sorted(files), written, published)
    data = card.data.to_dict()
    document = croissant_document(run, contents, repo_id, data["pretty_name"], data["tags"], license, named)
    files.append(write_croissant(contents, document))
    return ExportSummary(folder=folder, files=sorted(files), splits=splits)


TRL_COLUMNS = ("prompt", "chosen", "rejected")


def import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise missing_extra("datasets", "hub") from None
    return datasets


def _from_run_dir(run_dir: Path, test_size: float, seed: int) -> Any:
    """The splits `charter push` would publish, straight from a run directory."""
    from charter.hub.card import read_run
    from charter.records import PreferenceRow

    datasets = import_datasets()
    from datasets.table import InMemoryTable

    run = read_run(run_dir)
    splits = split_by_prompt(run.preferences, test_size, seed)
    return datasets.DatasetDict(
        {
            name: datasets.Dataset(InMemoryTable(to_table([r.to_row() for r in part], PreferenceRow)))
            for name, part in splits.items()
        }
    )


def _download(repo_id: str, revision: str | None, token: str | None) -> Path:
    """The card and the preference files of a Hub dataset repo, through the huggingface_hub cache."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise missing_extra("huggingface_hub", "hub") from None
    try:
        path = snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            token=token,
            allow_patterns=["README.md", "data/preferences/*"],
        )
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"cannot download {repo_id}: {first_line}"
        raise HubError(redact(message, [token])) from None
    return Path(path)


@public
def load_preferences(
    source: str | Path,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    test_size: Annotated[float, Range(ge=0, lt=1)] = 0.1,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Load the `preferences` configuration of a published dataset as the splits TRL trains on.

    Rows keep TRL's conversational `prompt`/`chosen`/`rejected` columns and every provenance column.

    Args:
        source: A Hub dataset id (`org/name`), a folder written by `charter push --dry-run`, or a run directory
            (split as `charter push` would split it).
        revision: The Hub revision (branch, tag or commit) to download; None takes `main`.
        token: The Hugging Face token for a private repository; None uses HF_TOKEN or the huggingface_hub login.
        cache_dir: The `datasets` cache folder; None uses its default.
        test_size: For a run directory: share of the prompts whose rows go to the `test` split.
        seed: For a run directory: seed of the split.

    Returns:
        The `train` split, and `test` when there is one.

    Raises:
        DatasetError: `source` is neither a folder nor a Hub dataset id, the folder holds no dataset written by
            `charter push`, or the preferences lack a TRL column; a run directory has no preference rows.
        HubError: The Hub dataset cannot be downloaded.
        RunStoreError: A run directory's store cannot be read.
        ConfigError: A run directory's `agreement:` or `judge.audit` config section is not valid.
        MissingExtra: `datasets` or huggingface_hub (the `hub` extra) is not installed.
    """
    path = Path(source)
    if path.is_dir() and RunFiles.is_run_dir(path):
        return _from_run_dir(path, test_size, seed)
    if not path.is_dir():
        if str(source).count("/") != 1 or path.exists():
            raise DatasetError(f"{source}: neither a folder nor a Hub dataset id (org/name)")
        path = _download(str(source), revision, token)
    if not (path / "README.md").exists():
        raise DatasetError(f"{path}: no README.md with `configs:`; not a dataset written by charter push")
    data = import_datasets().load_dataset(str(path), "preferences", cache_dir=str(cache_dir) if cache_dir else None)
    missing = [c for c in TRL_COLUMNS if c not in data[next(iter(data))].column_names]
    if missing:
        raise DatasetError(f"{source}: the preferences lack column(s) {', '.join(missing)}")
    return data
