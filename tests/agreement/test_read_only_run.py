"""A run on a read-only mount (an archived or shared run): the commands that only read work, one that must write
says so in one line (exit 2).

The mount is real: each command runs in a mount namespace of its own (`unshare -m`) where the run directory is bound
read-only over itself, so the test holds as root too (root ignores file modes, not a read-only file system)."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from charter.errors import RunStoreError
from charter.runs.store import SCHEMA_VERSION, RunStore, open_store


def _read_only_mounts(tmp_path: Path) -> bool:
    """Whether this machine lets the test bind a folder read-only in a mount namespace of its own."""
    folder = tmp_path / "probe"
    folder.mkdir()
    script = f"mount --bind -o ro {folder} {folder} && ! touch {folder}/written 2>/dev/null"
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and not (folder / "written").exists()


@pytest.fixture
def read_only(tmp_path: Path):
    """Run a charter command with `run_dir` mounted read-only; returns the finished process."""
    if not _read_only_mounts(tmp_path):
        pytest.skip("no read-only mount here: `unshare -m` with `mount --bind -o ro` needs root or a user namespace")

    def charter(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        command = shlex.join([sys.executable, "-m", "charter.cli", *args])
        script = f"mount --bind -o ro {shlex.quote(str(run_dir))} {shlex.quote(str(run_dir))} && exec {command}"
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300
        )

    return charter


def _one_line_refusal(done: subprocess.CompletedProcess[str], run_dir: Path) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "OperationalError" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(run_dir) in lines[0] and "cannot be written" in lines[0], done.stderr


def test_the_reading_commands_work_on_a_read_only_run(hand_run: Path, tmp_path: Path, read_only) -> None:
    before = sorted(p.name for p in hand_run.iterdir())

    status = read_only(hand_run, "status", str(hand_run))
    assert status.returncode == 0, status.stderr
    assert "Traceback" not in status.stderr and "pairs judged" in status.stdout + status.stderr

    out = tmp_path / "labels.csv"
    export = read_only(hand_run, "label", "export", str(hand_run), "--format", "csv", "--output", str(out))
    assert export.returncode == 0, export.stderr
    assert "wrote 10 sampled pairs" in export.stdout and len(out.read_text().splitlines()) == 11

    agreement = read_only(hand_run, "agreement", str(hand_run))
    assert agreement.returncode == 0, agreement.stderr
    shown = agreement.stdout + agreement.stderr  # the tables go to the console (stderr)
    assert "is read-only: the figures are shown, not stored" in shown and "kappa" in shown.lower()

    sample = read_only(hand_run, "spotcheck", str(hand_run), "--n", "10")  # the sample is already drawn: a read
    assert sample.returncode == 0, sample.stderr
    assert "10 pairs" in sample.stdout + sample.stderr
    assert sorted(p.name for p in hand_run.iterdir()) == before  # nothing written beside the store


def test_a_command_that_writes_says_so_in_one_line(hand_run: Path, tmp_path: Path, read_only) -> None:
    _one_line_refusal(read_only(hand_run, "spotcheck", str(hand_run), "--add", "2"), hand_run)
    labels = tmp_path / "labels.csv"  # a real, filled-in export: the refusal is the store's, not the file's
    export = read_only(hand_run, "label", "export", str(hand_run), "--format", "csv", "--output", str(labels))
    assert export.returncode == 0, export.stderr
    rows = list(csv.DictReader(labels.open(encoding="utf-8")))
    for row in rows:
        row["label"], row["annotator"] = "A", "ann1"
    with labels.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _one_line_refusal(read_only(hand_run, "label", "import", str(hand_run), str(labels), "--format", "csv"), hand_run)


def test_a_store_opened_to_read_refuses_a_write_in_one_line(hand_run: Path) -> None:
    with open_store(hand_run, read_only=True) as store:
        assert store.meta("run_id") is not None
        with pytest.raises(RunStoreError, match="cannot be written here .* this command writes to it"):
            store.set_meta(agreement=None)
        with pytest.raises(RunStoreError, match="cannot be written here"):
            store.execute("DELETE FROM meta")
    with RunStore(hand_run) as store:
        assert store.meta("run_id") is not None  # the store is as it was


LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "legacy_0_1_0" / "run"


def test_a_store_of_the_release_before_is_brought_forward_where_it_can_be_written(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(LEGACY, run)
    with open_store(run, read_only=True) as store:
        assert store.meta("run_id") is not None and store.read_only
    with RunStore(run) as store:
        assert store.execute("PRAGMA user_version")[0][0] == SCHEMA_VERSION


def test_a_store_of_the_release_before_on_a_read_only_mount_is_one_line(tmp_path: Path, read_only) -> None:
    run = tmp_path / "run"
    shutil.copytree(LEGACY, run)
    done = read_only(run, "status", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "cannot be written here to bring it forward" in done.stderr and len(done.stderr.strip().splitlines()) == 1
