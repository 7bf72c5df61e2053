"""`charter` as a real subprocess, as a shell's background job or a scheduler's task runs it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """`charter ARGS` in its own process group, stderr to a pipe (not a terminal), Python's default SIGINT."""
    return subprocess.Popen(
        [sys.executable, "-m", "charter.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_calls(run_dir: Path, process: subprocess.Popen, at_least: int = 3) -> None:
    """Until the run has recorded some answered calls (it is mid-run)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True) as db:
                if (db.execute("SELECT COALESCE(SUM(calls), 0) FROM usage_events").fetchone()[0] or 0) >= at_least:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    raise AssertionError("the run never got going")
