from charter.cli import main
from charter.reward_model.train import train_reward_model
from tests.support.tiny_models import preference_rows, write_jsonl


def test_minilm_learns_that_the_polite_answer_wins(tmp_path):
    prefs = write_jsonl(tmp_path / "prefs.jsonl", preference_rows(64, seed=1))
    metrics = train_reward_model(
        {
            "dataset": str(prefs),
            "model": "minilm-l6",
            "output_dir": str(tmp_path / "rm"),
            "eval_fraction": 0.25,
            "trl": {"num_train_epochs": 2, "learning_rate": 1e-4, "save_strategy": "no"},
        }
    )
    assert metrics["training"]["held_out_pairs"] == 16
    assert metrics["held_out_accuracy"] >= 0.85  # chance is 0.5
    assert metrics["reward_chosen"]["mean"] > metrics["reward_rejected"]["mean"]
    assert metrics["training"]["train_pairs"] == 48


def test_cli_train_reward_with_set_overrides(tmp_path, tiny_model, capsys):
    prefs = write_jsonl(tmp_path / "prefs.jsonl", preference_rows(12))
    config = tmp_path / "rm.yaml"
    config.write_text(
        f"dataset: {prefs}\nmodel: {tiny_model}\noutput_dir: {tmp_path / 'out'}\ntrl:\n  save_strategy: 'no'\n"
    )
    assert main(["train", "reward", str(config), "--set", "trl.max_steps=1", "--set", "eval_fraction=0.25"]) == 0
    out = capsys.readouterr().out
    assert f"reward model saved to {tmp_path / 'out'}" in out and "held_out_accuracy" in out
    assert (tmp_path / "out" / "metrics.json").exists()
