"""Read what a run directory holds for publishing: rows, store meta, usage, human labels and judge statistics."""

from __future__ import annotations

from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from charter.errors import DatasetError, RunStoreError
from charter.jsonl import read_jsonl as _read_jsonl
from charter.pipeline.store import open_store

HUMAN_LABEL_COLUMNS = ("pair_id", "annotator", "label", "shown_order", "created_at")


@dataclass
class RunData:
    """Everything about one run that the export folder and the card are built from."""

    run_dir: Path
    meta: dict[str, Any]
    preferences: list[dict]
    sft: list[dict]
    human_labels: list[dict]
    usage: list[dict]
    judge_stats: dict[str, Any] = field(default_factory=dict)
    constitution_yaml: str | None = None
    config_data: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.run_dir.name)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved run config: store meta first, config.yaml as a fallback."""
        return self.meta.get("config") or self.config_data or {}


def read_rows(data_dir: Path, name: str) -> list[dict]:
    """Rows of data/NAME.parquet (preferred) or data/NAME.jsonl; [] when neither exists."""
    parquet, jsonl = data_dir / f"{name}.parquet", data_dir / f"{name}.jsonl"
    if parquet.exists():
        return pq.read_table(parquet).to_pylist()
    if jsonl.exists():
        return read_jsonl(jsonl)
    return []


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per line; a bad line is a one-line error naming file and line."""
    return _read_jsonl(path, DatasetError)


def _table_exists(store: Any, table: str) -> bool:
    return bool(store.execute("SELECT name FROM sqlite_master WHERE type='table' AND name = ?", (table,)))


def read_human_labels(store: Any) -> list[dict]:
    """Rows of the agreement helper's `human_labels` table, joined with the pair they label."""
    if not _table_exists(store, "human_labels"):
        return []
    rows = store.execute(
        f"SELECT {', '.join(HUMAN_LABEL_COLUMNS)} FROM human_labels WHERE label IS NOT 'skip' ORDER BY rowid"
    )
    pairs = {p["pair_id"]: p for p in store.records("pairs")}
    labels = []
    for values in rows:
        label = dict(zip(HUMAN_LABEL_COLUMNS, values))
        pair = pairs.get(label["pair_id"], {})
        label["created_at"] = _iso(label["created_at"])
        label["shown_order"] = None if label["shown_order"] is None else str(label["shown_order"])
        label["prompt"] = pair.get("prompt")
        label["response_a"] = pair.get("a")
        label["response_b"] = pair.get("b")
        labels.append(label)
    return labels


def _iso(value: Any) -> str | None:
    """Label times are stored as epoch seconds; publish them as ISO 8601 UTC."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).isoformat().replace("+00:00", "Z")
    return None if value is None else str(value)


def _is_longer(first: str, second: str) -> bool | None:
    if len(first) == len(second):
        return None
    return len(first) > len(second)


def judge_statistics(store: Any, preferences: list[dict]) -> dict[str, Any]:
    """Position-inconsistency and length-win rates, over all judged pairs and over the published rows."""
    pairs = {p["pair_id"]: p for p in store.records("pairs")}
    judged = [j for j in store.records("judgments") if j.get("status") == "ok"]
    both = [j for j in judged if j.get("position_consistent") is not None]
    longer_wins = []
    for judgment in judged:
        pair = pairs.get(judgment.get("pair_id"))
        if pair is None or judgment.get("p_a") is None or judgment["p_a"] == 0.5:
            continue
        a_longer = _is_longer(pair.get("a", ""), pair.get("b", ""))
        if a_longer is not None:
            longer_wins.append((judgment["p_a"] > 0.5) == a_longer)
    row_longer = [
        longer for row in preferences
        if (longer := _is_longer(_text(row.get("chosen")), _text(row.get("rejected")))) is not None
    ]
    return {
        "judged": len(judged),
        "failed": store.count("judgments", "status != 'ok'"),
        "both_orders": len(both),
        "position_inconsistent": sum(1 for j in both if j["position_consistent"] is False),
        "position_inconsistency_rate": _rate(sum(1 for j in both if j["position_consistent"] is False), len(both)),
        "length_pairs": len(longer_wins),
        "length_win_rate": _rate(sum(longer_wins), len(longer_wins)),
        "rows_length_pairs": len(row_longer),
        "rows_length_win_rate": _rate(sum(row_longer), len(row_longer)),
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _text(value: Any) -> str:
    """The text of a response given as a string or a list of messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return ""


def read_run(run_dir: str | Path) -> RunData:
    """Load a run directory (one-line error when it is not one or has no preference rows)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunStoreError(f"{run_dir}: no such run directory")
    store = open_store(run_dir)
    try:
        data_dir = run_dir / "data"
        preferences = read_rows(data_dir, "preferences")
        if not preferences:
            raise DatasetError(f"{data_dir}: no preference rows (data/preferences.parquet or .jsonl); run the pipeline first")
        config_path, constitution_path = run_dir / "config.yaml", run_dir / "constitution.yaml"
        return RunData(
            run_dir=run_dir,
            meta=store.all_meta(),
            preferences=preferences,
            sft=read_rows(data_dir, "sft"),
            human_labels=read_human_labels(store),
            usage=store.usage(),
            judge_stats=judge_statistics(store, preferences),
            constitution_yaml=constitution_path.read_text(encoding="utf-8") if constitution_path.exists() else None,
            config_data=(yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}) if config_path.exists() else {},
        )
    finally:
        store.close()
