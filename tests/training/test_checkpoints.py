"""The checkpoint every `charter train` command resumes from: the newest complete one. A newer one that a killed
process left incomplete (no readable trainer_state.json, which transformers writes last) is set aside, renamed and
kept, with one line saying so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from charter.training.args import last_checkpoint


def _complete(out: Path, step: int) -> Path:
    """A checkpoint folder as Trainer._save_checkpoint leaves it: weights, optimizer, then trainer_state.json."""
    folder = _cut_short(out, step)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def _cut_short(out: Path, step: int) -> Path:
    """Killed while saving: the weights and the optimizer written, no trainer_state.json yet."""
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "optimizer.pt").write_bytes(b"optimizer")
    return folder


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_checkpoint_without_its_trainer_state_is_set_aside_and_training_starts_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _cut_short(tmp_path, 1)
    assert last_checkpoint(tmp_path) is None
    kept = tmp_path / "incomplete-checkpoint-1"
    assert not (tmp_path / "checkpoint-1").exists() and (kept / "model.safetensors").read_bytes() == b"weights"
    [line] = _warnings(caplog)
    assert "checkpoint-1 (set aside as incomplete-checkpoint-1)" in line and "starting from the beginning" in line
    assert "trainer_state.json" in line and "\n" not in line


def test_an_empty_checkpoint_folder_is_set_aside_for_the_older_complete_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _complete(tmp_path, 2)
    (tmp_path / "checkpoint-4").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "incomplete-checkpoint-4").is_dir() and not (tmp_path / "checkpoint-4").exists()
    [line] = _warnings(caplog)
    assert "checkpoint-4 (set aside as incomplete-checkpoint-4)" in line and "resuming from checkpoint-2" in line


def test_every_newer_incomplete_checkpoint_is_set_aside_and_a_truncated_state_is_incomplete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _complete(tmp_path, 1)
    _cut_short(tmp_path, 2)
    (_cut_short(tmp_path, 3) / "trainer_state.json").write_text('{"global_step": 3, "log_hi')  # killed mid-write
    (tmp_path / "incomplete-checkpoint-3").mkdir()  # set aside by an earlier start: kept as it is
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-1", "incomplete-checkpoint-2", "incomplete-checkpoint-3", "incomplete-checkpoint-3.2"
    ]  # fmt: skip
    [line] = _warnings(caplog)
    assert "checkpoints checkpoint-3 (set aside as incomplete-checkpoint-3.2), checkpoint-2" in line
    assert "resuming from checkpoint-1" in line


def test_complete_checkpoints_resume_from_the_newest_without_a_word(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (5, 10, 9):
        _complete(tmp_path, step)
    (tmp_path / "checkpoint-11").write_text("a file, not a checkpoint")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert last_checkpoint(tmp_path / "missing") is None and not _warnings(caplog)


def test_only_the_main_process_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _complete(tmp_path, 1)
    _cut_short(tmp_path, 2)
    monkeypatch.setenv("RANK", "1")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1") and (tmp_path / "checkpoint-2").is_dir()
    monkeypatch.setenv("RANK", "0")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1") and not (tmp_path / "checkpoint-2").exists()
