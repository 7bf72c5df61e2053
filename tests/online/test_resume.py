"""A resumed `charter train online-dpo|grpo|rloo` counts every pair, reward and step once: after a stop with no
checkpoint (training starts again from step 0 over a store that holds the stopped run's rows), from a checkpoint
older than the store, and from the checkpoint of the last step stored. Each stop is a KeyboardInterrupt raised by a
callback (Ctrl-C), with the rows and the checkpoints written up to it."""

import json
from pathlib import Path

import pytest
import yaml
from transformers import TrainerCallback
from typer.testing import CliRunner

from charter.cli import app
from charter.online.dpo import train_online_dpo
from charter.online.train import train_online
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.online.test_online_dpo_rm import reward_model  # noqa: F401 - a fixture


class _StopAt(TrainerCallback):
    """Ctrl-C once step `step` is trained: at its end (before its checkpoint), or once its checkpoint is saved."""

    def __init__(self, step: int, hook: str = "on_step_end") -> None:
        self.step, self.hook = step, hook

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if self.hook == "on_step_end" and state.global_step == self.step:
            raise KeyboardInterrupt

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if self.hook == "on_save" and state.global_step == self.step:
            raise KeyboardInterrupt


def _status(out: Path) -> tuple[dict, str]:
    runner = CliRunner()
    as_json = runner.invoke(app, ["status", str(out), "--json"])
    text = runner.invoke(app, ["status", str(out)])
    assert as_json.exit_code == 0 and text.exit_code == 0, text.output
    return json.loads(as_json.stdout)["online"], text.output


def _odpo(tmp_path: Path, tiny_model: Path, rm: Path, **trl) -> dict:  # noqa: ANN003
    """The seen case: judge weight 0 beside a reward model, 3 steps of 2 pairs."""
    return {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(6)]},
        "judge": {"model": "scripted:cai", "mode": "verdict"},
        "reward_model": str(rm),
        "judge_weight": 0,
        "cache": None,
        "device": "cpu",
        "output_dir": str(tmp_path / "odpo"),
        "trl": {"max_steps": 3, "per_device_train_batch_size": 2, "max_new_tokens": 8, "temperature": 1.0, **trl},
    }


def _resume_online_dpo(tmp_path: Path, config: dict) -> tuple[Path, dict, str]:
    path = tmp_path / "odpo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "online-dpo", str(path)])
    assert result.exit_code == 0, result.output
    out = Path(config["output_dir"])
    return out, json.loads((out / "metrics.json").read_text()), result.output


def _assert_six_pairs_once(out: Path, metrics: dict, printed: str) -> None:
    steps = [(s["step"], s["pairs"]) for s in metrics["steps"]]
    assert steps == [(1, 2), (2, 2), (3, 2)] and metrics["pairs"] == 6, steps
    masked = metrics["masked"]
    assert metrics["trained"] + masked["failed"] + masked["undecided"] == 6
    assert "  6 pairs: " in printed
    online, text = _status(out)
    assert online["pairs"] == 6 and [s["pairs"] for s in online["per_step"]] == [2, 2, 2]
    assert "3 step(s), 6 pairs" in text
    assert "| pairs | 6: " in (out / "README.md").read_text()
    assert len([r for r in rewards(RunStore(out)) if r.scoring == "pair"]) == 6


def test_online_dpo_stopped_without_a_checkpoint_counts_each_pair_once(
    tiny_model: Path,
    tmp_path: Path,
    reward_model: Path,  # noqa: F811
) -> None:
    config = _odpo(tmp_path, tiny_model, reward_model, save_strategy="no")
    with pytest.raises(KeyboardInterrupt):
        train_online_dpo(config, callbacks=[_StopAt(1)])
    assert RunStore(tmp_path / "odpo").count("rewards") == 2 and not list((tmp_path / "odpo").glob("checkpoint-*"))
    out, metrics, printed = _resume_online_dpo(tmp_path, config)
    assert metrics["training"]["resumed_from"] is None  # no checkpoint: training started again from step 0
    _assert_six_pairs_once(out, metrics, printed)


@pytest.mark.parametrize(("hook", "resumed"), [("on_step_end", "checkpoint-1"), ("on_save", "checkpoint-2")])
def test_online_dpo_resumed_from_a_checkpoint_counts_each_pair_once(
    tiny_model: Path,
    tmp_path: Path,
    reward_model: Path,  # noqa: F811
    hook: str,
    resumed: str,
) -> None:
    """Stopped at the end of step 2: the store holds a step the checkpoint (1) does not; stopped once checkpoint-2
    is saved: both hold steps 1 and 2."""
    config = _odpo(tmp_path, tiny_model, reward_model, save_steps=1)
    with pytest.raises(KeyboardInterrupt):
        train_online_dpo(config, callbacks=[_StopAt(2, hook)])
    out, metrics, printed = _resume_online_dpo(tmp_path, config)
    assert metrics["training"]["resumed_from"] == resumed and metrics["training"]["global_step"] == 3
    _assert_six_pairs_once(out, metrics, printed)


def _online(tmp_path: Path, tiny_model: Path, **trl) -> dict:  # noqa: ANN003
    """3 steps of one prompt's 4 completions, each rated by the judge."""
    return {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(3)]},
        "judge": {"model": "scripted:cai", "rating": "verdict"},
        "cache": None,
        "device": "cpu",
        "output_dir": str(tmp_path / "out"),
        "trl": {"max_steps": 3, "num_generations": 4, "per_device_train_batch_size": 4, "max_completion_length": 8,
                **trl},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("trainer", "trl", "resumed"),
    [("grpo", {"save_strategy": "no"}, None), ("rloo", {"save_steps": 1}, "checkpoint-1")],
)
def test_online_training_resumed_counts_each_reward_once(
    tiny_model: Path, tmp_path: Path, trainer: str, trl: dict, resumed: str | None
) -> None:
    """GRPO stopped after step 1 with no checkpoint; RLOO stopped at the end of step 2 with checkpoint-1."""
    config = _online(tmp_path, tiny_model, **trl)
    with pytest.raises(KeyboardInterrupt):
        train_online(config, trainer, callbacks=[_StopAt(1 if resumed is None else 2)])  # type: ignore[arg-type]
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", trainer, str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["resumed_from"] == resumed
    assert [(s["step"], s["n"]) for s in metrics["steps"]] == [(1, 4), (2, 4), (3, 4)] and metrics["rewards"] == 12
    assert "  12 rewards, " in result.output
    online, text = _status(out)
    assert online["rewards"] == 12 and [s["n"] for s in online["per_step"]] == [4, 4, 4]
    assert "3 step(s) rewarded, 12 rewards" in text
    assert "| rewards | 12, " in (out / "README.md").read_text()
    assert len(list(rewards(RunStore(out)))) == 12


def test_online_dpo_sets_a_checkpoint_cut_short_aside_and_resumes_from_the_one_before(
    tiny_model: Path,
    tmp_path: Path,
    reward_model: Path,  # noqa: F811
) -> None:
    """Killed while checkpoint-2 was saved: its weights and optimizer written, no trainer_state.json."""
    import shutil

    config = _odpo(tmp_path, tiny_model, reward_model, save_steps=1)
    with pytest.raises(KeyboardInterrupt):
        train_online_dpo(config, callbacks=[_StopAt(2)])
    out = tmp_path / "odpo"
    shutil.copytree(out / "checkpoint-1", out / "checkpoint-2")
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    out, metrics, printed = _resume_online_dpo(tmp_path, config)
    assert "checkpoint-2 (set aside as incomplete-checkpoint-2)" in printed and "resuming from checkpoint-1" in printed
    assert (out / "incomplete-checkpoint-2" / "model.safetensors").exists()
    assert metrics["training"]["resumed_from"] == "checkpoint-1" and metrics["training"]["global_step"] == 3
    _assert_six_pairs_once(out, metrics, printed)
