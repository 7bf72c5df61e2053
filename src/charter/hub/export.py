"""Build the folder that is uploaded: parquet per configuration and split in the layout the Hub's dataset
viewer reads (data/<config>/<split>-00000-of-00001.parquet, listed under `configs:` in the card), the
constitution, the run config with secrets stripped, and the dataset card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import yaml

from charter.hub.card import build_card
from charter.hub.gate import GateOutcome
from charter.hub.provenance import ensure_provenance, split_by_prompt
from charter.hub.rundata import RunData
from charter.hub.secrets import strip_secrets

#: Types for columns that may be entirely null in a small run (so the parquet schema stays meaningful).
NULLABLE_TYPES = {
    "p_chosen_calibrated": pa.float64(), "position_consistent": pa.bool_(), "p_chosen": pa.float64(),
    "margin": pa.float64(), "created_at": pa.string(), "shown_order": pa.string(), "label": pa.string(),
    "constitution_name": pa.string(), "constitution_hash": pa.string(), "policy_model": pa.string(),
    "critic_model": pa.string(), "judge_model": pa.string(), "judge_mode": pa.string(), "run_id": pa.string(),
}


@dataclass
class ExportSummary:
    """What was written where."""

    folder: Path
    files: list[str]
    splits: dict[str, dict[str, int]]


def data_path(config: str, split: str) -> str:
    return f"data/{config}/{split}-00000-of-00001.parquet"


def to_table(rows: list[dict]) -> pa.Table:
    """An arrow table of the rows, with all-null columns given their real type."""
    table = pa.Table.from_pylist(rows)
    for index, name in enumerate(table.column_names):
        if pa.types.is_null(table.schema.field(name).type) and name in NULLABLE_TYPES:
            table = table.set_column(index, name, table.column(name).cast(NULLABLE_TYPES[name]))
    return table


def write_parquet(rows: list[dict], path: Path) -> None:
    """Write rows through `datasets`, so the file carries the features the Hub viewer and `load_dataset` read."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    path.parent.mkdir(parents=True, exist_ok=True)
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        Dataset(InMemoryTable(to_table(rows))).to_parquet(str(path))
    finally:
        if not was_disabled:
            enable_progress_bars()


def configurations(run: RunData, test_size: float, seed: int) -> dict[str, dict[str, list[dict]]]:
    """config -> split -> rows, with provenance ensured on every charter row."""
    preferences = ensure_provenance(run.preferences, run.meta, run.run_id, "preferences")
    configs = {"preferences": split_by_prompt(preferences, test_size, seed)}
    if run.sft:
        configs["sft"] = {"train": ensure_provenance(run.sft, run.meta, run.run_id, "sft")}
    if run.human_labels:
        labels = [dict(label, run_id=run.run_id, synthetic=False) for label in run.human_labels]
        configs["human_labels"] = {"train": labels}
    return configs


def card_configs(splits: dict[str, dict[str, int]]) -> list[dict]:
    """The `configs:` metadata that tells the Hub (and `load_dataset`) which files make which split."""
    return [
        {
            "config_name": config,
            "data_files": [{"split": split, "path": data_path(config, split)} for split in parts],
            **({"default": True} if config == "preferences" else {}),
        }
        for config, parts in splits.items()
    ]


def build_folder(run: RunData, folder: str | Path, repo_id: str, gate: GateOutcome, *,
                 test_size: float = 0.1, seed: int = 0, license: str = "other") -> ExportSummary:
    """Write the upload folder for a run into `folder` (which should be empty)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    splits: dict[str, dict[str, int]] = {}
    for config, parts in configurations(run, test_size, seed).items():
        splits[config] = {}
        for split, rows in parts.items():
            write_parquet(rows, folder / data_path(config, split))
            files.append(data_path(config, split))
            splits[config][split] = len(rows)
    if run.constitution_yaml is not None:
        (folder / "constitution.yaml").write_text(run.constitution_yaml, encoding="utf-8")
        files.append("constitution.yaml")
    config_text = yaml.safe_dump(strip_secrets(run.config), sort_keys=False, allow_unicode=True)
    (folder / "run_config.yaml").write_text(config_text, encoding="utf-8")
    files.append("run_config.yaml")
    card = build_card(run, repo_id, card_configs(splits), splits, gate, license=license)
    card.save(folder / "README.md")
    files.append("README.md")
    return ExportSummary(folder=folder, files=sorted(files), splits=splits)
