import json

import pytest
import torch

from charter.dpo.config import DPOConfigModel
from charter.dpo.train import label_smoothing_for, train_dpo
from charter.errors import ConfigError, DatasetError, TrainingError
from tests.support.tiny_models import preference_rows, tiny_llama, write_jsonl

FAST = {
    "max_steps": 2,
    "save_strategy": "no",
    "logging_steps": 1,
    "per_device_train_batch_size": 4,
    "learning_rate": 1e-3,
}


def test_tiny_dpo_with_robust_loss_and_judge_label_smoothing(tmp_path, tiny_model, prefs_file):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "dpo"
    metrics = train_dpo(
        {
            "dataset": str(prefs_file),
            "model": str(tiny_model),
            "output_dir": str(out),
            "loss_type": "robust",
            "label_smoothing": "judge",
            "eval_fraction": 0.25,
            "probe_pairs": 4,
            "trl": FAST,
        }
    )
    rows = [json.loads(line) for line in prefs_file.read_text().splitlines()]
    assert metrics["loss_type"] == ["robust"]
    assert 0.05 < metrics["label_smoothing"] < 0.4  # 1 - mean p_chosen of the training pairs
    # charter's device defaults: bfloat16 on a GPU that has it, never on CPU (8x slower there)
    on_gpu = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert metrics["training"]["global_step"] == 2 and metrics["training"]["bf16"] is on_gpu
    assert set(metrics["after"]) == {"train_pairs", "held_out"}
    assert metrics["before"]["train_pairs"]["rewards/margins"] == pytest.approx(0.0, abs=1e-5)  # policy == reference
    assert "rewards/accuracies" in metrics["after"]["held_out"]
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2
    assert "dpo" in (out / "README.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["training"]["train_pairs"] == len(rows) - 6


def test_label_smoothing_from_judge_confidence():
    rows = [{"p_chosen": 0.9}, {"p_chosen": 0.7}]
    config = DPOConfigModel(dataset="x.jsonl", loss_type="robust", label_smoothing="judge")
    assert label_smoothing_for(config, rows) == pytest.approx(0.2)
    smoothed = DPOConfigModel(dataset="x.jsonl", loss_type="robust", label_smoothing=0.1)
    assert label_smoothing_for(smoothed, rows) == 0.1
    with pytest.raises(DatasetError, match="needs a p_chosen column"):
        label_smoothing_for(config, [{"prompt": "q"}])


def test_lora_policy_is_saved_merged(tmp_path, tiny_model, prefs_file):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    metrics = train_dpo(
        {
            "dataset": str(prefs_file),
            "model": str(tiny_model),
            "output_dir": str(out),
            "probe_pairs": 0,
            "lora": {"r": 4, "alpha": 8},
            "trl": FAST,
        }
    )
    assert metrics["training"]["global_step"] == 2
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_trl_fields_pass_through_and_typos_are_one_line(tmp_path, tiny_model, prefs_file):
    base = {"dataset": str(prefs_file), "model": str(tiny_model), "output_dir": str(tmp_path / "o"), "probe_pairs": 0}
    with pytest.raises(ConfigError, match=r"^config: trl.betta: unknown DPOConfig field \(did you mean 'beta'\?\)$"):
        train_dpo({**base, "trl": {"betta": 0.2}})
    with pytest.raises(ConfigError, match=r"^config: trl.loss_type: set loss_type beside trl, not in it"):
        train_dpo({**base, "trl": {"loss_type": "ipo"}})
    metrics = train_dpo({**base, "trl": {**FAST, "beta": 0.3, "max_steps": 1}})
    assert metrics["beta"] == 0.3


def test_unknown_loss_type_is_rejected():
    with pytest.raises(ValueError, match="unknown loss type nope"):
        DPOConfigModel(dataset="x.jsonl", loss_type=["sigmoid", "nope"])


def test_tokenizer_without_chat_template_is_one_line(tmp_path, prefs_file):
    folder = tiny_llama(tmp_path / "plain", chat_template=None)
    with pytest.raises(TrainingError, match="no chat template"):
        train_dpo({"dataset": str(prefs_file), "model": str(folder)})


def test_missing_columns_and_empty_dataset(tmp_path, tiny_model):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a"}])
    with pytest.raises(DatasetError, match=r"missing column rejected; expected TRL preference format"):
        train_dpo({"dataset": str(bad), "model": str(tiny_model)})
    empty = tmp_path / "empty.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), empty)
    with pytest.raises(DatasetError, match="the dataset is empty"):
        train_dpo({"dataset": str(empty), "model": str(tiny_model)})


@pytest.mark.slow
def test_real_smollm2_dpo_raises_the_reward_margin_on_training_pairs(tmp_path):
    rows = preference_rows(4, seed=3)
    prefs = write_jsonl(tmp_path / "prefs.jsonl", rows)
    metrics = train_dpo(
        {
            "dataset": str(prefs),
            "output_dir": str(tmp_path / "dpo"),
            "probe_pairs": 4,
            "trl": {
                "max_steps": 2,
                "save_strategy": "no",
                "learning_rate": 3e-5,
                "per_device_train_batch_size": 4,
                "max_length": 96,
            },
        }
    )
    before, after = metrics["before"]["train_pairs"], metrics["after"]["train_pairs"]
    assert after["rewards/margins"] > before["rewards/margins"] + 0.1
    assert after["logps/chosen"] - after["logps/rejected"] > before["logps/chosen"] - before["logps/rejected"]
    assert after["loss"] < before["loss"]


def test_a_smoothing_no_chosen_loss_reads_is_refused(tmp_path):
    """IPO has no label-smoothing term: a smoothing with it would be ignored in silence (sigmoid reads it: cDPO)."""
    from charter.errors import ConfigError
    from charter.yamlio import load_model

    path = tmp_path / "dpo.yaml"
    path.write_text("dataset: x.jsonl\nloss_type: ipo\nlabel_smoothing: judge\n")
    with pytest.raises(ConfigError, match="label_smoothing: TRL's ipo loss has no label-smoothing term"):
        load_model(DPOConfigModel, path)
    assert DPOConfigModel(dataset="x.jsonl", label_smoothing=0.1).label_smoothing == 0.1


def test_probe_of_training_pairs_reuses_the_reference_log_probs_of_training(tmp_path, tiny_model, prefs_file):
    """The `train_pairs` probe is a prefix of TRL's prepared training set: one reference pass over the training pairs
    (not a second over the probe's), and the probe's reference log-probs are those training used."""
    from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage]

    passes: list[tuple[str, int]] = []
    original = DPOTrainer._precompute_ref_logps

    def counted(self, dataset, name, batch_size):
        passes.append((name, len(dataset)))
        return original(self, dataset, name, batch_size)

    config = {"dataset": str(prefs_file), "model": str(tiny_model), "probe_pairs": 5, "device": "cpu",
              "trl": {**FAST, "precompute_ref_log_probs": True, "max_steps": 1}}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DPOTrainer, "_precompute_ref_logps", counted)
        metrics = train_dpo({**config, "output_dir": str(tmp_path / "a")})
    assert passes == [("train", 24)]
    before = metrics["before"]["train_pairs"]
    assert before["rewards/margins"] == pytest.approx(0.0, abs=1e-5)  # the policy before training is the reference
    # the same probe with the reference computed on the fly, in every step: the same log-probs before training
    fly = train_dpo(
        {**config, "output_dir": str(tmp_path / "b"), "trl": {**config["trl"], "precompute_ref_log_probs": False}}
    )
    for key in ("logps/chosen", "logps/rejected", "loss"):
        assert fly["before"]["train_pairs"][key] == pytest.approx(before[key], rel=1e-4)


def test_cpu_updates_with_torchs_fused_adamw_unless_trl_says_otherwise(tmp_path, tiny_model):
    """On CPU torch's fused AdamW updates in one pass (faster than the default foreach one); `trl.optim` overrides."""
    from charter.dpo.train import make_trainer
    from charter.training import data

    rows = data.to_training_rows(preference_rows(4), "prefs.jsonl")
    for trl, fused in (({}, True), ({"optim": "adamw_torch"}, False)):
        config = DPOConfigModel(dataset="prefs.jsonl", model=str(tiny_model), device="cpu", trl={**FAST, **trl})
        trainer = make_trainer(config, rows, {}, tmp_path / "o", "cpu", 0.0)
        trainer.create_optimizer()
        assert bool(trainer.optimizer.defaults.get("fused")) is fused
