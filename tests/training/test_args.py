"""A `trl:` section is checked against TRL's own config class when the config loads: each field's name and type, one
line per bad field with its file, line and column, before any dataset is read or any model loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.cli import main
from charter.errors import ConfigError
from charter.online.config import OnlineConfig, OnlineDPOConfig
from charter.training.args import build_trl_config
from charter.yamlio import config_from, load_model


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _lines(call) -> list[str]:  # noqa: ANN001
    with pytest.raises(ConfigError) as caught:
        call()
    return caught.value.lines


def test_every_bad_field_is_a_line_at_its_key(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "dataset: missing.jsonl\n"
        "trl:\n"
        "  betta: 0.2\n"
        "  max_steps: two\n"
        "  eval_strategy: step\n"
        "  truncation_mode: keep_middle\n"
        "  loss_type: ipo\n"
        "  learning_rate: 1e-5\n",
    )
    lines = _lines(lambda: charter.train_dpo(path))  # the dataset is never read: the config fails first
    assert sorted(lines) == sorted(
        [
            f"{path}:3:3: trl.betta: unknown DPOConfig field (did you mean 'beta'?)",
            f"{path}:4:3: trl.max_steps: Input should be a valid integer, unable to parse string as an integer",
            f"{path}:5:3: trl.eval_strategy: 'step' is not one of no, steps, epoch; did you mean 'steps'?",
            f"{path}:6:3: trl.truncation_mode: 'keep_middle' is not one of keep_end, keep_start; did you mean "
            "'keep_end'?",
            f"{path}:7:3: trl.loss_type: set loss_type beside trl, not in it (it is one of charter's own fields)",
        ]
    )


def test_good_fields_pass_as_trl_reads_them(tmp_path: Path) -> None:
    path = _file(tmp_path, "dataset: d.jsonl\ntrl: {learning_rate: 1e-5, eval_strategy: steps, report_to: none}\n")
    config = load_model(charter.DPOConfigModel, path)
    assert config.trl == {"learning_rate": 1e-5, "eval_strategy": "steps", "report_to": "none"}  # YAML's "1e-5"


def test_a_field_trl_takes_beyond_its_annotation_passes() -> None:
    assert OnlineDPOConfig(prompts="p.jsonl", trl={"beta": 0.1}).trl == {"beta": 0.1}  # annotated list[float]
    assert OnlineDPOConfig(prompts="p.jsonl", trl={"beta": [0.1, 0.05]}).trl == {"beta": [0.1, 0.05]}


def test_each_trainers_config_is_checked_against_its_own_class(tmp_path: Path) -> None:
    bad = {"trl": {"num_train_epochs": "many", "bogus": 1}}
    cases = [
        (charter.RewardModelConfig, {"dataset": "d.jsonl"}, "RewardConfig"),
        (charter.DPOConfigModel, {"dataset": "d.jsonl"}, "DPOConfig"),
        (OnlineConfig, {"prompts": "p.jsonl"}, "GRPOConfig or RLOOConfig"),
        (OnlineDPOConfig, {"prompts": "p.jsonl"}, "OnlineDPOConfig"),
    ]
    for model, fields, name in cases:
        with pytest.raises(ConfigError) as caught:
            config_from(model, {**fields, **bad}, "config")
        lines = caught.value.lines
        assert lines == [
            "config: trl.num_train_epochs: Input should be a valid number, unable to parse string as a number",
            f"config: trl.bogus: unknown {name} field",
        ]


def test_an_unknown_online_dpo_field_names_the_section_once(tmp_path: Path) -> None:
    path = _file(tmp_path, "prompts: p.jsonl\ntrl:\n  bogus: 1\n")
    assert _lines(lambda: load_model(OnlineDPOConfig, path)) == [
        f"{path}:3:3: trl.bogus: unknown OnlineDPOConfig field"
    ]
    from trl import RLOOConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    # a GRPO field RLOO lacks passes the shared config and is refused when `charter train rloo` starts, as `trl`
    config = OnlineConfig(prompts="p.jsonl", trl={"entropy_coef": 0.1})
    with pytest.raises(ConfigError, match=r"^trl: unknown RLOOConfig field entropy_coef$"):
        build_trl_config(RLOOConfig, {"output_dir": str(tmp_path)}, config.trl, "trl")


def test_a_bad_override_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, "prompts: p.jsonl\ntrl:\n  max_steps: 2\n")
    assert main(["train", "online-dpo", str(path), "--set", "trl.max_steps=two"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --set trl.max_steps=two: trl.max_steps: Input should be a valid integer, unable to parse string as "
        "an integer"
    ]


def test_a_run_checks_the_trl_fields_of_the_stages_it_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """TRL is imported (seconds of CPU) to check a section only where the run's stages train with it."""
    import charter.dpo.config
    import charter.reward_model.config

    imported = []

    def loader(name: str):  # noqa: ANN202
        def load() -> type:
            imported.append(name)
            from trl import DPOConfig, RewardConfig  # pyright: ignore[reportPrivateImportUsage]

            return {"dpo": DPOConfig, "reward_model": RewardConfig}[name]

        return load

    monkeypatch.setattr(charter.dpo.config, "dpo_config", loader("dpo"))
    monkeypatch.setattr(charter.reward_model.config, "reward_config", loader("reward_model"))
    import charter.pipeline.config as run_config

    monkeypatch.setattr(run_config, "dpo_config", charter.dpo.config.dpo_config)
    monkeypatch.setattr(run_config, "reward_config", charter.reward_model.config.reward_config)
    path = _file(
        tmp_path,
        "policy: {model: scripted:cai}\nprompts: {bundled: true}\n"
        "reward_model: {trl: {num_train_epochz: 2}}\ndpo: {trl: {max_steps: 6}}\n",
    )
    config = run_config.load_run_config(path)  # stages critique, judge: nothing trains, nothing is imported
    assert imported == [] and config.reward_model is not None
    assert config.reward_model.trl == {"num_train_epochz": 2}
    lines = _lines(lambda: run_config.load_run_config(path, ["stages=[critique,judge,reward_model]"]))
    assert imported == ["reward_model"]
    assert len(lines) == 1 and "reward_model.trl.num_train_epochz" in lines[0] and "num_train_epochs" in lines[0]
    config = run_config.load_run_config(path, ["stages=[critique,judge,dpo]"])
    assert imported[-1] == "dpo" and config.dpo is not None and config.dpo.trl == {"max_steps": 6}
