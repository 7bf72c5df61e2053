import json
import math

import pytest
from transformers import TrainerCallback

from charter.errors import DatasetError, TrainingError
from charter.reward_model.scorer import RewardScorer
from charter.reward_model.train import train_reward_model
from charter.training import data
from tests.support.tiny_models import preference_rows, tiny_llama, write_jsonl

FAST = {"max_steps": 3, "save_strategy": "no", "logging_steps": 1, "per_device_train_batch_size": 4}


def test_tiny_reward_model_trains_evaluates_and_writes_outputs(tmp_path, tiny_model, prefs_file):
    human = tmp_path / "human.jsonl"
    write_jsonl(
        human,
        [
            {
                "prompt": "Help with the bus please",
                "chosen": "Thank you, happy to help",
                "rejected": "No figure it out",
                "subset": "helpful",
            }
        ]
        * 3,
    )
    out = tmp_path / "rm"
    metrics = train_reward_model(
        {
            "dataset": str(prefs_file),
            "model": str(tiny_model),
            "output_dir": str(out),
            "eval_fraction": 0.25,
            "margin": "logit",
            "human_eval": [str(human)],
            "trl": FAST,
        }
    )
    assert metrics["training"]["train_pairs"] == 18 and metrics["training"]["held_out_pairs"] == 6
    assert metrics["training"]["global_step"] == 3
    assert 0 <= metrics["held_out_accuracy"] <= 1
    assert metrics["reward_chosen"]["n"] == 6 and set(metrics["reward_chosen"]["quantiles"]) == {
        "0.05",
        "0.25",
        "0.5",
        "0.75",
        "0.95",
    }
    assert metrics["human_eval"][str(human)]["n"] == 3
    assert metrics["human_eval"][str(human)]["by_subset"]["helpful"]["n"] == 3
    assert json.loads((out / "metrics.json").read_text())["held_out_accuracy"] == metrics["held_out_accuracy"]
    card = (out / "README.md").read_text()
    assert "reward-model" in card and "held_out_accuracy" in card and "constitution_name: polite" in card
    assert (out / "reward_distribution.png").stat().st_size > 1000
    scorer = RewardScorer.load(out, device="cpu")
    rows = data.to_training_rows(preference_rows(2), "x")
    chosen, rejected = scorer.score_pairs(rows)
    assert len(chosen) == len(rejected) == 2 and all(math.isfinite(v) for v in chosen + rejected)


def test_a_missing_human_eval_file_fails_before_training(tmp_path, tiny_model, prefs_file):
    class Started(TrainerCallback):
        began = False

        def on_train_begin(self, args, state, control, **kwargs):
            Started.began = True

    out, missing = tmp_path / "rm", tmp_path / "no-such-human.jsonl"
    config = {"dataset": str(prefs_file), "model": str(tiny_model), "output_dir": str(out), "trl": FAST}
    with pytest.raises(DatasetError, match="no-such-human.jsonl"):
        train_reward_model({**config, "human_eval": [str(missing)]}, callbacks=[Started()])
    assert not Started.began and not out.exists()


def test_judge_confidence_becomes_the_margin():
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": 0.8, "margin": 0.6, "p_chosen_calibrated": 0.9}]
    assert data.to_training_rows(rows, "x", "off")[0].keys() == {"prompt", "chosen", "rejected"}
    assert data.to_training_rows(rows, "x", "margin")[0]["margin"] == pytest.approx(0.6)
    assert data.to_training_rows(rows, "x", "logit", 2.0)[0]["margin"] == pytest.approx(2 * math.log(4))
    assert data.to_training_rows(rows, "x", "margin", calibrated=True)[0]["margin"] == pytest.approx(0.8)
    converted = data.to_training_rows(rows, "x")[0]
    assert converted["prompt"] == [{"role": "user", "content": "q"}]
    assert converted["chosen"] == [{"role": "assistant", "content": "a"}]


def test_run_directory_is_a_dataset_source(tmp_path):
    from tests.support.rundir import RunBuilder

    with RunBuilder(tmp_path / "run") as run:
        for i in range(3):
            run.pair(f"p{i}", f"q{i}", f"answer {i}", f"other {i}")
            run.judgment(f"p{i}", 0.8)
        run.write_dataset()
    rows = data.read_rows(tmp_path / "run")
    assert len(rows) == 3 and rows[0]["run_id"] == "run-test-0001"
    assert data.run_dir_of(tmp_path / "run") == tmp_path / "run"
    assert data.run_dir_of(tmp_path / "run" / "data" / "preferences.parquet") == tmp_path / "run"


class _Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path, tiny_model, prefs_file):
    config = {
        "dataset": str(prefs_file),
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "rm"),
        "eval_fraction": 0,
        "trl": {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4},
    }
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(config, callbacks=[_Interrupt()])
    assert (tmp_path / "rm" / "checkpoint-2").is_dir()
    metrics = train_reward_model(config)
    assert metrics["training"]["resumed_from"] == "checkpoint-2"
    assert metrics["training"]["global_step"] == 4
    assert metrics["held_out_accuracy"] is None and metrics["distribution_split"] == "train"


def test_an_empty_checkpoint_folder_is_set_aside_and_training_starts_over(tmp_path, tiny_model, prefs_file, capsys):
    """A process killed as it began saving checkpoint-1 leaves the folder empty: the rerun sets it aside, kept."""
    import yaml

    from charter.cli import main

    out = tmp_path / "rm"
    (out / "checkpoint-1").mkdir(parents=True)
    config = {"dataset": str(prefs_file), "model": str(tiny_model), "output_dir": str(out), "trl": FAST}
    path = tmp_path / "rm.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "reward", str(path)]) == 0
    err = capsys.readouterr().err
    assert "checkpoint-1 (set aside as incomplete-checkpoint-1)" in err and "starting from the beginning" in err
    assert "Traceback" not in err and (out / "incomplete-checkpoint-1").is_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["resumed_from"] is None and metrics["training"]["global_step"] == 3


def test_missing_columns_name_the_columns_and_the_format(tmp_path, tiny_model):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "answer": "a"}])
    with pytest.raises(DatasetError) as err:
        train_reward_model({"dataset": str(bad), "model": str(tiny_model)})
    message = str(err.value)
    assert "missing columns chosen, rejected" in message and "prompt, chosen, rejected" in message
    assert "\n" not in message


def test_logit_margin_needs_p_chosen(tmp_path, tiny_model):
    rows = [{k: v for k, v in r.items() if k not in ("p_chosen",)} for r in preference_rows(4)]
    with pytest.raises(DatasetError, match="missing column p_chosen"):
        train_reward_model(
            {"dataset": str(write_jsonl(tmp_path / "p.jsonl", rows)), "model": str(tiny_model), "margin": "logit"}
        )


def test_empty_dataset_is_one_line(tmp_path, tiny_model):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match="the dataset is empty"):
        train_reward_model({"dataset": str(empty), "model": str(tiny_model)})


def test_invalid_jsonl_names_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{oops\n')
    with pytest.raises(DatasetError, match=r"broken.jsonl:2:\d+: invalid JSON"):
        data.read_rows(path)


def test_backbone_without_sequence_classification_is_one_line(tmp_path, tiny_model, prefs_file):
    from transformers import ViTConfig

    folder = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(folder)
    from tests.support.tiny_models import tiny_tokenizer

    tiny_tokenizer().save_pretrained(folder)
    with pytest.raises(TrainingError, match="cannot be loaded for sequence classification"):
        train_reward_model({"dataset": str(prefs_file), "model": str(folder)})


def test_tokenizer_without_chat_template_is_one_line(tmp_path, prefs_file):
    folder = tiny_llama(tmp_path / "plain", chat_template=None)
    with pytest.raises(TrainingError, match="no chat template.*chat_template: plain"):
        train_reward_model({"dataset": str(prefs_file), "model": str(folder)})


def test_unknown_trl_field_is_one_line(tmp_path, tiny_model, prefs_file):
    from charter.errors import ConfigError

    said = r"^config: trl.num_epochs_typo: unknown RewardConfig field \(did you mean 'num_train_epochs'\?\)$"
    with pytest.raises(ConfigError, match=said):
        train_reward_model(
            {
                "dataset": str(prefs_file),
                "model": str(tiny_model),
                "output_dir": str(tmp_path / "o"),
                "trl": {"num_epochs_typo": 1},
            }
        )
