"""`examples/quickstart-scripted.yaml`: the quickstart in one command without the embedded model, its settings the
quickstart's but for the models, and a run that makes the quickstart's 16 rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import charter
from charter.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: The quickstart's optional training sections, each with the embedded model; the scripted one leaves them out.
TRAINING = ("reward_model", "dpo", "eval")


def _settings(name: str) -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    for role in ("policy", "critic", "judge"):
        data[role] = {k: v for k, v in data[role].items() if k not in ("model", "options")}
    return {k: v for k, v in data.items() if k != "name" and k not in TRAINING}


def test_its_settings_are_the_quickstarts_but_for_the_models() -> None:
    assert _settings("quickstart-scripted.yaml") == _settings("quickstart.yaml")
    config = charter.load_run_config(str(EXAMPLES / "quickstart-scripted.yaml"))
    roles = [config.policy, config.critic, config.judge]
    assert [role.model for role in roles if role is not None] == ["scripted:cai"] * 3


def test_it_runs_the_quickstart_in_one_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = str(EXAMPLES / "quickstart-scripted.yaml")
    assert main(["run", path, "--set", f"cache={tmp_path / 'calls.sqlite'}"]) == 0
    run = tmp_path / "runs" / "quickstart-scripted"
    status = charter.status(run)
    assert status["counts"]["preferences"] == 16 and (run / "report" / "report.html").exists()
