"""`charter train dpo` with a `winrate_eval` section: `WinRateCallback` built from the config, its evaluations in
metrics.json, the model card and the report of the run the DPO folder is in. Tiny random Llama, a scripted judge."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from charter.cli import app
from charter.pipeline.report.write import write_report
from charter.runs.store import RunStore
from tests.online.test_winrate_eval import SECTION  # registers scripted:eval-fails-on-fail


def test_charter_train_dpo_judges_the_win_rate_at_the_configured_steps(
    tmp_path: Path, tiny_model: Path, prefs_file: Path
) -> None:
    run = tmp_path / "run"
    RunStore(run, create=True).close()
    out = run / "dpo"
    config = {
        "dataset": str(prefs_file),
        "model": str(tiny_model),
        "output_dir": str(out),
        "probe_pairs": 0,
        "trl": {"max_steps": 2, "save_strategy": "no", "logging_steps": 1, "per_device_train_batch_size": 4},
        "winrate_eval": {**SECTION, "every": 2},
    }
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "dpo", str(path)])
    assert result.exit_code == 0, result.output
    [evaluation] = json.loads((out / "metrics.json").read_text())["winrate_eval"]
    assert evaluation["step"] == 2 and evaluation["win_rate"] == 1.0
    assert evaluation["n"] == 2 and evaluation["failures"] == 1 and evaluation["low"] < evaluation["high"] == 1.0
    row = f"| 2 | 1.000 | {evaluation['low']:.3f} – 1.000 | 2 | 1 |"
    card = (out / "README.md").read_text()
    assert "## Win rate during training" in card and row in card and "not measured by the callback" in card
    report, _ = write_report(run)
    text = report.read_text()
    assert "## Win rate during training" in text and row in text
