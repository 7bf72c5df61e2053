"""Config sections every trainer shares: where the preference pairs come from, and LoRA."""

from __future__ import annotations

from pydantic import Field

from charter.yamlio import ConfigModel


class LoraSettings(ConfigModel):
    """LoRA through peft: train small adapters instead of every weight."""

    r: int = Field(default=16, gt=0)
    """Adapter rank."""
    alpha: int = Field(default=32, gt=0)
    """Adapter scaling (lora_alpha)."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the adapter input."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or `all-linear`."""


class TrainingData(ConfigModel):
    """Where a trainer's preference pairs come from (the reward-model and DPO sections share it)."""

    dataset: str | None = None
    """A run directory (its data/preferences.parquet), a .parquet/.jsonl file, or a Hub dataset name. Required,
    except in a run config, where it is that run."""
    dataset_split: str = "train"
    """Split to load when `dataset` is a Hub dataset name."""
