"""Run directories for the agreement tests, built through the shared builder (tests/support/rundir.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.rundir import RunBuilder

XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def make_run(run_dir: Path, items: list[dict], config: dict | None = None, preferences: bool = False) -> Path:
    """items: dicts with pair_id, p_a, principle, optional a/b/prompt/status/orders/consistent."""
    with RunBuilder(run_dir, config=config) as run:
        for it in items:
            pid = it["pair_id"]
            run.pair(
                pid,
                f"prompt-{pid}",
                it.get("a", f"initial answer to {pid}"),
                it.get("b", f"revised answer to {pid}"),
                text=it.get("prompt", f"question {pid}?"),
            )
            if it.get("status") == "failed":
                run.judgment(pid, 0.5, failure="judge answer names neither (A) nor (B)")
                continue
            p = it["p_a"]
            flipped = (p, 1 - p) if it.get("consistent", True) is False else (p, p)
            run.judgment(
                pid,
                p,
                p_ab=flipped[0],
                p_ba=flipped[1],
                principles=[it.get("principle", "harm")],
                orders=it.get("orders", "both"),
            )
        if preferences:
            run.write_dataset()
    return run_dir


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
    run = make_run(tmp_path / "run", hand_items(), preferences=True)
    with RunBuilder.reopen(run) as builder:
        builder.spot_sample((f"p{i}", "harm" if i < 5 else "honesty", SHOWN[i]) for i in range(10))
        for i in range(10):
            builder.label(f"p{i}", "alice", ALICE[i], SHOWN[i], created_at=1000.0 + i)
    return run
