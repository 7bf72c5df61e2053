"""`train_dpo`: TRL's DPOTrainer on a preference dataset, with metrics before/after and a model card."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from charter.api_args import ConfigArg, public
from charter.dpo.config import DPOConfigModel
from charter.errors import DatasetError, TrainingError
from charter.evals.callback import DEFAULT_CACHE, callback_for, evaluations
from charter.evals.during import WinRateEval, evaluation_lines
from charter.training import data
from charter.training.args import build_trl_config, device_defaults, dpo_config, offline_args
from charter.training.models import load_policy, peft_config, pick_device, short_error
from charter.training.output import TrainingSummary, output_folder, render_card, training_summary
from charter.training.parallel import PREPARED, finish_shared_datasets, shared_datasets
from charter.training.run import PairsRun
from charter.yamlio import config_from

KEPT_METRICS = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "rewards/chosen",
    "rewards/rejected",
    "logps/chosen",
    "logps/rejected",
)

#: Probe set (`train_pairs`, `held_out`) -> TRL's eval metric (one of KEPT_METRICS, those TRL logged) -> value.
ProbeMetrics = dict[str, dict[str, float]]


class DPOTrainingSummary(TrainingSummary):
    """How a DPO training went: the summary every trainer writes, plus the precision and batch size."""

    bf16: bool
    """Whether training ran in bfloat16 (on a GPU that has it; never on CPU)."""
    batch_size: int
    """Training pairs per process in one forward pass (as `per_device_batch_size`)."""


class DPOMetrics(TypedDict):
    """What `train_dpo` returns and writes to OUTPUT_DIR/metrics.json (the main process writes)."""

    before: ProbeMetrics
    """TRL's DPO eval metrics per probe set on the policy before training: loss, rewards/margins,
    rewards/accuracies, rewards/chosen, rewards/rejected, logps/chosen, logps/rejected. {} when training resumed
    from a checkpoint, or with no probe set (`probe_pairs` 0 and nothing held out)."""
    after: ProbeMetrics
    """The same metrics after training."""
    label_smoothing: float
    """The label smoothing trained with (`judge`: 1 - mean p_chosen of the training pairs, at most 0.49)."""
    loss_type: list[str]
    """TRL's loss type(s) trained with."""
    beta: float
    """DPO's beta (TRL's DPOConfig.beta, 0.1 unless `trl.beta` sets it)."""
    training: DPOTrainingSummary
    """How training went."""
    winrate_eval: list[WinRateEval]
    """The win rate judged during training (the `winrate_eval` section), per evaluation step; [] without one."""
    config: dict[str, Any]
    """The `DPOConfigModel` trained with, as JSON."""


def output_dir_for(config: DPOConfigModel) -> Path:
    """The configured output folder, or RUN_DIR/dpo, or ./dpo."""
    return output_folder(config, lambda files: files.dpo_dir, "dpo")


def label_smoothing_for(config: DPOConfigModel, rows: list[dict[str, Any]]) -> float:
    """The label smoothing to use; `judge` is 1 - mean p_chosen (the judge's own expected error rate)."""
    if config.label_smoothing not in ("judge", "per_row"):
        return float(config.label_smoothing)
    mean = data.mean_p_chosen(rows, config.use_calibrated, config.dataset or "dataset")
    if mean is None:
        raise DatasetError(f"{config.dataset}: label_smoothing: {config.label_smoothing} needs a p_chosen column")
    return min(max(1.0 - mean, 0.0), 0.49)


def add_row_smoothing(config: DPOConfigModel, raw: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """With `label_smoothing: per_row`, each training row's own smoothing, 1 - p_chosen (calibrated where asked)."""
    from charter.dpo.soft import COLUMN, row_smoothing

    if config.label_smoothing != "per_row":
        return
    for index, (source, row) in enumerate(zip(raw, rows)):
        where = f"{config.dataset}: row {index + 1}"
        p = data.judge_p(source, config.use_calibrated, where)
        if p is None:
            raise DatasetError(f"{where}: label_smoothing: per_row needs p_chosen on every row")
        row[COLUMN] = row_smoothing(p)


def _trl_args(config: DPOConfigModel, out: Path, device: str, smoothing: float) -> Any:
    base = {
        **offline_args(out, config.seed),
        "learning_rate": 5e-6,
        "beta": 0.1,
        "max_length": 512,
        "loss_type": config.loss_type,
        "label_smoothing": smoothing,
        **device_defaults(device, cpu_batch=4, cuda_batch=16),
    }
    if device == "cpu":
        # The reference forward in every step cost as much as the policy's forward+backward on CPU
        # (benchmarks/RESULTS.md); one batched pass before training costs less and frees the reference copy.
        # torch's fused AdamW updates in one pass: about 18% less CPU per update of 2 pairs than the default (foreach)
        # one for SmolLM2-135M, at the same peak (benchmarks/RESULTS.md).
        base.update(precompute_ref_log_probs=True, precompute_ref_batch_size=16, optim="adamw_torch_fused")
    return build_trl_config(dpo_config(), base, config.trl, "dpo.trl")


def make_trainer(
    config: DPOConfigModel,
    train_rows: list[dict],
    eval_sets: dict[str, list[dict]],
    out: Path,
    device: str,
    smoothing: float,
    callbacks: Sequence[Any] = (),
    probe_pairs: int = 0,
) -> Any:
    """A DPOTrainer over our rows (the policy loaded here, the reference a frozen copy made by TRL).

    `probe_pairs`: the first so many training pairs become the eval set `train_pairs`, taken from TRL's own prepared
    training set: tokenized once, and with `precompute_ref_log_probs` carrying the reference log-probabilities TRL
    computed for training (a separate eval set cost one more reference pass over the same pairs)."""
    from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    from charter.dpo.soft import SoftLabelDPOTrainer

    # the soft-label trainer for per-row smoothing, and for sigmoid's smoothing (conservative DPO, no branch in TRL)
    soft = config.label_smoothing == "per_row" or ("sigmoid" in config.loss_type and smoothing)
    trainer_class = SoftLabelDPOTrainer if soft else DPOTrainer
    args = _trl_args(config, out, device, smoothing)  # TRL's refusals first: before the policy loads
    model, tokenizer, _ = load_policy(config.model, config.chat_template)
    sets = shared_datasets(args, out / PREPARED, {"train": train_rows, **{n: r for n, r in eval_sets.items() if r}})
    train_dataset = sets.pop("train")
    try:
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=sets or None,
            processing_class=tokenizer,
            peft_config=peft_config(config.lora, "CAUSAL_LM"),
            callbacks=list(callbacks) or None,
        )
    except ValueError as exc:
        raise TrainingError(f"dpo trainer: {short_error(exc)}") from None
    if len(trainer.train_dataset) == 0:
        raise TrainingError(f"{config.dataset}: every prompt is longer than max_length; raise dpo.trl.max_length")
    if probe_pairs:
        probe = trainer.train_dataset.select(range(min(probe_pairs, len(trainer.train_dataset))))
        held = cast(dict[str, Any], trainer.eval_dataset or {})  # named sets, as passed above
        trainer.eval_dataset = {"train_pairs": probe, **held}
    return trainer


def _probe(trainer: Any) -> ProbeMetrics:
    """TRL's eval metrics (reward margin, accuracy, log-probs) per eval set, reduced to the ones worth keeping.

    TRL logs its DPO metrics rather than returning them, so they are read back from the log history."""
    result: ProbeMetrics = {}
    for name in trainer.eval_dataset or {}:
        returned = trainer.evaluate(eval_dataset=name, metric_key_prefix=f"eval_{name}")
        logged = trainer.state.log_history[-1] if trainer.state.log_history else {}
        values = {k: logged.get(f"eval_{k}") for k in KEPT_METRICS if k != "loss"}
        values["loss"] = returned.get(f"eval_{name}_loss")
        result[name] = {k: v for k, v in values.items() if v is not None}
    return result


def _probe_at_start(trainer: Any, wanted: bool) -> Any:
    """A callback that probes the policy when training begins, after the trainer has prepared the model.

    Evaluating before `train()` instead prepares the model for evaluation and marks it prepared, and `train()`
    then skips the DistributedDataParallel wrap: under torchrun every rank trained on its own batches with its
    own gradients (transformers 5.23, accelerate 1.15; tests/dpo/test_distributed.py caught it)."""
    from transformers import TrainerCallback

    class ProbeAtStart(TrainerCallback):
        def __init__(self) -> None:
            self.result: ProbeMetrics = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if wanted and state.global_step == 0:
                self.result = _probe(trainer)

    callback = ProbeAtStart()
    trainer.add_callback(callback)
    return callback


@public
def train_dpo(config: ConfigArg[DPOConfigModel], *, callbacks: Sequence[Any] = ()) -> DPOMetrics:
    """DPO-train the policy; returns the metrics (also in OUTPUT_DIR/metrics.json).

    The saved folder is a plain transformers model (LoRA merged), usable as `local:OUTPUT_DIR`, with a model card
    (README.md). `config.dataset` may be a run directory. Under torchrun or `accelerate launch` every process
    trains and returns the metrics; only the main one writes.

    Args:
        config: The `dpo` settings, as a `DPOConfigModel`, a dict of its fields or a YAML file (as `charter train
            dpo` takes).
        callbacks: transformers `TrainerCallback`s added to TRL's DPOTrainer.

    Returns:
        The metrics: TRL's DPO metrics on the probe sets before and after training, the loss settings, the
        training summary and the config.

    Raises:
        ConfigError: `config` (a dict or a YAML file) is not a valid `DPOConfigModel`, or the file cannot be read.
        ArgumentError: `config` is neither a config, a dict nor a path.
        ConfigError: `dataset` is unset, or a `trl` field is unknown to TRL's DPOConfig or has a bad value.
        DatasetError: The dataset cannot be read, is empty, lacks a column, or has a row that is not a preference
            pair; `label_smoothing: judge` and no p_chosen column.
        TrainingError: CUDA was asked for but is missing; the policy or its tokenizer cannot be loaded, or the
            tokenizer has no chat template; `trl` sets loss_type or label_smoothing (charter's own fields); TRL
            refuses the settings; every prompt is longer than max_length.
        Interrupted: A callback stopped training (as the run's stop callback does on Ctrl-C or SIGTERM).
    """
    return DPOTraining(config_from(DPOConfigModel, config, "config"), callbacks).run()


class DPOTraining(PairsRun[DPOConfigModel, DPOMetrics]):
    """`train_dpo`: TRL's DPOTrainer over the preference rows, probed before and after training."""

    _name = "DPO policy"
    _tag_names = ["dpo"]

    def output_dir(self) -> Path:
        return output_dir_for(self.config)

    def build(self) -> Any:
        config, out = self.config, self.out
        train_raw = self.read_pairs(self._training_rows)
        self.smoothing = label_smoothing_for(config, train_raw)
        add_row_smoothing(config, train_raw, self.train_rows)
        self.device = pick_device(config.device)
        eval_sets = {"held_out": self.held_rows}
        self.judged = callback_for(config.winrate_eval, judge=None, constitution="harmless", cache=DEFAULT_CACHE,
                                   seed=config.seed)  # fmt: skip
        extra = [self.judged] if self.judged is not None else []
        trainer = make_trainer(
            config, self.train_rows, eval_sets, out, self.device, self.smoothing, [*self.callbacks, *extra],
            config.probe_pairs,
        )  # fmt: skip
        if self.judged is not None:
            self.judged.trainer = trainer  # the win rate reaches TensorBoard / W&B too
        return trainer

    def _training_rows(self, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        data.check_columns(self.rows, self.source)  # every row, not only the training ones
        return data.to_training_rows(raw, self.source)

    def before_training(self, trainer: Any) -> None:
        self.probe = _probe_at_start(trainer, self.resume is None)

    def after_training(self, trainer: Any) -> None:
        self.before, self.after = self.probe.result, _probe(trainer)
        finish_shared_datasets(trainer.args, self.out / PREPARED)

    def metrics(self, trainer: Any, result: Any) -> DPOMetrics:
        details = {"bf16": bool(trainer.args.bf16), "batch_size": trainer.args.per_device_train_batch_size}
        pairs = (len(self.train_rows), len(self.held_rows))
        summary = training_summary(trainer, result, self.seconds, self.resume, pairs, self.device, details)
        return {
            "before": self.before,
            "after": self.after,
            "label_smoothing": self.smoothing,
            "loss_type": self.config.loss_type,
            "beta": trainer.args.beta,
            "training": cast(DPOTrainingSummary, summary),
            "winrate_eval": evaluations(self.judged),
            "config": self.config.model_dump(mode="json"),
        }

    def card(self, metrics: DPOMetrics) -> Any:
        trained_winrate = evaluation_lines(metrics["winrate_eval"])
        return render_card(self._name, self.config.model, self.source, metrics, self.rows, self._tag_names,
                           trained_winrate)  # fmt: skip
