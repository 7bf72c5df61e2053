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
