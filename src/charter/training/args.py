"""TRL arguments: the settings every charter trainer starts from, those chosen by device, the user's `trl:` fields on
top, and the checkpoint to resume from."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from charter.errors import ConfigError


def checkpointing_args(out: Path | str, seed: int, logging_steps: int, save_steps: int) -> dict[str, Any]:
    """The TRL/Trainer settings every charter trainer shares: its output folder and seed, checkpoints every
    `save_steps` (the last two kept, to resume from), no reporting, no progress bar, no dataloader workers."""
    return {
        "output_dir": str(out),
        "logging_steps": logging_steps,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 2,
        "report_to": "none",
        "seed": seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def offline_args(out: Path, seed: int) -> dict[str, Any]:
    """The settings the offline trainers (reward model, DPO) share: one epoch, a log line every 10 steps, a
    checkpoint every 100, no evaluation during training."""
    return {
        **checkpointing_args(out, seed, logging_steps=10, save_steps=100),
        "num_train_epochs": 1,
        "eval_strategy": "no",
    }


def device_defaults(device: str, cpu_batch: int, cuda_batch: int) -> dict[str, Any]:
    """TRL/Trainer settings chosen by device. On CPU, bf16 autocast made a DPO step ~8x slower (TRL's
    default is bf16=True), and gradient checkpointing only recomputes the forward pass for memory a
    small model does not need."""
    import torch

    if device == "cuda":
        return {
            "bf16": torch.cuda.is_bf16_supported(),
            "fp16": False,
            "per_device_train_batch_size": cuda_batch,
            "per_device_eval_batch_size": cuda_batch,
            "activation_checkpointing": False,
        }
    return {
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "per_device_train_batch_size": cpu_batch,
        "per_device_eval_batch_size": cpu_batch,
        "activation_checkpointing": False,
        "dataloader_pin_memory": False,
    }


def build_trl_config(cls: type, base: dict[str, Any], overrides: dict[str, Any], where: str) -> Any:
    """A TRL config from our defaults with the user's `trl:` fields on top (`where`: that section's key path, as
    `dpo.trl`). The config checked the fields' names and types when it loaded (`charter.training.trl_fields`); a
    field of the other online trainer's config, or settings TRL refuses together, are one-line errors here, before
    any model loads."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown {cls.__name__} field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
        )
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # trainers ping the Hub on start otherwise
    try:
        return cls(**{**base, **overrides})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-N` folder to resume from, if a previous run left one."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
