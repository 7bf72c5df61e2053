"""Writing calibrated probabilities into data/preferences.{parquet,jsonl} and re-filtering on them.

Rows the calibrated confidence filter drops are kept in the run store (`calibration_dropped`), so a
later calibration with more labels starts again from every row the pipeline built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from charter.agreement.labels import JudgedPair
from charter.pipeline.store import RunStore

SCHEMA = "CREATE TABLE IF NOT EXISTS calibration_dropped (pair_id TEXT PRIMARY KEY, record TEXT);"
FILTER_KEYS = (("filters", "min_confidence"),)


def configured_min_confidence(run_config: dict | None, override: float | None) -> float:
    """The confidence margin: the agreement override, else the run config's `filters.min_confidence`, else 0."""
    if override is not None:
        return override
    for section, key in FILTER_KEYS:
        value = ((run_config or {}).get(section) or {}).get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


def read_rows(data_dir: Path) -> list[dict]:
    """Preference rows from the JSONL file (the parquet file holds the same rows)."""
    path = data_dir / "preferences.jsonl"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def chosen_is_a(row: dict, pair: dict) -> bool:
    """Whether the row's chosen response is the pair's `a`."""
    chosen = row["chosen"][0]["content"] if isinstance(row.get("chosen"), list) else row.get("chosen")
    if chosen == pair["a"]:
        return True
    if chosen == pair["b"]:
        return False
    return row.get("chosen_source") == pair.get("a_source")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_rows(data_dir: Path, rows: list[dict], had_parquet: bool) -> None:
    """Rewrite preferences.jsonl (and .parquet when it existed) atomically."""
    def jsonl(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    _atomic_write(data_dir / "preferences.jsonl", jsonl)
    if had_parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        old = pq.read_schema(data_dir / "preferences.parquet")
        fields = [pa.field(f.name, pa.float64()) if f.name == "p_chosen_calibrated" else f for f in old]
        if "p_chosen_calibrated" not in old.names:
            fields.append(pa.field("p_chosen_calibrated", pa.float64()))
        schema = pa.schema(fields)
        table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
        _atomic_write(data_dir / "preferences.parquet", lambda tmp: pq.write_table(table, tmp))


def apply_calibration(store: RunStore, judged: dict[str, JudgedPair], calibrator: Callable[[np.ndarray], np.ndarray],
                      min_confidence: float) -> dict[str, Any]:
    """Set p_chosen_calibrated on every preference row; drop rows with p_chosen_calibrated < 0.5 + min_confidence."""
    data_dir = store.run_dir / "data"
    store.ensure(SCHEMA)
    rows = read_rows(data_dir)
    present = {r.get("pair_id") for r in rows}
    dropped_before = [json.loads(r) for (r,) in store.execute("SELECT record FROM calibration_dropped")]
    rows += [r for r in dropped_before if r.get("pair_id") not in present]
    if not rows:
        return {"rows": 0, "kept": 0, "dropped_low_confidence": 0, "min_confidence": min_confidence,
                "note": "no data/preferences.jsonl yet"}
    kept, dropped = [], []
    for row in rows:
        item = judged.get(row.get("pair_id"))
        if item is None:
            row["p_chosen_calibrated"] = None
            kept.append(row)
            continue
        p_a = float(calibrator(np.array([item.p_a]))[0])
        row["p_chosen_calibrated"] = round(p_a if chosen_is_a(row, item.pair) else 1.0 - p_a, 6)
        (dropped if row["p_chosen_calibrated"] < 0.5 + min_confidence else kept).append(row)
    write_rows(data_dir, kept, (data_dir / "preferences.parquet").exists())
    store.write("DELETE FROM calibration_dropped WHERE pair_id = ?", [(r["pair_id"],) for r in kept])
    store.put_records("calibration_dropped", ("pair_id",), (((r["pair_id"],), r) for r in dropped))
    counts = dict(store.meta("counts") or {})
    counts.update(dropped_low_confidence_calibrated=len(dropped), preferences=len(kept))
    store.set_meta(counts=counts)
    return {"rows": len(rows), "kept": len(kept), "dropped_low_confidence": len(dropped),
            "min_confidence": min_confidence}
