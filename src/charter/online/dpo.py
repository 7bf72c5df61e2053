"""`train_online_dpo`: online DPO (OAIF, Guo et al. 2024) through TRL's online DPO trainer, its preferences from
charter's pairwise judge, the pairs the judge did not decide masked out of the loss, and an optimizer step whose pairs
were all masked skipped. Writes the policy, metrics.json, a model card and the reward store (OUTPUT_DIR/run.sqlite)."""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charter.api_args import ConfigArg, public
from charter.errors import TrainingError
from charter.evals.callback import evaluations
from charter.online.card import online_dpo_card, unfinished_online_dpo_card
from charter.online.config import OnlineDPOConfig
from charter.online.metrics import OnlineDPOMetrics, Usage
from charter.online.mitigate import mitigation_log
from charter.online.pairs import MeteredPanel, PairJudge, RewardModelVote, masked_dpo_loss
from charter.online.train import (
    OnlineRun,
    budget_callback,
    dataset_rows,
    merge_rank_stores,
    monitor_for,
    train_prompts,
    usage_of,
    winrate_callback,
    winrate_of,
)
from charter.reward.checklisted import CHECKLIST, checklist_options
from charter.reward.scoring import RubricDropout
from charter.reward.session import text_of
from charter.runs.rewards import StepPairs, pair_steps
from charter.runs.store import RunStore
from charter.training.args import build_trl_config, cpu_args, online_args, online_dpo_config
from charter.training.models import load_policy, peft_config, pick_device, short_error
from charter.training.parallel import parallel_settings, sum_each_over_processes
from charter.yamlio import config_from

#: What the trainer logs each step: pairs trained on and masked by reason (all processes together), whether the
#: optimizer step was skipped (1: every pair masked), the policy's KL to the reference, the implicit reward margin of
#: the decided pairs, beta.
STATS = ("charter/trained", "charter/masked_failed", "charter/masked_undecided", "charter/skipped", "objective/kl",
         "rewards/margins", "beta")  # fmt: skip
#: TRL's per-step log keys kept in metrics.json.
KEPT_LOGS = ("loss", *STATS[:-1])


def pair_judge(config: OnlineDPOConfig) -> PairJudge:
    """The judge of `config`, with its call cache, usage meter, prices and reward store."""
    from charter.constitutions import load_constitution
    from charter.providers import get_model
    from charter.providers.cache import CallCache
    from charter.providers.usage import UsageMeter

    cache = CallCache(Path(config.cache).expanduser()) if config.cache is not None else None
    meter = UsageMeter(dict(config.prices))  # the budget is checked after each step (budget_callback)
    members = [get_model(m.backend(), cache=cache, meter=meter, role="judge") for m in config.judge.members]
    model = members[0] if len(members) == 1 else MeteredPanel(members, config.judge.weights, meter, cache)
    return PairJudge(
        model,  # type: ignore[arg-type] - a panel stands where one judge model stands
        load_constitution(config.constitution),
        config.judge.settings(),
        "pair",
        Path(config.output_dir),
        seed=config.seed,
        max_failures=config.max_failures,
        min_confidence=config.min_confidence,
        reward_model=reward_model_vote(config),
        checklist=_checklist(config, cache, meter) if config.scoring == CHECKLIST.name else None,
        mitigations=config.mitigations,
    )


def _checklist(config: OnlineDPOConfig, cache: Any, meter: Any) -> Any:
    """The checklist scoring's options, with rubric dropout where the mitigations set it."""
    options = checklist_options(config.checklist, cache, meter)
    drop = config.mitigations.rubric_dropout
    return options if drop is None else dataclasses.replace(options, dropout=RubricDropout(drop))


def reward_model_vote(config: OnlineDPOConfig) -> RewardModelVote | None:
    """The configured reward model, loaded (a one-line `TrainingError` for one that is none), or None."""
    if not config.reward_model:
        return None
    from charter.reward_model.scorer import RewardScorer

    folder = Path(config.reward_model).expanduser()
    scorer = RewardScorer.load(folder if folder.exists() else config.reward_model)
    return RewardModelVote(scorer, config.reward_model, config.reward_model_weight, config.judge_weight)


def judged_trainer_class() -> type:
    """TRL's OnlineDPOTrainer with its preferences from charter's judge and the undecided pairs masked out."""
    import torch
    from trl.experimental.online_dpo import OnlineDPOTrainer

    class JudgedOnlineDPOTrainer(OnlineDPOTrainer):
        """The training step of TRL's OnlineDPOTrainer (generate two completions per prompt, log-probabilities of
        the policy and the reference), the judge in place of its reward functions, the loss over decided pairs."""

        def __init__(self, *args: Any, judge: PairJudge, config: OnlineDPOConfig | None = None, **kwargs: Any) -> None:
            super().__init__(*args, reward_funcs=[_unused_reward], **kwargs)
            self.judge, self.run_config = judge, config
            self.stats = {key: [] for key in STATS}
            #: Pairs in the loss per optimizer step (its micro-batches, all processes), until the step is taken.
            self.in_loss: Counter[int] = Counter()
            self.hold = StepHold(self._nothing_to_learn)
            this: Any = self
            if getattr(this, "generation_config", None) is not None:  # transformers generation (not vLLM)
                # TRL generates without the KV cache when activation checkpointing is on (each new token recomputes
                # the whole sequence); charter generates with it and the checkpointing off, as TRL's GRPO does
                this.generation_config.use_cache = True
                this.generation_kwargs["use_cache"] = True

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            """TRL's schedule; the optimizer, prepared by now, held on a step that has nothing to learn."""
            scheduler = super().create_scheduler(num_training_steps, optimizer)
            this: Any = self
            self.hold.install(this.optimizer, this.accelerator)
            return scheduler

        def _nothing_to_learn(self) -> bool:
            """Whether the optimizer step about to be taken had no pair in its loss (every micro-batch, every
            process): its loss has no gradient, yet AdamW would move the weights on its momentum and weight decay."""
            this: Any = self
            empty = self.in_loss.pop(this.state.global_step + 1, 0) == 0
            self.stats["charter/skipped"].append(float(empty))
            return empty

        def create_model_card(self, *args: Any, **kwargs: Any) -> None:
            """In place of TRL's card at each checkpoint (a placeholder that names no base model, no judge): charter's
            card of an unfinished run (none without the run's config), replaced by the run's card when it ends."""
            this: Any = self
            if self.run_config is None or not this.is_world_process_zero():
                return
            judge, step = self.judge.judge.model_id, this.state.global_step
            card = unfinished_online_dpo_card(
                self.run_config, judge, _constitution(self.judge), step, this.state.max_steps
            )
            card.save(Path(this.args.output_dir) / "README.md")

        def _generate(self, model: Any, prompts: Any, images: Any = None) -> Any:
            from trl.models.utils import disable_gradient_checkpointing

            this: Any = self
            with disable_gradient_checkpointing(this.model, this.args.gradient_checkpointing_kwargs):
                return super()._generate(model, prompts, images)

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            this: Any = self  # TRL's attributes, untyped
            model.train()
            prompts = inputs["prompt"]
            batch = len(prompts)
            if this.args.use_vllm:
                prompt_ids, prompt_mask, completion_ids, completion_mask = this._generate_vllm(prompts)
            else:
                prompt_ids, prompt_mask, completion_ids, completion_mask, _ = this._generate(model, prompts)
            logprobs = this._forward(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
            with torch.no_grad():
                if this.ref_model is not None:
                    ref = this._forward(this.ref_model, prompt_ids, prompt_mask, completion_ids, completion_mask)
                else:  # peft: the reference is the model without its adapter
                    with this.model.disable_adapter():
                        ref = this._forward(this.model, prompt_ids, prompt_mask, completion_ids, completion_mask)
            texts = this.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
            decisions = this.judge.judge_pairs(
                prompts, texts[:batch], texts[batch:], this.state.global_step + 1, **_checklist_column(this, inputs)
            )
            first_wins = torch.tensor([bool(d.first_wins) for d in decisions], device=logprobs.device)
            trained = torch.tensor([d.masked is None for d in decisions], device=logprobs.device)
            rows = torch.arange(batch, device=logprobs.device)
            chosen = rows + (~first_wins) * batch
            rejected = rows + first_wins * batch
            tokens = completion_mask.bool()
            sums, ref_sums = (logprobs * tokens).sum(1), (ref * tokens).sum(1)
            loss = masked_dpo_loss(
                sums[chosen], sums[rejected], ref_sums[chosen], ref_sums[rejected], trained, this.beta,
                this.args.loss_type,
            )  # fmt: skip
            self.in_loss[this.state.global_step + 1] += self._log_pairs(
                decisions, logprobs, ref, tokens, trained, chosen, rejected
            )
            this.accelerator.backward(loss)
            return loss.detach() / this.args.gradient_accumulation_steps

        def _log_pairs(self, decisions: list, logprobs: Any, ref: Any, tokens: Any, trained: Any, chosen: Any,
                       rejected: Any) -> int:  # fmt: skip
            """Log the micro-batch's pairs; returns how many were in the loss, all processes together."""
            this: Any = self
            reasons = Counter(d.masked for d in decisions)
            in_loss = int(trained.sum())  # the pairs the loss was given, as it was given them
            counts = torch.tensor([in_loss, reasons["failed"], reasons["undecided"]], device=logprobs.device)
            summed = this.accelerator.gather(counts).reshape(-1, 3).sum(0).tolist()  # all processes together
            for key, count in zip(STATS[:3], summed):
                this.stats[key].append(float(count))
            kl = ((logprobs - ref) * tokens).sum(1)
            this.stats["objective/kl"].append(this.accelerator.gather_for_metrics(kl.mean()).mean().item())
            margin = this.beta * ((logprobs - ref) * tokens).sum(1)
            decided = (margin[chosen] - margin[rejected])[trained]
            # the implicit reward margin of the decided pairs; NaN when the step decided none
            this.stats["rewards/margins"].append(decided.mean().item() if decided.numel() else float("nan"))
            this.stats["beta"].append(this.beta)
            return int(summed[0])

    return JudgedOnlineDPOTrainer


class AnchoredPreference:
    """The gold monitor's training reward for online DPO, whose judge rewards pairs, not answers: the judge's
    P(this answer is better than the policy's answer to the same held-out prompt at the monitor's first evaluation)
    (step 0, or the step a resumed run starts from), judged as training judges its pairs, neither stored nor counted
    to a step. It is 0.5 at the first evaluation (the same answer twice: no call) and its mean over the held-out
    prompts is the judge's win rate of the policy against its starting self; None where the judgment failed."""

    def __init__(self, judge: PairJudge) -> None:
        self.judge = judge
        self.anchor: list[str] | None = None
        """The first evaluation's answers, each held-out prompt's."""

    def __call__(self, prompts: Any, completions: Any, checklist: Any = None, **_: Any) -> list[float | None]:
        texts = [text_of(c) for c in completions]
        if self.anchor is None:
            self.anchor = texts
        return self.judge.preferences(prompts, texts, self.anchor, checklist)


class StepHold:
    """Skips an optimizer step whenever `held()` says so at that step, by the path a mixed-precision step takes when
    its gradient overflowed: the optimizer does not step, accelerate reports the step skipped
    (`Accelerator.optimizer_step_was_skipped`), and the transformers Trainer then leaves the learning-rate schedule
    where it was. `held` is asked once per optimizer step, when the trainer calls `optimizer.step()` after the step's
    last micro-batch."""

    def __init__(self, held: Callable[[], bool]) -> None:
        self.held = held
        self._installed: list[Any] = []

    def install(self, optimizer: Any, accelerator: Any) -> None:
        """Wrap the prepared optimizer's `step` (once, however often the trainer prepares it); a `TrainingError`
        where accelerate would not see the skip (DeepSpeed, whose engine steps inside the backward pass)."""
        if any(optimizer is seen for seen in self._installed):
            return
        if not _reports_skips(optimizer, accelerator):
            raise TrainingError(
                "online DPO skips the optimizer step of a batch whose pairs are all masked, which this optimizer "
                f"({type(optimizer).__name__}) cannot do (DeepSpeed steps inside the backward pass); train without "
                "DeepSpeed"
            )
        step = optimizer.step

        @functools.wraps(step)  # keeps the mark torch's scheduler put on the step it wrapped
        def held_step(*args: Any, **kwargs: Any) -> Any:
            held = self.held()
            optimizer._is_overflow = held  # accelerate's "this step was skipped"; a step taken sets its own
            if not held:
                return step(*args, **kwargs)
            _close_scaled_step(optimizer)
            return None

        optimizer.step = held_step
        self._installed.append(optimizer)


def _close_scaled_step(optimizer: Any) -> None:
    """End the fp16 loss scaling of a step not taken as a step without overflow ends it: its gradient unscaled
    (unless the gradient clipping did it), then the scaler updated; else the next step's unscaling fails."""
    scaler = getattr(optimizer, "scaler", None)
    if scaler is None:
        return
    try:
        scaler.unscale_(optimizer.optimizer)
    except RuntimeError as exc:  # unscaled already, by the clipping
        if "already been called" not in str(exc):
            raise
    scaler.update()


def _reports_skips(optimizer: Any, accelerator: Any) -> bool:
    """Whether marking `optimizer`'s step skipped is what accelerate reports to the trainer."""
    if not hasattr(optimizer, "_is_overflow"):
        return False
    optimizer._is_overflow = True
    try:
        return bool(accelerator.optimizer_step_was_skipped)
    finally:
        optimizer._is_overflow = False


def _checklist_column(trainer: Any, inputs: Any) -> dict[str, Any]:
    """The batch's checklist column for a judge that judges by checklist (where the batch carries it)."""
    options = trainer.judge.checklist
    if options is None or not isinstance(inputs, dict) or options.checklist_column not in inputs:
        return {}
    return {"checklists": inputs[options.checklist_column]}


def _constitution(judge: PairJudge) -> str:
    return f"{judge.constitution.name} ({judge.constitution.short_hash})"


def _unused_reward(prompts: Any, completions: Any, **kwargs: Any) -> list[float | None]:
    """TRL's trainer asks for a reward function; charter's judge replaces them (never called)."""
    raise AssertionError("online DPO takes its preferences from charter's judge")


def _trl_args(config: OnlineDPOConfig, device: str) -> Any:
    base: dict[str, Any] = {
        **online_args(config.output_dir, config.seed),
        "learning_rate": 5e-7,
        "max_new_tokens": 64,
        "per_device_train_batch_size": 4,
        **cpu_args(device),
    }
    return build_trl_config(online_dpo_config(), base, config.trl, "trl")


@public
def train_online_dpo(
    config: ConfigArg[OnlineDPOConfig], *, callbacks: tuple[Any, ...] | list[Any] = ()
) -> OnlineDPOMetrics:
    """Train a policy with online DPO, charter's pairwise judge deciding each pair of its own completions.

    Args:
        config: The settings: an `OnlineDPOConfig`, a dict of its fields or a YAML file (as `charter train
            online-dpo` takes).
        callbacks: Extra transformers `TrainerCallback`s.

    Returns:
        The metrics, also written to OUTPUT_DIR/metrics.json: per step the pairs, those trained on and those masked
        (failed, undecided), judge calls, cache hits and cost.

    Raises:
        BudgetExceeded: The budget stopped training (after saving a checkpoint, the metrics and the card).
        TooManyFailures: More judgments failed than `max_failures` allows.
        TrainingError: The policy or TRL's settings are unusable.
        DatasetError: There are no prompts.
    """
    return OnlineDPOTraining(config_from(OnlineDPOConfig, config, "config"), callbacks).run()


class OnlineDPOTraining(OnlineRun[OnlineDPOConfig, OnlineDPOMetrics]):
    """`train_online_dpo`: TRL's online DPO trainer, charter's pairwise judge deciding its pairs."""

    _name = "online DPO"
    _tag_names = ["online-dpo", "rlaif"]
    monitor: Any = None
    """The gold monitor (`monitor` section), or None."""

    def build(self) -> Any:
        import datasets

        config = self.config
        prompts = train_prompts(config)
        self.device = pick_device(config.device)
        args = _trl_args(config, self.device)
        self.session = judge = pair_judge(config)
        self.stop = budget_callback(judge, config.budget)
        judged = winrate_callback(config)
        rows, self.monitor = monitor_for(config, dataset_rows(prompts, None), AnchoredPreference(judge))
        model, tokenizer, _ = load_policy(config.model, config.chat_template)
        watching = [c for c in (judged, self.monitor) if c is not None]
        try:
            trainer = judged_trainer_class()(
                model=model,
                judge=judge,
                config=config,
                args=args,
                train_dataset=datasets.Dataset.from_list(rows),
                processing_class=tokenizer,
                peft_config=peft_config(config.lora, "CAUSAL_LM"),
                callbacks=[self.stop, *self.callbacks, *watching],
            )
        except ValueError as exc:
            raise TrainingError(f"online DPO trainer: {short_error(exc)}") from None
        for callback in watching:
            callback.trainer = trainer  # the win rate and the monitor reach TensorBoard / W&B too
        return trainer

    def metrics(self, trainer: Any, result: Any) -> OnlineDPOMetrics:
        """Merge the ranks' reward stores (main process), then the metrics: per step the pairs, those trained on and
        masked, the judge's calls and cost (all processes together)."""
        judge: PairJudge = self.session
        calls = _calls_per_step(judge, trainer.state.global_step)  # every process takes part
        steps: list[StepPairs] = []
        usage = Usage(calls=0, cached=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
        mitigations: dict[str, Any] = {}
        if trainer.is_world_process_zero():  # only the main process opens the output's store (the others could
            merge_rank_stores(self.out, judge.ranks)  # find it locked by the merge)
            with RunStore(self.out, create=True) as store:
                steps, usage = pair_steps(store), usage_of(store)
                mitigations = mitigation_log(self.config.mitigations, store)
        for row in steps:
            done = calls.get(row["step"] or 0, (0.0, 0.0, 0.0))
            # a step with no pair in its loss is one the trainer skipped (StepHold): the same pairs, counted here
            row.update(
                calls=int(done[0]), cached_calls=int(done[1]), cost_usd=round(done[2], 6), skipped=not row["trained"]
            )
        # a step that decided no pair has no reward margin (NaN in TRL's log): left out, so metrics.json stays JSON
        log = [
            {k: v for k, v in e.items() if (k in KEPT_LOGS or k == "step") and not (isinstance(v, float) and v != v)}
            for e in trainer.state.log_history
        ]
        return OnlineDPOMetrics(
            trainer="online-dpo",
            judge=judge.judge.model_id,
            constitution=_constitution(judge),
            stopped="budget" if self.stop.stopped else "monitor" if self._monitor_stopped() else "finished",
            steps=steps,
            trl_log=[e for e in log if "loss" in e],
            usage=usage,
            pairs=sum(s["pairs"] for s in steps),
            trained=sum(s["trained"] for s in steps),
            masked={"failed": sum(s["failed"] for s in steps), "undecided": sum(s["undecided"] for s in steps)},
            skipped_steps=sum(bool(s.get("skipped")) for s in steps),
            training={**self.training_fields(trainer), "device": self.device, **parallel_settings(trainer.args)},
            winrate_eval=evaluations(winrate_of(trainer)),
            mitigations=mitigations,
            monitor=self.monitor.summary() if self.monitor is not None else None,
            config=self.config.model_dump(mode="json"),
        )

    def _monitor_stopped(self) -> bool:
        return self.monitor is not None and (self.monitor.stopped or "").startswith("the stop rule")

    def card(self, metrics: OnlineDPOMetrics) -> Any:
        return online_dpo_card(metrics, self.config, self._name, self.tags)


def _calls_per_step(judge: PairJudge, steps: int) -> dict[int, tuple[float, float, float]]:
    """The judge's calls, calls from the cache and their cost per training step, all processes together."""
    flat: list[float] = []
    for step in range(1, steps + 1):
        tally = judge.calls_by_step.get(step, {})
        flat += [tally.get("calls", 0), tally.get("cached", 0), tally.get("cost_usd", 0.0)]
    summed = sum_each_over_processes(flat)
    return {s + 1: (summed[3 * s], summed[3 * s + 1], summed[3 * s + 2]) for s in range(steps)}
