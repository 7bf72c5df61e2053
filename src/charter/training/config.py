"""Config sections every trainer shares: where the preference pairs come from, LoRA, and the win rate judged during
training."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from charter.judge.modes import DEFAULT_MODE
from charter.judge.settings import PairwiseMode
from charter.providers.config import RoleConfig
from charter.yamlio import ConfigModel, LocatedValueError


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


class WinRateEvalConfig(ConfigModel):
    """The policy's win rate judged during training (`charter.WinRateCallback`): every `every` steps the policy
    answers a fixed prompt set greedily, the judge compares each answer with a reference answer in both orders, and
    the win rate with its Wilson 95% interval (and the length-controlled one) goes into the trainer's logs,
    metrics.json (`winrate_eval`), the report and the model card."""

    prompts: str | list[str]
    """The fixed prompt set: a JSONL/parquet file (`prompt` or `messages` column) or a list of prompt strings."""
    every: int = Field(default=50, ge=1)
    """Judge every this many optimizer steps (never at step 0)."""
    limit: int | None = Field(default=None, gt=0)
    """Use at most this many of the prompts (the first ones; None: all)."""
    max_new_tokens: int = Field(default=128, gt=0)
    """Tokens the policy may write per answer (greedy decoding)."""
    reference: Literal["initial"] | RoleConfig | None = None
    """What the policy's answers are compared with: `initial` (or unset) the policy's own answers before training,
    made once; a model (a model string or role) that answers the prompts once, greedy, through the call cache.
    `reference_column` takes a column of the prompts file instead."""
    reference_column: str | None = None
    """The prompts file's column with the reference answers (instead of `reference`)."""
    judge: RoleConfig | None = None
    """The judge (a model string or role); default: the training's judge (the first of a panel), or the embedded
    model where the training has none."""
    mode: PairwiseMode = DEFAULT_MODE
    """How the judge compares (logprobs, cot, verdict); both orders are always asked."""
    constitution: str | None = None
    """Constitution name or YAML path the judge compares against; default: the training's (`harmless` for DPO)."""
    tie_band: float = Field(default=0.0, ge=0, lt=0.5)
    """A judgment with P(policy better) within this distance of 0.5 is a tie."""
    human_labels: Path | None = None
    """People's verdicts on comparisons judged here (JSONL/parquet): rows of OUTPUT_DIR/winrate_eval/step-N.pairs.jsonl
    with `preferred` (policy, reference or tie) added; a row without `step` applies at every step. Where at least 10
    match an evaluation's comparisons (same prompt and policy answer), the human-corrected (PPI) win rate goes beside
    the judge's. Read before training starts."""

    @model_validator(mode="after")
    def _one_reference(self) -> WinRateEvalConfig:
        if self.reference_column is not None and self.reference not in (None, "initial"):
            raise LocatedValueError("give reference or reference_column, not both", ("reference_column",))
        if self.reference_column is not None and not isinstance(self.prompts, str):
            raise LocatedValueError("reference_column needs prompts given as a file", ("reference_column",))
        return self
