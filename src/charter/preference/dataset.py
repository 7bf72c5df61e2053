"""Preference and SFT datasets in TRL's conversational format, with provenance and filters."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from charter import __version__
from charter.pipeline.config import FiltersConfig

FILTER_COUNTS = ("dropped_low_confidence", "dropped_inconsistent", "dropped_ties", "dropped_duplicates",
                 "dropped_principle_cap")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def preference_row(pair: dict, judgment: dict, provenance: dict) -> dict:
    """One TRL preference row from a pair and its judgment: the preferred response is `chosen`."""
    a_wins = judgment["p_a"] >= 0.5
    p_chosen = judgment["p_a"] if a_wins else 1.0 - judgment["p_a"]
    chosen, rejected = ("a", "b") if a_wins else ("b", "a")
    flip = (lambda p: p) if a_wins else (lambda p: None if p is None else 1.0 - p)
    per_principle = [
        {"principle_id": p["principle_id"], "p_chosen": flip(p["p_a"]), "p_chosen_ab": flip(p["p_a_ab"]),
         "p_chosen_ba": flip(p["p_a_ba"]), "consistent": p["consistent"]}
        for p in judgment["principles"]
    ]
    return {
        "prompt": pair["prompt"],
        "chosen": [{"role": "assistant", "content": pair[chosen]}],
        "rejected": [{"role": "assistant", "content": pair[rejected]}],
        "p_chosen": p_chosen,
        "p_chosen_calibrated": None,
        "margin": 2 * p_chosen - 1,
        "pair_id": pair["pair_id"], "prompt_id": pair["prompt_id"], "pair_kind": pair["kind"],
        "chosen_source": pair[f"{chosen}_source"], "rejected_source": pair[f"{rejected}_source"],
        "principle_ids": [p["principle_id"] for p in judgment["principles"]],
        "per_principle": json.dumps(per_principle),
        "per_order": json.dumps({"ab": flip(judgment["p_a_ab"]), "ba": flip(judgment["p_a_ba"])}),
        "position_consistent": judgment["position_consistent"],
        **provenance,
        "judge_model": judgment["judge_model"], "judge_mode": judgment["mode"],
    }


def _best_vs_worst(rows: list[dict]) -> list[dict]:
    """Per prompt, keep only the judged pair of the best sample against the worst one."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    kept = [r for r in rows if r["pair_kind"] != "samples"]
    for row in rows:
        if row["pair_kind"] == "samples":
            by_prompt[row["prompt_id"]].append(row)
    for group in by_prompt.values():
        score: dict[str, list[float]] = defaultdict(list)
        for row in group:
            score[row["chosen_source"]].append(row["p_chosen"])
            score[row["rejected_source"]].append(1 - row["p_chosen"])
        mean = {s: sum(v) / len(v) for s, v in score.items()}
        best, worst = max(mean, key=mean.get), min(mean, key=mean.get)
        kept += [r for r in group if {r["chosen_source"], r["rejected_source"]} == {best, worst}]
    return kept


def apply_filters(rows: list[dict], filters: FiltersConfig, strategy: str = "all") -> tuple[list[dict], dict]:
    """Filter preference rows; returns the kept rows and how many each filter dropped."""
    counts = {name: 0 for name in FILTER_COUNTS}
    counts["preferences_before_filters"] = len(rows)
    if strategy == "best_vs_worst":
        before = len(rows)
        rows = _best_vs_worst(rows)
        counts["dropped_not_best_vs_worst"] = before - len(rows)
    kept, seen, per_principle = [], set(), defaultdict(int)
    for row in rows:
        p = row["p_chosen"] if row.get("p_chosen_calibrated") is None else row["p_chosen_calibrated"]
        if filters.drop_ties and abs(p - 0.5) < 1e-9:
            counts["dropped_ties"] += 1
        elif abs(p - 0.5) < filters.min_confidence:
            counts["dropped_low_confidence"] += 1
        elif filters.drop_inconsistent and row["position_consistent"] is False:
            counts["dropped_inconsistent"] += 1
        elif filters.dedupe and (key := json.dumps([row["prompt"], row["chosen"], row["rejected"]])) in seen:
            counts["dropped_duplicates"] += 1
        elif filters.max_per_principle and per_principle[_first(row)] >= filters.max_per_principle:
            counts["dropped_principle_cap"] += 1
        else:
            if filters.dedupe:
                seen.add(key)
            per_principle[_first(row)] += 1
            kept.append(row)
    counts["preferences"] = len(kept)
    return kept, counts


def _first(row: dict) -> str:
    return row["principle_ids"][0] if row["principle_ids"] else ""


def sft_row(chain: dict, provenance: dict) -> dict:
    """One SFT row: the prompt and the final revision."""
    return {
        "messages": chain["prompt"] + [{"role": "assistant", "content": chain["final"]}],
        "prompt_id": chain["prompt_id"], "principle_ids": chain["principle_ids"], "rounds": len(chain["rounds"]),
        **{k: v for k, v in provenance.items() if k != "judge_model"},
    }


def provenance_columns(meta: dict) -> dict:
    """The provenance every row carries, from the run store's meta."""
    return {
        "constitution_name": meta["constitution"]["name"], "constitution_hash": meta["constitution"]["hash"],
        "policy_model": meta["models"]["policy"], "critic_model": meta["models"]["critic"],
        "run_id": meta["run_id"], "created_at": meta["created_at"], "synthetic": True,
        "generator": f"charter {__version__}",
    }


def write_rows(rows: Iterable[dict], out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write rows as NAME.parquet and NAME.jsonl (the JSONL is written atomically too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet, jsonl = out_dir / f"{name}.parquet", out_dir / f"{name}.jsonl"
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    tmp = parquet.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    tmp.replace(parquet)
    tmp = jsonl.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(jsonl)
    return parquet, jsonl
