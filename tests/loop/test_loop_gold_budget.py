"""The loop's gold monitor keeps one budget line across rounds: what the base's and round 0's gold steps paid counts
in round 1; reaching it stops the monitor, not the loop, and the report and the status say so; a resumed loop pays
nothing twice."""

from __future__ import annotations

import shutil
from pathlib import Path

from charter.loop.report import loop_status, loop_summary
from charter.loop.run import SHARED, LoopStore
from tests.loop.test_loop_gold import GamingLoop, _config
from tests.monitor import gold_checks  # noqa: F401 - registers the scripted gold judge

GOLD = {
    "constitution": "harmless",
    "judge": "scripted:distinct-judge",
    "rating": {"mode": "score", "rating": "verdict", "principles_per_pair": 1},
}


def _tokens(loop_dir: Path) -> list[float]:
    """The tokens each stored gold step paid, in the order they ran."""
    store = LoopStore(loop_dir)
    try:
        return [result["cost"]["tokens"] for _, _, step, result in store.steps() if step in ("gold", "gold_next")]
    finally:
        store.db.close()


def test_the_monitors_budget_carries_across_rounds_and_stops_the_monitor_not_the_loop(loop_config, tmp_path) -> None:
    measured = GamingLoop(_config(loop_config, tmp_path, rounds=2, gold=GOLD), []).run()
    paid = _tokens(tmp_path / "loop")
    assert len(paid) == 3 and all(t > 0 for t in paid) and "stopped" not in str(measured.gold["replace"]["stopped"])
    (tmp_path / "cache.sqlite").unlink()  # the same calls, paid again from here
    shutil.rmtree(tmp_path / "loop")
    cap = int(paid[0] + paid[1] / 2)  # more than the base's step, less than the base's and round 0's together
    budget = {"max_tokens": cap}
    result = GamingLoop(_config(loop_config, tmp_path, rounds=2, gold=GOLD, budget=budget), []).run()
    monitor = result.gold["replace"]
    # round 0's step alone would pay less than the cap: with what the base's step paid, it reaches it
    assert [s["step"] for s in monitor["steps"]] == [0, 1]
    assert monitor["stopped"] == "the monitor's budget was reached at step 1; the loop went on unmonitored"
    assert [row["policy"] for row in result.rounds["replace"]] == [0, 1, 2]  # the loop went on
    assert "replace" not in result.stopped
    spent = _tokens(tmp_path / "loop")
    assert spent[0] == paid[0] and spent[1] < paid[1] and sum(spent) >= cap  # round 0's step ran into the base's
    assert monitor["steps"][1]["gold_failures"] > 0  # the answers it could not pay for: failed, never scored
    report = result.report.read_text()
    assert "The monitor's budget was reached at step 1; the loop went on unmonitored" in report
    status = loop_status(tmp_path / "loop")
    assert status["arms"]["replace"]["gold"]["stopped"] == monitor["stopped"]
    assert f"gold monitor stopped: {monitor['stopped']}" in loop_summary(status)
    # resumed: every step comes from the loop store, no gold call is made again, the same record comes back
    again = GamingLoop(_config(loop_config, tmp_path, rounds=2, gold=GOLD, budget=budget), []).run()
    assert again.gold["replace"] == monitor and _tokens(tmp_path / "loop") == spent
    store = LoopStore(tmp_path / "loop")
    try:
        assert store.get(SHARED, 0, "gold") is not None and store.get("replace", 1, "gold_next") is None
    finally:
        store.db.close()
