"""Provenance columns on every exported row, and the seeded train/test split (by prompt, so no prompt leaks)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from charter import __version__

GENERATOR = f"charter {__version__}"
#: Columns that say where a row came from; `mix` keeps them and adds `label_source`.
PROVENANCE_COLUMNS = (
    "synthetic", "generator", "run_id", "constitution_name", "constitution_hash",
    "policy_model", "critic_model", "judge_model",
)


def _defaults(meta: dict[str, Any], run_id: str) -> dict[str, Any]:
    constitution = meta.get("constitution") or {}
    models = meta.get("models") or {}
    judge = meta.get("judge") or {}
    return {
        "synthetic": True,
        "generator": GENERATOR,
        "run_id": run_id,
        "constitution_name": constitution.get("name"),
        "constitution_hash": constitution.get("hash"),
        "policy_model": models.get("policy"),
        "critic_model": models.get("critic"),
        "judge_model": models.get("judge"),
        "judge_mode": judge.get("mode"),
        "created_at": meta.get("created_at"),
    }


def ensure_provenance(rows: list[dict], meta: dict[str, Any], run_id: str, kind: str) -> list[dict]:
    """Copies of `rows` with every provenance column present: missing or empty values are filled from the
    run store meta; values a row already carries are kept (they describe that row). Charter rows are
    always synthetic."""
    defaults = _defaults(meta, run_id)
    if kind == "sft":
        defaults.pop("judge_model")
        defaults.pop("judge_mode")
    repaired = []
    for row in rows:
        row = dict(row)
        for column, value in defaults.items():
            if row.get(column) in (None, ""):
                row[column] = value
        row["synthetic"] = True
        repaired.append(row)
    return repaired


def split_by_prompt(rows: list[dict], test_size: float, seed: int) -> dict[str, list[dict]]:
    """Seeded train/test split that keeps all rows of a prompt together. Tiny sets (one prompt) get no test split."""
    prompt_ids = sorted({str(row.get("prompt_id") or row.get("pair_id") or i) for i, row in enumerate(rows)})
    n_test = math.ceil(len(prompt_ids) * test_size) if len(prompt_ids) > 1 and test_size > 0 else 0
    n_test = min(n_test, len(prompt_ids) - 1)
    order = np.random.default_rng(seed).permutation(len(prompt_ids))
    test_ids = {prompt_ids[i] for i in order[:n_test]}
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for i, row in enumerate(rows):
        key = str(row.get("prompt_id") or row.get("pair_id") or i)
        splits["test" if key in test_ids else "train"].append(row)
    return {name: part for name, part in splits.items() if part}
