"""TRL arguments: the settings every charter trainer starts from, those chosen by device, the user's `trl:` fields on
top, and the checkpoint to resume from."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from charter.errors import ConfigError
from charter.training.parallel import is_main_process

log = logging.getLogger(__name__)


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


def online_args(out: Path | str, seed: int) -> dict[str, Any]:
    """The settings the online trainers (GRPO, RLOO, online DPO) share: a log line every step, a checkpoint every 50."""
    return checkpointing_args(out, seed, logging_steps=1, save_steps=50)


def cpu_args(device: str) -> dict[str, Any]:
    """On CPU, the CPU used and no bf16 autocast (TRL's default is bf16=True; it made a DPO step ~8x slower)."""
    return {"bf16": False, "use_cpu": True} if device == "cpu" else {}


def device_defaults(device: str, cpu_batch: int, cuda_batch: int) -> dict[str, Any]:
    """TRL/Trainer settings chosen by device (`cpu_args` on CPU). Gradient checkpointing only recomputes the forward
    pass for memory a small model does not need."""
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
        **cpu_args(device),
        "fp16": False,
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


#: A checkpoint folder as transformers names it (`checkpoint-N`, N its global step).
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
#: What transformers writes last into a checkpoint (Trainer._save_checkpoint): a folder without it was cut short.
STATE_FILE = "trainer_state.json"


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete `checkpoint-N` folder to resume from, if a previous run left one.

    A newer folder that is incomplete (the process was killed while saving it: no readable trainer_state.json,
    which transformers writes last) is set aside, renamed `incomplete-checkpoint-N` (never deleted, and out of reach
    of transformers' checkpoint rotation), with one warning naming it and what training starts from instead."""
    if not output_dir.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), path) for path in output_dir.iterdir() if (m := CHECKPOINT.fullmatch(path.name))),
        reverse=True,
    )
    incomplete: list[Path] = []
    for _, folder in found:
        if not folder.is_dir():
            continue
        if checkpoint_step(folder) is not None:
            _set_aside(incomplete, folder)
            return str(folder)
        incomplete.append(folder)
    _set_aside(incomplete, None)
    return None


def checkpoint_step(folder: str | Path) -> int | None:
    """The global step a checkpoint folder saved, as its trainer_state.json says; None for an incomplete folder."""
    try:
        state = json.loads((Path(folder) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _set_aside(incomplete: list[Path], resumed: Path | None) -> None:
    """Rename the incomplete checkpoints `incomplete-checkpoint-N` (the main process) and say so in one line."""
    if not incomplete or not is_main_process():
        return
    moved = []
    for folder in incomplete:
        target, n = folder.with_name(f"incomplete-{folder.name}"), 1
        while target.exists():  # set aside before: keep that one too
            n += 1
            target = folder.with_name(f"incomplete-{folder.name}.{n}")
        folder.rename(target)
        moved.append(f"{folder.name} (set aside as {target.name})")
    then = f"resuming from {resumed.name}" if resumed is not None else "starting from the beginning"
    log.warning(
        f"{incomplete[0].parent}: incomplete checkpoint{'s' if len(moved) > 1 else ''} {', '.join(moved)}, without a "
        f"readable {STATE_FILE} (saving was cut short); {then}"
    )
