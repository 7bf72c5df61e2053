"""How a training went, in the form every offline trainer's metrics.json shares."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from charter.training.parallel import ParallelSettings, parallel_settings


class TrainingSummary(ParallelSettings):
    """How a training went: loss, steps, time, data sizes, device, and the parallel settings."""

    train_loss: float
    """TRL's mean training loss over the steps this call ran."""
    global_step: int
    """Optimizer steps at the end, those of a checkpoint resumed from included."""
    seconds: float
    """Wall-clock seconds training took, rounded to 0.01."""
    resumed_from: str | None
    """The checkpoint folder training resumed from (`checkpoint-N`); None for a fresh start."""
    train_pairs: int
    """Pairs trained on."""
    held_out_pairs: int
    """Pairs held out for evaluation (`eval_fraction`)."""
    device: str
    """Where training ran: cpu or cuda."""


def training_summary(
    trainer: Any,
    result: Any,
    seconds: float,
    resume: str | None,
    pairs: tuple[int, int],
    device: str,
    details: Mapping[str, Any] = MappingProxyType({}),
) -> TrainingSummary:
    """The summary of a finished `trainer.train()` call.

    Args:
        trainer: The transformers/TRL trainer that trained.
        result: What its `train()` returned (the mean training loss).
        seconds: Wall-clock seconds training took.
        resume: The checkpoint folder training resumed from, or None.
        pairs: Pairs trained on and pairs held out.
        device: Where training ran.
        details: A trainer's own fields, placed after `device` (a subclass of `TrainingSummary` declares them).
    """
    summary = {
        "train_loss": result.training_loss,
        **progress(trainer, seconds, resume),
        "train_pairs": pairs[0],
        "held_out_pairs": pairs[1],
        "device": device,
        **details,
        **parallel_settings(trainer.args),
    }
    return cast(TrainingSummary, summary)


def progress(trainer: Any, seconds: float, resume: str | None) -> dict[str, Any]:
    """How far a training went: its optimizer steps, its seconds (to 0.01), the checkpoint it resumed from."""
    return {
        "global_step": trainer.state.global_step,
        "seconds": round(seconds, 2),
        "resumed_from": Path(resume).name if resume else None,
    }
