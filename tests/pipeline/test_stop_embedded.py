"""SIGTERM while the embedded model decodes: the run ends within its grace period (plus a step), exits 143, loads no
weights again, and `charter status` says where it stands. A real `charter run` subprocess with the real SmolLM2."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.runs.counts import stage_states
from charter.runs.files import LOCK_FILE
from charter.runs.store import RunStore
from tests.support.processes import start, wait_for_calls

pytest.importorskip("torch")
pytest.importorskip("transformers")

GRACE_S = 2.0
EMBEDDED = "local:smollm2-135m-instruct"


def write_config(tmp_path: Path) -> Path:
    """Policy answers are short (their batch ends quickly); critiques are long and come in several batches of a
    call, so a SIGTERM lands mid-decode with far more than the grace period of decoding left."""
    options = {"batch_size": 4, "threads": 1}
    config = {
        "name": "stop",
        "output_dir": str(tmp_path / "stop"),
        "cache": str(tmp_path / "calls.sqlite"),
        "constitution": "harmless",
        "seed": 0,
        "prompts": {"bundled": True, "limit": 16},
        "concurrency": 16,
        "stop_grace_s": GRACE_S,
        "policy": {"model": EMBEDDED, "params": {"temperature": 0, "max_tokens": 4}, "options": options},
        "critic": {"model": EMBEDDED, "params": {"temperature": 0, "max_tokens": 400}, "options": options},
        "judge": {"model": EMBEDDED, "options": options},
        "filters": {"min_confidence": 0.0, "drop_inconsistent": False},
        "stages": ["critique", "judge"],
    }
    path = tmp_path / "stop.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_sigterm_stops_the_embedded_model_within_the_grace_period(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    process = start("run", str(config), cwd=tmp_path)
    wait_for_calls(tmp_path / "stop", process, at_least=4)  # the policy's batch is in: critiques are decoding
    os.killpg(process.pid, signal.SIGTERM)
    sent = time.monotonic()
    try:
        _, err = process.communicate(timeout=GRACE_S + 20)
    except Exception:
        process.kill()
        raise
    took = time.monotonic() - sent
    assert process.returncode == 143, err
    assert took < GRACE_S + 20
    assert "terminated; resume with the same command" in err and "Traceback" not in err
    assert not (tmp_path / "stop" / LOCK_FILE).exists()
    with RunStore(tmp_path / "stop") as store:
        assert {s["status"] for s in stage_states(store).values()} == {"interrupted"}
        assert store.count("chains") < 16  # it did stop mid-stage
    assert main(["status", str(tmp_path / "stop")]) == 0
