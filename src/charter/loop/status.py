"""`charter status LOOP_DIR`: where an iterated loop stands, read from LOOP_DIR/loop.sqlite (safe while it runs):
per arm, each finished round's synthetic share, collapse flags and win rate, and why the arm stopped, if it did."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from charter.errors import RunStoreError

LOOP_FILE = "loop.sqlite"


def is_loop_dir(folder: Path) -> bool:
    return (Path(folder) / LOOP_FILE).is_file()


def _meta(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def _round(row: dict[str, Any]) -> dict[str, Any]:
    data = row.get("data") or {}
    return {
        "policy": row["policy"],
        "model": row["model"],
        "rows": data.get("rows"),
        "real_rows": data.get("real_rows", data.get("human_rows")),
        "synthetic_share": data.get("synthetic_share"),
        "real_share_floor": data.get("real_share_floor"),
        "flags": row.get("flags") or [],
        "win_vs_base": (row.get("vs_base") or {}).get("win_rate"),
        "win_vs_previous": (row.get("vs_previous") or {}).get("win_rate"),
    }


def loop_status(loop_dir: str | Path) -> dict[str, Any]:
    """The loop's state as data: its name and settings, the steps done, and per arm its rounds (synthetic share,
    collapse flags, win rates) and `stopped` (why it stopped early; None where it did not).

    Raises:
        RunStoreError: The folder has no readable loop.sqlite.
    """
    path = Path(loop_dir) / LOOP_FILE
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            config, result = _meta(db, "config") or {}, _meta(db, "result") or {}
            (steps,) = db.execute("SELECT COUNT(*) FROM steps").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise RunStoreError(f"{path}: not a readable loop store ({exc})") from None
    stopped = result.get("stopped") or {}
    arms = {
        arm: {
            "rounds": [_round(row) for row in rows if row["policy"] > 0],
            "stopped": stopped.get(arm),
        }
        for arm, rows in (result.get("rounds") or {}).items()
    }
    return {
        "kind": "loop",
        "path": str(loop_dir),
        "name": config.get("name"),
        "rounds": config.get("rounds"),
        "strategies": config.get("strategies"),
        "real_share": config.get("real_share"),
        "monitor_rule": (config.get("monitor") or {}).get("rule"),
        "steps_done": steps,
        "arms": arms,
        "real": result.get("real"),
    }


def loop_summary(status: dict[str, Any]) -> str:
    """The status in a few lines: per arm, rounds done, the last synthetic share, and the stop and its reason."""
    lines = [f"loop {status['name']} ({status['path']}): {status['steps_done']} steps done"]
    if not status["arms"]:
        lines.append("  no round finished yet")
    for arm, found in status["arms"].items():
        rounds = found["rounds"]
        last = rounds[-1] if rounds else None
        share = None if last is None else last["synthetic_share"]
        shown = "–" if share is None else f"{share:.1%}"
        lines.append(f"  {arm}: {len(rounds)} of {status['rounds']} round(s); last synthetic share {shown}")
        if last is not None and last["flags"]:
            lines.append(f"    flags: {'; '.join(last['flags'])}")
        if found["stopped"]:
            lines.append(f"    stopped {found['stopped']}")
    return "\n".join(lines)
