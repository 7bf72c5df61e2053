"""The `dpo:` config section (also a whole file for `charter train dpo`); the `eval:` section is
`charter.evals.winrate.WinrateConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from charter.training.args import checked_trl_fields, dpo_config
from charter.training.config import LoraSettings, TrainingData, WinRateEvalConfig
from charter.yamlio import LocatedValueError

#: The loss types that read label_smoothing (sigmoid as conservative DPO, through charter's soft-label trainer).
SMOOTHING_READERS = ("sigmoid", "robust", "exo_pair", "aot", "aot_unpaired")
#: DPOConfig fields the dpo section sets itself (refused under `trl:`).
CHARTERS_OWN = ("loss_type", "label_smoothing")
#: Why a loss takes a label smoothing below 0.5 only (any other: a label wrong half the time or more).
BELOW_HALF = {
    "sigmoid": "conservative DPO runs as TRL's robust loss at -s / (1 - 2s)",
    "robust": "it divides by 1 - 2 * smoothing",
}
#: TRL 1.16's DPO loss types (DPOConfig.loss_type).
LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)


class DPOConfigModel(TrainingData):
    """Fine-tune a policy with TRL's DPOTrainer on a preference dataset."""

    model: str = "smollm2-135m-instruct"
    """The policy: `smollm2-135m-instruct` (the embedded model, as its cached safetensors folder), a folder or
    a Hub id. Loaded with AutoModelForCausalLM; the reference model is a frozen copy."""
    output_dir: Path | None = None
    """Where the trained policy, metrics.json and README.md go; default RUN_DIR/dpo, else ./dpo."""
    eval_fraction: float = Field(default=0.0, ge=0, lt=1)
    """Share of pairs held out; their reward accuracy and margin are measured before and after training."""
    seed: int = 0
    """Seed for the split and training."""
    probe_pairs: int = Field(default=16, ge=0)
    """Training pairs whose DPO reward margin and accuracy are measured before and after training (0: none). Two
    passes of the policy over them (their reference log-probabilities are those training uses): little beside a real
    run, but as long again as a few tiny CPU steps (the quickstart sets 0)."""
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"])
    """TRL loss type(s): sigmoid (DPO), robust, ipo, hinge, exo_pair, ... Several are combined (trl.loss_weights)."""
    # NaN and infinity reach `_smoothing_is_read`, whose one line says what a smoothing is (not one line per member)
    label_smoothing: Annotated[float, Field(allow_inf_nan=True)] | Literal["judge", "per_row"] = 0.0
    """Label smoothing, the chance a label is wrong. With `loss_type: sigmoid` it makes the loss conservative DPO
    (cDPO: the cross-entropy against the soft label 1 - smoothing, as TRL's sigmoid loss was before 1.0); TRL's
    `robust`, `exo_pair` and `aot` losses read it their own way. `judge`: 1 - mean p_chosen of the training pairs,
    i.e. how often the judge itself expects to be wrong, capped at 0.49. `per_row`: each pair's own 1 - p_chosen
    (capped at 0.49; every row needs p_chosen) in the sigmoid (conservative) or robust loss. The robust loss divides
    by 1 - 2 * smoothing, so there a close call trains hardest; the conservative loss trains it toward an even
    margin. Both measured under label noise in benchmarks/RESULTS.md. A number is at least 0 and below 0.5 for every
    loss that reads it (above 0 for exo_pair): 0.5 would divide by zero in sigmoid and robust, more invert the
    labels."""
    use_calibrated: bool = False
    """With label_smoothing: judge or per_row, use p_chosen_calibrated where rows have it."""
    chat_template: str | None = None
    """A Jinja file or template text for tokenizers without a chat template; default: the tokenizer's own."""
    lora: LoraSettings | None = None
    """Train LoRA adapters through peft instead of all weights; the saved model has them merged in."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: CPU gets fp32 (TRL's default bf16 is ~8x slower there), batch 4, reference log-probs
    computed once before training and torch's fused AdamW (`trl.optim` to change it); CUDA gets bf16 and batch 16.
    Activation checkpointing is off (trl: to enable)."""
    resume: bool = True
    """Resume from the newest checkpoint in output_dir when a previous run was interrupted."""
    winrate_eval: WinRateEvalConfig | None = None
    """Judge the policy's win rate against reference answers every few steps during training (charter's
    `WinRateCallback`; the judge defaults to the embedded model, the constitution to `harmless`): into the trainer's
    logs, metrics.json (`winrate_eval`), the run report and the card."""
    trl: dict[str, Any] = Field(default_factory=dict)
    """TRL DPOConfig / TrainingArguments fields, passed through (beta, learning_rate, num_train_epochs,
    max_length, precompute_ref_log_probs, ...); each checked against DPOConfig's field names and types when the
    config loads (not loss_type and label_smoothing: set them in this section)."""

    @model_validator(mode="after")
    def _smoothing_is_read(self) -> DPOConfigModel:
        """A label smoothing that no chosen loss reads would be ignored in silence, one outside a loss's range would
        divide by zero or train on inverted labels, and sigmoid's (conservative) smoothing cannot be shared with
        another loss's: all refused."""
        if not isinstance(self.label_smoothing, str):
            problem = smoothing_problem(self.loss_type, self.label_smoothing)
            if problem:
                raise LocatedValueError(problem, ("label_smoothing",))
        if self.label_smoothing in (0, 0.0):
            return self
        reads = [loss for loss in self.loss_type if loss in SMOOTHING_READERS]
        if not reads:
            raise LocatedValueError(
                f"TRL's {', '.join(self.loss_type)} loss has no label-smoothing term, so {self.label_smoothing!r} "
                "would be ignored: set loss_type: sigmoid (conservative DPO) or robust, or label_smoothing: 0",
                ("label_smoothing",),
            )
        if "sigmoid" in reads and len(reads) > 1:
            raise LocatedValueError(
                f"loss_type {', '.join(self.loss_type)}: with a label smoothing, sigmoid is conservative DPO and "
                "cannot share it with another loss that reads it: keep one of them",
                ("loss_type",),
            )
        if self.label_smoothing == "per_row" and not set(reads) & {"sigmoid", "robust"}:
            raise LocatedValueError(
                f"label_smoothing: per_row works with loss_type sigmoid (conservative DPO) or robust, not "
                f"{', '.join(self.loss_type)}",
                ("label_smoothing",),
            )
        return self

    @field_validator("trl")
    @classmethod
    def _trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        own = {key: f"set {key} beside trl, not in it (it is one of charter's own fields)" for key in CHARTERS_OWN}
        return checked_trl_fields(value, [dpo_config], own)

    @field_validator("loss_type", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("loss_type")
    @classmethod
    def _known_losses(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in LOSS_TYPES]
        if unknown:
            raise ValueError(f"unknown loss type {', '.join(unknown)} (known: {', '.join(LOSS_TYPES)})")
        return value


def smoothing_problem(losses: list[str], smoothing: float) -> str | None:
    """Why a number is no label smoothing for these losses, or None: a chance a label is wrong is at least 0, below
    0.5 for every loss that reads it (at 0.5 the labels say nothing; `sigmoid` and `robust` divide by zero there),
    and above 0 for `exo_pair` (TRL's EXO takes its log)."""
    if not smoothing >= 0:  # below 0, or nan
        return f"{smoothing} is no chance a label is wrong: a label smoothing is at least 0, and below 0.5"
    for loss in (loss for loss in losses if loss in SMOOTHING_READERS):
        if smoothing >= 0.5:
            why = BELOW_HALF.get(loss, "a label wrong half the time or more has nothing to teach")
            return f"{smoothing} is out of range for loss_type {loss}: it takes 0 <= smoothing < 0.5 ({why})"
        if loss == "exo_pair" and smoothing == 0:
            return "loss_type exo_pair needs a label smoothing above 0 (TRL's EXO takes its log; the paper uses 1e-3)"
    return None
