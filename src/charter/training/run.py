"""The one skeleton of charter's trainers (reward model, DPO, online DPO, GRPO/RLOO): one call, read top to bottom.

`TrainingRun.run` builds TRL's trainer (the subclass: data, device, TRL's config, the model), resumes from the newest
complete checkpoint, trains, saves the model (every process: gathering the weights may be collective), makes the
metrics (every process) and, on the main process, writes metrics.json and the model card (README.md). A subclass
names what it trains as TRL's trainers do, in class data its card reads: `_name` and `_tag_names`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from charter.training import data
from charter.training.args import last_checkpoint
from charter.training.data import require_dataset
from charter.training.output import save_trained, write_json


class TrainingConfig(Protocol):
    """What the skeleton reads of a trainer's config."""

    @property
    def resume(self) -> bool: ...
    @property
    def lora(self) -> Any: ...


class PairsConfig(TrainingConfig, Protocol):
    """What an offline trainer's skeleton reads besides: where its preference pairs are, and how to split them."""

    @property
    def dataset(self) -> str | None: ...
    @property
    def dataset_split(self) -> str: ...
    @property
    def eval_fraction(self) -> float: ...
    @property
    def seed(self) -> int: ...


C = TypeVar("C", bound=TrainingConfig)
P = TypeVar("P", bound=PairsConfig)
R = TypeVar("R")

#: The file of a trainer's metrics in its output folder.
METRICS_FILE = "metrics.json"
#: The file of a trainer's model card in its output folder.
CARD_FILE = "README.md"


class TrainingRun(Generic[C, R]):
    """One training call: `config` (a loaded config model with `resume` and `lora`), extra transformers callbacks."""

    #: What the card calls the trained model (as TRL trainers' `_name`).
    _name: ClassVar[str]
    #: The card's tags beside charter's own (as TRL trainers' `_tag_names`).
    _tag_names: ClassVar[list[str]]

    def __init__(self, config: C, callbacks: Sequence[Any] = ()) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.resume: str | None = None
        self.seconds = 0.0
        self.model: Any = None

    @functools.cached_property
    def out(self) -> Path:
        """The output folder (worked out when first needed, so that a trainer checks what it must before)."""
        return self.output_dir()

    @property
    def tags(self) -> list[str]:
        """The card's tags: charter's own and the trainer's."""
        return ["charter", "trl", *self._tag_names]

    def run(self) -> R:
        """Build, resume, train, save, measure; the main process writes the metrics and the card."""
        trainer = self.build()
        self.resume = last_checkpoint(self.out) if self.config.resume else None
        self.before_training(trainer)
        started = time.perf_counter()
        result = self.train(trainer)
        self.seconds = time.perf_counter() - started
        self.after_training(trainer)
        self.model = save_trained(trainer, trainer.processing_class, self.out, merge_lora=self.config.lora is not None)
        metrics = self.metrics(trainer, result)
        if trainer.is_world_process_zero():
            self.write(metrics)
        return self.finish(trainer, metrics)

    def output_dir(self) -> Path:
        """Where the model, its checkpoints, metrics and card go."""
        raise NotImplementedError

    def build(self) -> Any:
        """TRL's trainer, ready to train: its data, device and config (TRL's refusals before the model loads)."""
        raise NotImplementedError

    def before_training(self, trainer: Any) -> None:
        """What must happen once `self.resume` is known, before training starts."""

    def train(self, trainer: Any) -> Any:
        """TRL's `train()`, from the checkpoint resumed from."""
        return trainer.train(resume_from_checkpoint=self.resume)

    def after_training(self, trainer: Any) -> None:
        """What must happen after training, before the model is saved (every process)."""

    def metrics(self, trainer: Any, result: Any) -> R:
        """The metrics, on every process (`result`: what `train` returned)."""
        raise NotImplementedError

    def card(self, metrics: R) -> Any:
        """The model card (a huggingface_hub ModelCard), main process."""
        raise NotImplementedError

    def write(self, metrics: R) -> None:
        """Write metrics.json and the card (main process)."""
        write_json(self.out / METRICS_FILE, metrics)
        self.card(metrics).save(self.out / CARD_FILE)

    def finish(self, trainer: Any, metrics: R) -> R:
        """The call's result, once everything is written."""
        return metrics


class PairsRun(TrainingRun[P, R]):
    """An offline trainer (reward model, DPO): it trains on the preference pairs of `config.dataset`."""

    def read_pairs(self, training_rows: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Read the dataset's rows (`self.rows`, from `self.source`) and split them; TRL rows of the training part
        by `training_rows` (`self.train_rows`), then of the held-out part (`self.held_rows`). Returns the training
        part as read."""
        config = self.config
        self.source = require_dataset(config)
        self.rows = data.read_rows(self.source, config.dataset_split)
        train_raw, held_raw = data.split_rows(self.rows, config.eval_fraction, config.seed)
        self.train_rows = training_rows(train_raw)
        self.held_rows = data.to_training_rows(held_raw, self.source) if held_raw else []
        return train_raw
