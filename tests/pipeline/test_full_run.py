"""One YAML from constitution to model: critique, judge, reward_model, dpo, eval in a single run."""

from __future__ import annotations

import json

from charter.cli import main
from charter.pipeline.api import run
from tests.support.tiny_models import tiny_llama


def test_one_yaml_from_constitution_to_trained_models(make_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    tiny = tiny_llama(tmp_path / "tiny")
    trl = {"per_device_train_batch_size": 2, "max_steps": 2, "logging_steps": 1}
    config = make_config(
        stages=["critique", "judge", "reward_model", "dpo", "eval"],
        reward_model={"model": str(tiny), "eval_fraction": 0.34, "trl": trl},
        dpo={"model": str(tiny), "trl": trl},
        eval={"base": f"local:{tiny}", "judge": "scripted:cai", "limit": 3, "max_tokens": 8},
    )
    result = run(config)
    run_dir = tmp_path / "run"
    assert (run_dir / "reward_model" / "config.json").exists()
    assert (run_dir / "dpo" / "config.json").exists()
    assert result.training["eval"]["n"] == 3
    summary = json.loads((run_dir / "report" / "winrate.json").read_text())
    assert summary["n"] == 3 and 0 <= summary["win_rate"] <= 1


def test_bad_training_section_fails_before_any_model_call(make_config, tmp_path, capsys):
    config = make_config(stages=["critique", "judge", "dpo"], dpo={"modle": "x"})
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "dpo" in err and "modle" in err and "unknown key" in err
    assert not (tmp_path / "cache.sqlite").exists()


def test_a_stop_during_training_ends_it_without_a_model(make_config, tmp_path, monkeypatch):
    """SIGTERM (or Ctrl-C) while DPO trains: training ends at the next step, no model is written from it, the report
    is, and the run ends `Interrupted` (143); the same command trains again."""
    import asyncio
    import threading
    import time

    import pytest

    from charter.errors import Interrupted
    from charter.interrupt import StopRequest
    from charter.pipeline.api import runner_for
    from charter.pipeline.config import load_run_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    tiny = tiny_llama(tmp_path / "tiny")
    trl = {"per_device_train_batch_size": 2, "max_steps": 2000, "logging_steps": 1}
    config = load_run_config(
        make_config(stages=["critique", "judge", "dpo"], dpo={"model": str(tiny), "trl": trl}, report=True)
    )
    stop = StopRequest(grace_s=1)
    run_dir = tmp_path / "run"

    def terminate_once_training() -> None:
        deadline = time.monotonic() + 120
        while not (run_dir / "dpo").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)  # a few steps in
        stop.request("terminated", 143)

    threading.Thread(target=terminate_once_training, daemon=True).start()
    with pytest.raises(Interrupted) as caught:
        asyncio.run(runner_for(config).arun(stop))
    assert caught.value.exit_code == 143
    assert not (run_dir / "dpo" / "config.json").exists()  # no model from a training cut short
    assert (run_dir / "report" / "report.md").exists() and (run_dir / "data" / "preferences.parquet").exists()
