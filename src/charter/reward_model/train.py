"""`train_reward_model`: TRL's RewardTrainer on a preference dataset, then evaluation, metrics and a card."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from charter.errors import TrainingError
from charter.reward_model import common, data
from charter.reward_model.config import RewardModelConfig
from charter.reward_model.data import require_dataset
from charter.reward_model.evaluate import RewardScorer, accuracy, distribution, histogram
from charter.runs.files import RunFiles

log = logging.getLogger(__name__)


def output_dir_for(config: RewardModelConfig) -> Path:
    """The configured output folder, or RUN_DIR/reward_model, or ./reward_model."""
    if config.output_dir is not None:
        return Path(config.output_dir)
    run_dir = data.run_dir_of(require_dataset(config))
    return RunFiles(run_dir).reward_model_dir if run_dir else Path("reward_model")


def load_backbone(config: RewardModelConfig) -> tuple[Any, Any]:
    """The sequence-classification model (num_labels=1) and its tokenizer, with one-line errors."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = common.resolve_model(config.model)
    tokenizer = common.load_tokenizer(path, config.model)
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning

        with suppress_seqcls_warning():
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    except Exception as exc:
        raise TrainingError(
            f"{config.model}: cannot be loaded for sequence classification ({type(exc).__name__}: {common._short(exc)})"
        ) from None
    common.ensure_pad_token(tokenizer, model)
    template = config.chat_template or common.default_chat_template(config.model)
    common.apply_chat_template_setting(tokenizer, template, config.model, conversational=True)
    return model, tokenizer


def _peft_config(config: RewardModelConfig) -> Any:
    if config.lora is None:
        return None
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        modules_to_save=["score", "classifier"],
    )


def _trl_args(config: RewardModelConfig, out: Path, device: str) -> Any:
    from trl import RewardConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    base = {
        "output_dir": str(out),
        "num_train_epochs": 1,
        "learning_rate": 5e-5,
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 100,
        "save_total_limit": 2,
        "report_to": "none",
        "eval_strategy": "no",
        "seed": config.seed,
        "max_length": config.max_length,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "remove_unused_columns": True,
        **common.device_defaults(device, cpu_batch=8, cuda_batch=32),
    }
    return common.build_trl_config(RewardConfig, base, config.trl, "reward_model")


def train_reward_model(
    config: RewardModelConfig | dict[str, Any],
    *,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train a reward model and evaluate it; returns the metrics (also written to OUTPUT_DIR/metrics.json).

    `config.dataset` may be a run directory, so the pipeline can call this with its `reward_model:` section.
    """
    config = config if isinstance(config, RewardModelConfig) else RewardModelConfig.model_validate(config)
    out = output_dir_for(config)
    source = require_dataset(config)
    rows = data.read_rows(source, config.dataset_split)
    train_rows_raw, held_raw = data.split_rows(rows, config.eval_fraction, config.seed)
    train_rows = data.to_training_rows(
        train_rows_raw, source, config.margin, config.margin_scale, config.use_calibrated
    )
    held_rows = data.to_training_rows(held_raw, source) if held_raw else []
    device = common.pick_device(config.device)
    model, tokenizer = load_backbone(config)
    trainer = _make_trainer(config, model, tokenizer, train_rows, out, device, list(callbacks))
    resume = common.last_checkpoint(out) if config.resume else None
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    common.finish_shared_datasets(trainer.args, out / common.PREPARED)
    model = save_trained(trainer, tokenizer, out, merge_lora=config.lora is not None)
    training = {
        "train_loss": result.training_loss,
        "global_step": trainer.state.global_step,
        "seconds": round(seconds, 2),
        "resumed_from": Path(resume).name if resume else None,
        "train_pairs": len(train_rows),
        "held_out_pairs": len(held_rows),
        "device": device,
        **common.parallel_settings(trainer.args),
    }
    if not trainer.is_world_process_zero():
        # The main process evaluates and writes (the weights are the same on every rank).
        return {"training": training, "config": config.model_dump(mode="json")}
    metrics = _evaluate(config, model, tokenizer, train_rows, held_rows, out)
    metrics["training"] = training
    metrics["config"] = config.model_dump(mode="json")
    common.write_json(out / "metrics.json", metrics)
    from charter.reward_model.card import write_card

    write_card(out, config, metrics, rows)
    return metrics


def _make_trainer(
    config: RewardModelConfig,
    model: Any,
    tokenizer: Any,
    train_rows: list[dict],
    out: Path,
    device: str,
    callbacks: list[Any],
) -> Any:
    from trl import RewardTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    args = _trl_args(config, out, device)
    peft_config = _peft_config(config)
    train_dataset = common.shared_datasets(args, out / common.PREPARED, {"train": train_rows})["train"]
    try:
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks or None,
        )
    except ValueError as exc:
        raise TrainingError(f"reward model trainer: {common._short(exc)}") from None
    if trainer.train_dataset is None or len(trainer.train_dataset) == 0:  # type: ignore[arg-type]
        raise TrainingError(
            f"{config.dataset}: every pair is longer than max_length={config.max_length} tokens; raise max_length"
        )
    return trainer


def save_trained(trainer: Any, tokenizer: Any, out: Path, merge_lora: bool) -> Any:
    """Save the trained model as a plain transformers folder (LoRA adapters merged in); returns the model.

    Every process calls it (under DeepSpeed ZeRO-3, gathering the weights to save is collective); only the main
    process writes."""
    main = trainer.is_world_process_zero()
    if merge_lora:
        model = trainer.model.merge_and_unload()
        if main:
            model.save_pretrained(str(out))
    else:
        model = trainer.model
        trainer.save_model(str(out))
    if main:
        tokenizer.save_pretrained(str(out))
    return model


def _evaluate(
    config: RewardModelConfig, model: Any, tokenizer: Any, train_rows: list[dict], held_rows: list[dict], out: Path
) -> dict[str, Any]:
    scorer = RewardScorer(model.eval(), tokenizer, config.max_length)
    rows = held_rows or train_rows
    chosen, rejected = scorer.score_pairs(rows)
    metrics: dict[str, Any] = {
        "held_out_accuracy": accuracy(chosen, rejected) if held_rows else None,
        "train_accuracy": accuracy(*scorer.score_pairs(train_rows[:128])),
        "distribution_split": "held_out" if held_rows else "train",
        "reward_chosen": distribution(chosen),
        "reward_rejected": distribution(rejected),
        "mean_reward_gap": (sum(chosen) - sum(rejected)) / len(chosen),
        "human_eval": {},
    }
    png = histogram(
        chosen, rejected, out / "reward_distribution.png", f"rewards on {metrics['distribution_split']} pairs"
    )
    metrics["histogram"] = png.name if png else None
    for path in config.human_eval:
        metrics["human_eval"][str(path)] = human_accuracy(scorer, path)
    return metrics


def human_accuracy(scorer: RewardScorer, path: Path) -> dict[str, Any]:
    """Accuracy on a human-labeled pairs file (evaluation only), overall and per `subset` where present."""
    raw = data.read_rows(path)
    rows = data.to_training_rows(raw, path)
    chosen, rejected = scorer.score_pairs(rows)
    result: dict[str, Any] = {"n": len(rows), "accuracy": accuracy(chosen, rejected)}
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
