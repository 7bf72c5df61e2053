"""Run directories for the agreement tests, built directly with RunStore in the documented formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charter.pipeline.store import RunStore

XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def make_run(run_dir: Path, items: list[dict], config: dict | None = None, preferences: bool = False) -> Path:
    """items: dicts with pair_id, p_a, principle, optional a/b/status/orders/consistent."""
    store = RunStore(run_dir, create=True)
    store.set_meta(run_id="test-run", config=config or {}, constitution={"name": "t", "principles": ["harm", "honesty"]})
    pairs, judgments = [], []
    for it in items:
        pid = it["pair_id"]
        pair = {"pair_id": pid, "prompt_id": f"prompt-{pid}", "kind": "revision",
                "prompt": [{"role": "user", "content": it.get("prompt", f"question {pid}?")}],
                "a": it.get("a", f"initial answer to {pid}"), "b": it.get("b", f"revised answer to {pid}"),
                "a_source": "initial", "b_source": "revision", "a_model": "scripted:cai", "b_model": "scripted:cai"}
        both = it.get("orders", "both") == "both"
        judgment = {"pair_id": pid, "status": it.get("status", "ok"), "mode": "logprobs",
                    "orders": it.get("orders", "both"), "p_a": it["p_a"], "p_a_ab": it["p_a"],
                    "p_a_ba": it["p_a"] if both else None,
                    "position_consistent": it.get("consistent", True) if both else None,
                    "principles": [{"principle_id": it.get("principle", "harm"), "p_a": it["p_a"]}],
                    "judge_model": "scripted:cai", "error": None, "raw": None}
        pairs.append(((pid, pair["prompt_id"], "revision"), pair))
        judgments.append(((pid, judgment["status"]), judgment))
    store.put_records("pairs", ("pair_id", "prompt_id", "kind"), pairs)
    store.put_records("judgments", ("pair_id", "status"), judgments)
    store.close()
    if preferences:
        write_preferences(run_dir, [p for _, p in pairs], {it["pair_id"]: it["p_a"] for it in items})
    return run_dir


def write_preferences(run_dir: Path, pairs: list[dict], p_a: dict[str, float]) -> None:
    """Preference rows as the pipeline writes them: chosen is the side the judge preferred."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for pair in pairs:
        pa_ = p_a[pair["pair_id"]]
        a_wins = pa_ >= 0.5
        chosen, rejected = (pair["a"], pair["b"]) if a_wins else (pair["b"], pair["a"])
        rows.append({"prompt": pair["prompt"], "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}],
                     "p_chosen": pa_ if a_wins else 1 - pa_, "p_chosen_calibrated": None,
                     "margin": 2 * (pa_ if a_wins else 1 - pa_) - 1, "pair_id": pair["pair_id"],
                     "chosen_source": "initial" if a_wins else "revision", "synthetic": True})
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    with (data / "preferences.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), data / "preferences.parquet")


# The hand-checked set (see test_stats.py for the arithmetic).
P_A = [0.8, 0.7, 0.9, 0.3, 0.2, 0.1, 0.6, 0.4, 0.7, 0.2]
ALICE = ["a", "a", "a", "a", "b", "b", "b", "b", "tie", "tie"]
LONGER = ["a", "a", "b", "b", "b", "b", "a", "a", "a", "tie"]
SHOWN = ["ab", "ab", "ab", "ab", "ab", "ba", "ba", "ba", "ab", "ba"]


def hand_items() -> list[dict]:
    items = []
    for i, (p, longer) in enumerate(zip(P_A, LONGER)):
        short, long_ = "short", "a much longer answer"
        a, b = {"a": (long_, short), "b": (short, long_), "tie": ("same1", "same2")}[longer]
        items.append({"pair_id": f"p{i}", "p_a": p, "principle": "harm" if i < 5 else "honesty", "a": a, "b": b})
    return items


@pytest.fixture
def hand_run(tmp_path: Path) -> Path:
    """Ten judged pairs, all in the spot-check sample with known shown orders, labeled by alice."""
    from charter.agreement.labels import NewLabel, open_labels, put_labels

    run = make_run(tmp_path / "run", hand_items(), preferences=True)
    store = open_labels(run)
    store.write("INSERT INTO spot_sample VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(f"p{i}", "harm" if i < 5 else "honesty", "x", SHOWN[i], i, 0, 0.0) for i in range(10)])
    put_labels(store, [NewLabel(f"p{i}", "alice", ALICE[i], SHOWN[i]) for i in range(10)])
    store.close()
    return run
