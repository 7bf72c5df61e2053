"""charter.training: the one base the reward-model, DPO and online trainers share."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest

from charter.dpo.config import DPOConfigModel
from charter.dpo.train import output_dir_for as dpo_output_dir
from charter.reward_model.config import RewardModelConfig
from charter.reward_model.train import output_dir_for as reward_output_dir
from charter.runs.store import STORE_FILE
from charter.training.args import build_trl_config, checkpointing_args, device_defaults, offline_args
from charter.training.config import LoraSettings
from charter.training.models import peft_config
from charter.training.output import base_model, output_folder, render_card, training_summary
from charter.training.parallel import barrier, sum_over_processes


def test_offline_trainers_start_from_the_same_trl_arguments(tmp_path: Path) -> None:
    from trl import DPOConfig, RewardConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports them lazily

    base = {**offline_args(tmp_path, 7), **device_defaults("cpu", cpu_batch=4, cuda_batch=16)}
    for cls in (RewardConfig, DPOConfig):
        args = build_trl_config(cls, base, {"learning_rate": 1e-4}, "section")
        assert args.output_dir == str(tmp_path)
        assert (args.num_train_epochs, args.logging_steps, args.save_steps, args.save_total_limit) == (1, 10, 100, 2)
        assert (args.seed, args.dataloader_num_workers, args.disable_tqdm) == (7, 0, True)
        assert args.report_to == [] or args.report_to == "none"
        assert (args.eval_strategy.value, args.save_strategy.value) == ("no", "steps")
        assert args.learning_rate == 1e-4 and args.use_cpu and not args.bf16


@pytest.mark.parametrize("name", ["activation_checkpointing", "gradient_checkpointing"])
def test_a_users_checkpointing_setting_wins_over_the_device_default_under_either_name(
    tmp_path: Path, name: str
) -> None:
    """The device defaults turn activation checkpointing off under its new name; transformers reads the old name
    (`gradient_checkpointing`) only where the new one is unset, so the user's setting under either name is kept."""
    from trl import DPOConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    base = {**offline_args(tmp_path, 7), **device_defaults("cpu", cpu_batch=4, cuda_batch=16)}
    assert build_trl_config(DPOConfig, base, {}, "dpo.trl").activation_checkpointing is False
    kwargs = {"use_reentrant": False}
    asked = {name: True, f"{name}_kwargs": kwargs}
    with pytest.warns(FutureWarning) if name == "gradient_checkpointing" else nullcontext():
        args = build_trl_config(DPOConfig, base, asked, "dpo.trl")
    assert args.activation_checkpointing is True and args.gradient_checkpointing is True
    assert args.activation_checkpointing_kwargs == kwargs


def test_online_arguments_log_every_step_and_save_every_50(tmp_path: Path) -> None:
    args = checkpointing_args(tmp_path, 3, logging_steps=1, save_steps=50)
    assert args == {
        "output_dir": str(tmp_path),
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "report_to": "none",
        "seed": 3,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def test_lora_config_for_a_reward_model_and_a_policy() -> None:
    assert peft_config(None, "CAUSAL_LM") is None
    lora = LoraSettings(r=4, alpha=8, dropout=0.1, target_modules=["q_proj"])
    reward = peft_config(lora, "SEQ_CLS", modules_to_save=("score", "classifier"))
    policy = peft_config(lora, "CAUSAL_LM")
    assert (reward.r, reward.lora_alpha, reward.lora_dropout, set(reward.target_modules)) == (4, 8, 0.1, {"q_proj"})
    assert str(reward.task_type).endswith("SEQ_CLS") and set(reward.modules_to_save) >= {"score", "classifier"}
    assert str(policy.task_type).endswith("CAUSAL_LM") and not policy.modules_to_save


def test_output_folders_keep_their_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / STORE_FILE).write_bytes(b"")
    assert reward_output_dir(RewardModelConfig(dataset=str(run))) == run / "reward_model"
    assert dpo_output_dir(DPOConfigModel(dataset=str(run))) == run / "dpo"
    assert reward_output_dir(RewardModelConfig(dataset="prefs.jsonl")) == Path("reward_model")
    assert dpo_output_dir(DPOConfigModel(dataset="prefs.jsonl", output_dir=tmp_path / "x")) == tmp_path / "x"
    config = SimpleNamespace(output_dir=None, dataset=str(run))
    assert output_folder(config, lambda files: files.run_dir / "elsewhere", "here") == run / "elsewhere"


def test_training_summary_puts_a_trainers_own_fields_after_the_device() -> None:
    args = SimpleNamespace(world_size=2, per_device_train_batch_size=4, gradient_accumulation_steps=3)
    trainer = SimpleNamespace(args=args, state=SimpleNamespace(global_step=9))
    result = SimpleNamespace(training_loss=0.5)
    summary = training_summary(trainer, result, 1.234, "/out/checkpoint-5", (20, 4), "cpu", {"bf16": False})
    assert list(summary) == [
        "train_loss",
        "global_step",
        "seconds",
        "resumed_from",
        "train_pairs",
        "held_out_pairs",
        "device",
        "bf16",
        "world_size",
        "per_device_batch_size",
        "gradient_accumulation_steps",
        "effective_batch_size",
    ]
    assert summary["resumed_from"] == "checkpoint-5" and summary["seconds"] == 1.23
    assert summary["effective_batch_size"] == 24


def test_one_process_sums_and_waits_for_itself_alone() -> None:
    barrier()
    assert sum_over_processes(2.5) == 2.5


def test_cards_name_the_hub_base_model_and_the_provenance(tmp_path: Path) -> None:
    assert base_model("minilm-l6") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model("owner/model") == "owner/model"
    assert base_model(str(tmp_path)) is None
    rows = [{"constitution_name": "hhh", "judge_model": "scripted:cai"}]
    card = render_card("DPO policy", "smollm2-135m-instruct", "prefs.jsonl", {"config": {}}, rows, ["dpo"])
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in str(card)
    assert "- constitution_name: hhh" in str(card) and "- judge_model: scripted:cai" in str(card)
