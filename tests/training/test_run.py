"""charter.training.run: the one skeleton every trainer's call follows, and the class data that names a trainer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from charter.dpo.train import DPOTraining
from charter.online.dpo import OnlineDPOTraining
from charter.online.train import TRAININGS, GRPOTraining, RLOOTraining
from charter.reward_model.train import RewardModelTraining
from charter.training.run import CARD_FILE, METRICS_FILE, TrainingRun


@dataclass
class Settings:
    """The fields of a trainer's config the skeleton reads."""

    output_dir: Path
    resume: bool = True
    lora: Any = None


@dataclass
class Saved:
    """Stands for a tokenizer: records where it was saved."""

    folders: list[str] = field(default_factory=list)

    def save_pretrained(self, folder: str) -> None:
        self.folders.append(folder)


class StandInTrainer:
    """The part of a transformers Trainer the skeleton uses, recording what it was asked."""

    def __init__(self, main: bool, log: list[str]) -> None:
        self.main, self.log = main, log
        self.processing_class = Saved()
        self.model = object()
        self.state = SimpleNamespace(global_step=3)

    def train(self, resume_from_checkpoint: str | None = None) -> Any:
        self.log.append(f"train from {Path(resume_from_checkpoint).name if resume_from_checkpoint else None}")
        return SimpleNamespace(training_loss=0.5)

    def save_model(self, folder: str) -> None:
        self.log.append("save")

    def is_world_process_zero(self) -> bool:
        return self.main


class Card:
    def __init__(self, text: str) -> None:
        self.text = text

    def save(self, path: Path) -> None:
        path.write_text(self.text, encoding="utf-8")


class Recorded(TrainingRun[Settings, dict[str, Any]]):
    """A trainer whose every step says when it ran."""

    _name = "Recorded model"
    _tag_names = ["recorded"]

    def __init__(self, config: Settings, main: bool = True) -> None:
        super().__init__(config)
        self.log: list[str] = []
        self.main = main

    def output_dir(self) -> Path:
        self.log.append("output_dir")
        return self.config.output_dir

    def build(self) -> Any:
        self.log.append(f"build in {self.out.name}")
        return StandInTrainer(self.main, self.log)

    def before_training(self, trainer: Any) -> None:
        self.log.append(f"before, resuming {Path(self.resume).name if self.resume else None}")

    def after_training(self, trainer: Any) -> None:
        self.log.append("after")

    def metrics(self, trainer: Any, result: Any) -> dict[str, Any]:
        self.log.append("metrics")
        return {"loss": result.training_loss, "step": trainer.state.global_step}

    def card(self, metrics: dict[str, Any]) -> Any:
        return Card(f"{self._name}: {', '.join(self.tags)}")


def _checkpoint(out: Path, step: int) -> None:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")


def test_a_run_builds_resumes_trains_saves_and_writes_in_that_order(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2)
    run = Recorded(Settings(tmp_path))
    assert run.run() == {"loss": 0.5, "step": 3}
    assert run.log == [
        "output_dir",
        f"build in {tmp_path.name}",
        "before, resuming checkpoint-2",
        "train from checkpoint-2",
        "after",
        "save",
        "metrics",
    ]
    assert json.loads((tmp_path / METRICS_FILE).read_text(encoding="utf-8")) == {"loss": 0.5, "step": 3}
    assert (tmp_path / CARD_FILE).read_text(encoding="utf-8") == "Recorded model: charter, trl, recorded"


def test_resume_false_starts_over_and_only_the_main_process_writes(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2)
    run = Recorded(Settings(tmp_path, resume=False), main=False)
    assert run.run()["step"] == 3
    assert "train from None" in run.log
    assert not (tmp_path / METRICS_FILE).exists() and not (tmp_path / CARD_FILE).exists()


def test_the_skeleton_leaves_its_steps_to_the_trainer(tmp_path: Path) -> None:
    bare = TrainingRun(Settings(tmp_path))
    with pytest.raises(NotImplementedError):
        bare.run()


def test_each_trainer_names_itself_in_class_data_its_card_reads() -> None:
    """The card's title and tags, as the trainers wrote them before they shared one skeleton."""
    named = {
        DPOTraining: ("DPO policy", ["charter", "trl", "dpo"]),
        RewardModelTraining: ("Reward model", ["charter", "trl", "reward-model"]),
        GRPOTraining: ("GRPO (TRL GRPOTrainer)", ["charter", "trl", "grpo", "rlaif"]),
        RLOOTraining: ("RLOO (TRL RLOOTrainer)", ["charter", "trl", "rloo", "rlaif"]),
        OnlineDPOTraining: ("online DPO", ["charter", "trl", "online-dpo", "rlaif"]),
    }
    for cls, (name, tags) in named.items():
        assert cls._name == name and cls.__new__(cls).tags == tags, cls.__name__
    assert {name: cls.trainer for name, cls in TRAININGS.items()} == {"grpo": "grpo", "rloo": "rloo"}
