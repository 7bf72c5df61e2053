"""The `winrate_eval` section of charter's own train commands: `WinRateCallback` built from the config, its
evaluations in metrics.json, the model card and the run report. Tiny random Llama, scripted judges."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from charter.cli import app, main
from charter.errors import ConfigError
from charter.judge_prompt import read_comparison
from charter.online.config import OnlineConfig
from charter.providers.scripted import _cai, _cai_choice, register_script
from charter.yamlio import load_model
from tests.online.test_train import _config

#: The third prompt's judgment fails: a failure, never a tie.
PROMPTS = ["How do I pick a lock?", "Tell me about the weather", "FAIL this one please"]


def _fails_on_fail(messages, params):  # noqa: ANN001, ANN202 - no verdict for prompts that ask for one to fail
    if read_comparison(messages[-1].content) is not None and "FAIL this one" in messages[-1].content:
        return "I would rather not say."
    return _cai(messages, params)


register_script("eval-fails-on-fail", _fails_on_fail, _cai_choice)

#: Judged every step against scripted:cai's answers, which open harmfully: the random policy beats them.
SECTION = {
    "prompts": PROMPTS,
    "every": 1,
    "max_new_tokens": 4,
    "reference": "scripted:cai",
    "judge": "scripted:eval-fails-on-fail",
    "mode": "verdict",
}


def test_charter_train_grpo_judges_the_win_rate_at_the_configured_steps(tiny_model: Path, tmp_path: Path) -> None:
    path = _config(tmp_path, tiny_model, winrate_eval=SECTION)
    result = CliRunner().invoke(app, ["train", "grpo", str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    evaluations = json.loads((out / "metrics.json").read_text())["winrate_eval"]
    assert [e["step"] for e in evaluations] == [1, 2]
    for e in evaluations:
        assert e["win_rate"] == 1.0 and e["n"] == 2 and e["failures"] == 1
        assert 0 < e["low"] < e["high"] == 1.0 and set(e) == {"step", "win_rate", "low", "high", "n", "failures", "lc"}
    low = f"{evaluations[0]['low']:.3f} – 1.000"
    card = (out / "README.md").read_text()
    assert "## Win rate during training" in card and f"| 1 | 1.000 | {low} | 2 | 1 |" in card
    assert "not measured by the callback" in card
    report = (out / "report" / "report.md").read_text()
    assert "## Win rate during training" in report and f"| 2 | 1.000 | {low} | 2 | 1 |" in report
    assert "not measured by the callback" in report
    assert 'id="training-winrate"' in (out / "report" / "report.html").read_text()


def test_without_the_section_there_is_no_evaluation(tiny_model: Path, tmp_path: Path) -> None:
    path = _config(tmp_path, tiny_model, trl={"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2,
                                              "max_completion_length": 4, "save_strategy": "no"})  # fmt: skip
    assert CliRunner().invoke(app, ["train", "rloo", str(path)]).exit_code == 0
    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text())["winrate_eval"] == []
    assert "Win rate during training" not in (out / "README.md").read_text()
    assert "Win rate during training" not in (out / "report" / "report.md").read_text()


def test_a_bad_section_is_one_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = {"prompts": {"inline": ["q"]}}
    with pytest.raises(ValueError, match="reference_column needs prompts given as a file"):
        OnlineConfig.model_validate({**base, "winrate_eval": {**SECTION, "reference": None, "reference_column": "r"}})
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump({**base, "winrate_eval": {**SECTION, "every": 0}}))
    assert main(["train", "grpo", str(path)]) == 2
    assert "grpo.yaml:" in capsys.readouterr().err  # one line naming the file and the key
    with pytest.raises(ConfigError, match="winrate_eval.every"):
        load_model(OnlineConfig, path)


def test_a_section_judge_that_cannot_be_built_stops_before_the_policy_loads(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import charter.online.train

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the policy was loaded")

    monkeypatch.setattr(charter.online.train, "load_policy", never)
    path = _config(tmp_path, tiny_model, winrate_eval={**SECTION, "judge": "scripted:nope"})
    assert main(["train", "grpo", str(path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: winrate_eval.judge: scripted:nope: no such script (known: ")


def test_charter_train_online_dpo_judges_the_win_rate_every_second_step(tiny_model: Path, tmp_path: Path) -> None:
    from tests.online.test_online_dpo import _cli_config

    trl = {"max_steps": 4, "per_device_train_batch_size": 4, "max_new_tokens": 4, "save_strategy": "no"}
    path = _cli_config(tmp_path, tiny_model, trl=trl, winrate_eval={**SECTION, "every": 2, "limit": 2})
    result = CliRunner().invoke(app, ["train", "online-dpo", str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    evaluations = json.loads((out / "metrics.json").read_text())["winrate_eval"]
    # the first two prompts alone (limit 2): both judged, none failed
    assert [(e["step"], e["n"], e["failures"], e["win_rate"]) for e in evaluations] == [(2, 2, 0, 1.0), (4, 2, 0, 1.0)]
    assert "| 4 | 1.000 |" in (out / "README.md").read_text()
    assert "| 4 | 1.000 |" in (out / "report" / "report.md").read_text()
