"""`train_online`: TRL's GRPOTrainer or RLOOTrainer with charter's judge as the reward, and a verifiable reward
beside it where asked. Writes the policy, metrics.json, a model card and the reward store (OUTPUT_DIR/run.sqlite).

Checklists evolve during training (`checklist.refresh_every: K`): every K steps the highest- and lowest-rewarded
rollouts of the last `refresh_window` steps (from the reward store) are shown to a proposer model (where they differ:
rollouts that all score alike have nothing to contrast, and the proposer is not paid for), which is asked for yes/no
items that catch what the high ones exploit: length padding, sycophancy, format tricks. A bad reply is a recorded
refresh that accepted nothing, never a made-up item; items whose ids are new, up to `max_new_items`, are accepted as
the next version of the checklist (`charter.checklist.ChecklistBook`), added to every prompt's checklist from the next
reward on. The request and the reading of its reply are `charter.checklist.author`'s (the rollouts fenced). Each
refresh is kept in the reward store's meta `checklist_versions`, in metrics.json and on the card; every reward names
the version it used (`RewardChecklist.version`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from charter.api_args import ConfigArg, public
from charter.checklist.author import PROPOSER_SCHEMA, Refresh, proposer_request, read_proposed
from charter.checklist.items import ChecklistBook, checklist_from_rows
from charter.errors import BudgetExceeded, ConfigError, DatasetError, FatalProviderError, ProviderError, TrainingError
from charter.evals.callback import WinRateCallback, callback_for, evaluations
from charter.evals.winrate import prompt_checklists, prompt_key
from charter.monitor.gold import refuse_overlap
from charter.online.card import online_card
from charter.online.config import ChecklistReward, OnlineBase, OnlineConfig, OnlineDPOConfig, Trainer, VerifiableReward
from charter.online.metrics import OnlineMetrics, Usage
from charter.online.mitigate import MITIGATIONS_KEY, MitigatedReward, mitigation_log, panel_members, shows_signature
from charter.online.pairs import PairJudge
from charter.prompts import PromptsConfig, load_prompts
from charter.providers import ManagedModel, get_model
from charter.providers.base import SamplingParams
from charter.providers.usage import Budget
from charter.records import Prompt, RewardRecord, as_dicts
from charter.records.base import user
from charter.reward.checklisted import CHECKLIST
from charter.reward.function import JudgeReward, RewardFunction, reward_for, scoring_entry
from charter.reward.session import rank_store_dir
from charter.runs.counts import usage_totals
from charter.runs.items import merge_rewards, stored_prompts
from charter.runs.rewards import per_step, rewards, supersede_from
from charter.runs.store import STORE_FILE, RunStore
from charter.runs.usage import stored_usage
from charter.training.args import (
    build_trl_config,
    checkpoint_step,
    cpu_args,
    grpo_config,
    online_args,
    rloo_config,
)
from charter.training.models import load_policy, peft_config, pick_device, short_error
from charter.training.output import progress
from charter.training.parallel import barrier, parallel_settings, sum_over_processes
from charter.training.run import TrainingRun
from charter.verify import check, verifier_name
from charter.yamlio import config_from

C = TypeVar("C", bound=OnlineBase)
R = TypeVar("R")

#: TRL's per-step log keys kept in metrics.json.
KEPT_LOGS = ("loss", "reward", "reward_std", "kl", "entropy", "completions/mean_length", "step_time")


def train_prompts(config: OnlineBase) -> list[Prompt]:
    """The prompts to train on: a prompts section, a file, or a run directory's prompts."""
    source = config.prompts
    if isinstance(source, str):
        if (Path(source) / STORE_FILE).exists():
            with RunStore(source) as store:
                prompts = stored_prompts(store)
            if not prompts:
                raise DatasetError(f"{source}: the run holds no prompts")
            return prompts
        source = PromptsConfig(path=source)
    found = list(load_prompts(source).rows)
    if not found:
        raise DatasetError("prompts: none to train on")
    return found


def dataset_rows(
    prompts: Sequence[Prompt], verify: VerifiableReward | None, checklists: Sequence[str | None] | None = None
) -> list[dict[str, Any]]:
    """TRL's conversational prompt rows, with the columns the rewards read (reference, verifier, checklist)."""
    rows = []
    for i, p in enumerate(prompts):
        row: dict[str, Any] = {"prompt": as_dicts(p.messages), "reference": p.reference}
        if verify is not None:
            row["verifier"] = verifier_name(p.verifier, p.reference, verify.verifier)
        if checklists is not None:
            row["checklist"] = checklists[i]
        rows.append(row)
    return rows


def checklist_column(config: OnlineConfig, prompts: Sequence[Prompt]) -> list[str | None] | None:
    """`scoring: checklist`: each prompt's checklist from the prompts file's column (JSON text, checked here so that a
    bad one is one `DatasetError` naming the file's row before training), None for a prompt without one; None
    for other scorings."""
    if config.scoring != CHECKLIST.name:
        return None
    source = config.prompts if isinstance(config.prompts, str) else config.prompts.path
    if source is None or not Path(source).is_file():
        return [None for _ in prompts]
    given = prompt_checklists(source, config.checklist.column, [as_dicts(p.messages) for p in prompts])
    out: list[str | None] = []
    for p in prompts:
        found = given.get(prompt_key(as_dicts(p.messages)))
        if found is not None:
            where, value = found
            checklist_from_rows(value, where)  # checked now, read again by the reward
            found = value if isinstance(value, str) else json.dumps(value)
        out.append(found)
    return out


def refresh_of(config: OnlineConfig, reward: RewardFunction) -> Any:
    """The `checklist.refresh_every` callback (its proposer: the section's, else the judge), or None."""
    section = config.checklist
    if section.refresh_every is None:
        return None
    if reward.ranks > 1:
        raise TrainingError("checklist.refresh_every: the checklist is refreshed in one training process only")
    proposer = reward.judge
    if section.proposer is not None:
        cache = reward.judge.cache
        proposer = get_model(section.proposer.backend(), cache=cache, meter=reward.judge.meter, role="proposer")
    return refresh_callback(reward, section, proposer)


def mitigated(config: OnlineConfig, reward: RewardFunction, out: Path) -> RewardFunction | MitigatedReward:
    """The judge's reward as TRL takes it: the reward function itself, or with the `mitigations` set."""
    if not config.mitigations.settings():
        return reward
    return MitigatedReward(reward, config.mitigations, panel_members(config, out), shows_signature)


def monitor_for(
    config: OnlineConfig | OnlineDPOConfig, rows: list[dict[str, Any]], reward: Callable[..., Sequence[float | None]]
) -> tuple[list[dict], Any]:
    """The `monitor` section's `GoldMonitor` (None without one), `reward` its training reward (unstored), and the
    rows left to train on: a `split` holds a seeded share of them out. Held-out prompts that are training prompts are
    refused, the overlap counted."""
    section = config.monitor
    if section is None:
        return rows, None
    from charter.monitor.callback import GoldMonitor

    held = None
    if section.split is not None:
        order = list(range(len(rows)))
        random.Random(config.seed).shuffle(order)
        out = set(order[: max(1, round(section.split * len(rows)))])
        if len(out) >= len(rows):
            raise ConfigError(f"monitor.split: {section.split} of {len(rows)} prompts leaves none to train on")
        held = [rows[i] for i in sorted(out)]
        rows = [r for i, r in enumerate(rows) if i not in out]
        if section.gold.checklist_column is not None:
            held = _gold_column(config, held, section.gold.checklist_column)
    monitor = GoldMonitor(section, reward, rows=held, cache=config.cache, prices=config.prices)
    refuse_overlap(monitor.prompts, [r["prompt"] for r in rows], f"monitor.prompts ({section.prompts or 'split'})")
    return rows, monitor


def _gold_column(
    config: OnlineConfig | OnlineDPOConfig, held: list[dict[str, Any]], column: str
) -> list[dict[str, Any]]:
    """`split` with a gold checklist: each held-out row's value of the prompts file's gold column."""
    source = config.prompts if isinstance(config.prompts, str) else config.prompts.path
    if source is None or not Path(source).is_file():
        raise ConfigError(f"monitor.gold.checklist_column: with split, the prompts must be a file with {column!r}")
    given = prompt_checklists(source, column, [r["prompt"] for r in held])
    return [{**r, column: (given.get(prompt_key(r["prompt"])) or (None, None))[1]} for r in held]


def verifiable_reward(verify: VerifiableReward) -> Any:
    """A TRL reward function: 1.0 when the completion passes its prompt's check, 0.0 when not, None without one."""

    def charter_verified(
        prompts: Sequence[Any], completions: Sequence[Any], verifier: Sequence[str | None], **kwargs: Any
    ) -> list[float | None]:
        references = kwargs.get("reference") or [None] * len(completions)
        out: list[float | None] = []
        for prompt, completion, name, reference in zip(prompts, completions, verifier, references):
            text = completion if isinstance(completion, str) else "".join(m.get("content", "") for m in completion)
            asked = prompt if isinstance(prompt, str) else prompt[-1].get("content", "")
            out.append(None if name is None else float(check(text, name, reference, asked)))
        return out

    return charter_verified


def distilled_reward(source: str) -> Any:
    """A sequence-classification reward model for TRL's `reward_funcs` (TRL scores prompt + completion with it):
    a folder or a Hub id, loaded here so that one that is none is a one-line `TrainingError` before training."""
    from charter.reward_model.scorer import RewardScorer

    return RewardScorer.load(source, device="cpu").model


def _trl_args(config: OnlineConfig, trainer: Trainer, device: str) -> Any:
    base: dict[str, Any] = {
        **online_args(config.output_dir, config.seed),
        "learning_rate": 1e-6,
        "num_generations": 4,
        "max_completion_length": 64,
        "per_device_train_batch_size": 4,
        "reward_weights": ([config.judge_weight] if config.judge_weight > 0 or config.judge_monitor else [])
        + ([config.verify.weight] if config.verify else [])
        + ([config.reward_model_weight] if config.reward_model else []),
        **cpu_args(device),
    }
    cls = grpo_config() if trainer == "grpo" else rloo_config()
    return build_trl_config(cls, base, config.trl, "trl")


def _check_groups(args: Any, scoring: str) -> None:
    """`group` and `rank` scoring compare the completions of one prompt within one process's batch."""
    if scoring_entry(scoring).grouped and args.per_device_train_batch_size % args.num_generations:
        raise TrainingError(
            f"scoring {scoring}: trl.per_device_train_batch_size ({args.per_device_train_batch_size}) must be a "
            f"multiple of trl.num_generations ({args.num_generations}) so that each process holds whole groups"
        )


def budget_callback(reward: RewardFunction | PairJudge, cap: Budget) -> Any:
    """A callback that stops training after the step that reaches the budget, all processes together, and has TRL
    save a checkpoint."""
    from transformers import TrainerCallback

    meter = reward.judge.meter

    class BudgetStop(TrainerCallback):
        def __init__(self) -> None:
            self.stopped = False

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            cost, tokens = sum_over_processes(meter.total_cost), sum_over_processes(float(meter.total_tokens))
            over_cost = cap.max_cost_usd is not None and cost >= cap.max_cost_usd
            over_tokens = cap.max_tokens is not None and tokens >= cap.max_tokens
            if over_cost or over_tokens:
                self.stopped = True
                control.should_training_stop = True
                control.should_save = True
            return control

    return BudgetStop()


def winrate_callback(config: OnlineBase) -> WinRateCallback | None:
    """The `winrate_eval` section's callback, judged by the training's judge unless it names its own."""
    judge = getattr(config, "judge", None)
    return callback_for(
        config.winrate_eval,
        judge=judge.members[0] if judge is not None else None,
        constitution=config.constitution,
        cache=config.cache,
        prices=config.prices,
        seed=config.seed,
    )


def winrate_of(trainer: Any) -> WinRateCallback | None:
    """The trainer's `WinRateCallback`, if it has one (its evaluations go into metrics.json)."""
    found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, WinRateCallback)]
    return found[0] if found else None


def merge_rank_stores(out: Path, ranks: int) -> None:
    """Fold each rank's rewards, usage and per-step logs (what the mitigations did, the checklist's refreshes) into
    the output's reward store (main process, after training). A log entry gets its rank; an entry of a step a rank
    took again (a resumed run) replaces that rank's earlier one."""
    if ranks <= 1:
        return
    with RunStore(out, create=True) as store:
        logs = {key: list(store.meta(key, [])) for key in RANK_LOGS}
        for r in range(ranks):
            path = rank_store_dir(out, r, ranks) / STORE_FILE
            if not path.exists():
                continue
            with RunStore(path.parent, read_only=True) as rank_store:
                for key, entries in logs.items():
                    new = [{**e, "rank": r} for e in rank_store.meta(key, [])]
                    taken = {e.get("step") for e in new}
                    entries[:] = [e for e in entries if e.get("rank") != r or e.get("step") not in taken] + new
            merge_rewards(store, path)
            path.rename(path.with_suffix(".merged"))
        in_order = {k: sorted(v, key=lambda e: (e.get("step") or 0, e.get("rank", 0))) for k, v in logs.items() if v}
        store.set_meta(**in_order)


def restart_store(reward: RewardFunction | PairJudge, out: Path, resume: str | None) -> None:
    """Before training: the stored rows of the steps it takes again (after the checkpoint it resumes from; every step
    without one) are superseded, in this process's store and, with several processes, in the output's merged store
    (main process), so that a resumed run counts each step once."""
    step = (checkpoint_step(resume) or 0) + 1 if resume else 1
    supersede_from(reward.store, step)
    if reward.ranks > 1 and reward.rank == 0 and (out / STORE_FILE).exists():
        with RunStore(out) as store:
            supersede_from(store, step)


def usage_of(store: RunStore) -> Usage:
    """The judge's calls and cost as the reward store's usage ledger has them."""
    totals = usage_totals(stored_usage(store))
    return Usage(
        calls=int(totals["calls"]),
        cached=int(totals["cached"]),
        prompt_tokens=int(totals["prompt_tokens"]),
        completion_tokens=int(totals["completion_tokens"]),
        cost_usd=totals["cost_usd"],
    )


def _trainer(
    config: OnlineConfig, trainer: Trainer, args: Any, funcs: list[Any], rows: list[dict], callbacks: list
) -> Any:
    import datasets
    from trl import GRPOTrainer, RLOOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports them lazily

    model, tokenizer, _ = load_policy(config.model, config.chat_template)
    cls = GRPOTrainer if trainer == "grpo" else RLOOTrainer
    try:
        return cls(
            model=model,
            reward_funcs=funcs,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config(config.lora, "CAUSAL_LM"),
            callbacks=callbacks,
        )
    except ValueError as exc:
        raise TrainingError(f"{trainer} trainer: {short_error(exc)}") from None


@public
def train_online(
    config: ConfigArg[OnlineConfig], trainer: Trainer = "grpo", *, callbacks: Sequence[Any] = ()
) -> OnlineMetrics:
    """Train a policy online with the constitutional judge as its reward (TRL's GRPO or RLOO).

    Args:
        config: The settings: an `OnlineConfig`, a dict of its fields or a YAML file (as `charter train grpo` takes).
        trainer: `grpo` (GRPOTrainer) or `rloo` (RLOOTrainer).
        callbacks: Extra transformers `TrainerCallback`s.

    Returns:
        The metrics, also written to OUTPUT_DIR/metrics.json; the policy, README.md, the reward store (run.sqlite)
        and the run report (report/report.md, report/report.html) are in OUTPUT_DIR.

    Raises:
        BudgetExceeded: The budget stopped training (after saving a checkpoint, the metrics and the card).
        TooManyFailures: More judgments failed than `max_failures` allows.
        TrainingError: The policy or TRL's settings are unusable.
        DatasetError: There are no prompts.
    """
    return TRAININGS[trainer](config_from(OnlineConfig, config, "config"), callbacks).run()


class OnlineRun(TrainingRun[C, R]):
    """What the online trainers share: prompts, a judge session whose store restarts where training resumes and that
    closes when training ends, the ranks' stores merged, the run report, and the budget's stop."""

    session: Any
    """The judge session: the reward function (GRPO, RLOO) or the pairwise judge (online DPO)."""
    stop: Any
    """The budget's callback (`budget_callback`)."""

    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    def before_training(self, trainer: Any) -> None:
        restart_store(self.session, self.out, self.resume)

    def train(self, trainer: Any) -> Any:
        try:
            return trainer.train(resume_from_checkpoint=self.resume)
        finally:
            self.session.close()

    def after_training(self, trainer: Any) -> None:
        barrier()

    def write(self, metrics: R) -> None:
        super().write(metrics)
        from charter.pipeline.report.write import write_report

        write_report(self.out)  # report/report.md and .html: per step, usage, failures, the win rate judged in training

    def finish(self, trainer: Any, metrics: R) -> R:
        if self.stop.stopped:
            raise BudgetExceeded(
                f"budget reached after step {trainer.state.global_step}: the policy and a checkpoint are saved in "
                f"{self.out}; raise the budget and run again to resume"
            )
        return metrics

    def training_fields(self, trainer: Any) -> dict[str, Any]:
        """The `training` part of the metrics up to the device: steps, seconds, resumed from, prompts."""
        return {**progress(trainer, self.seconds, self.resume), "prompts": len(trainer.train_dataset)}


class OnlineTraining(OnlineRun[OnlineConfig, OnlineMetrics]):
    """`train_online`: TRL's GRPO or RLOO trainer, the judge's reward beside a verifier's and a reward model's."""

    trainer: ClassVar[Trainer]
    mitigated: RewardFunction | MitigatedReward
    """The judge's reward as TRL takes it (`mitigated`)."""
    monitor: Any = None
    """The gold monitor (`monitor` section), or None."""

    def build(self) -> Any:
        config, out = self.config, self.out
        prompts = train_prompts(config)
        self.device = pick_device(config.device)
        args = _trl_args(config, self.trainer, self.device)
        _check_groups(args, config.scoring)
        self.session = reward = reward_for(config, out)
        self.stop = budget_callback(reward, config.budget)
        asks_judge = config.judge_weight > 0 or config.judge_monitor
        judged = mitigated(config, reward, out)
        funcs = ([judged] if asks_judge else []) + ([verifiable_reward(config.verify)] if config.verify else [])
        if config.reward_model:
            funcs.append(distilled_reward(config.reward_model))
        rows = dataset_rows(prompts, config.verify, checklist_column(config, prompts))
        self.mitigated = judged
        rows, self.monitor = monitor_for(config, rows, reward.unstored)
        winrate = winrate_callback(config)
        refresh = refresh_of(config, reward)
        callbacks = [self.stop, *self.callbacks, *(c for c in (winrate, refresh, self.monitor) if c is not None)]
        trainer = _trainer(config, self.trainer, args, funcs, rows, callbacks)
        for watching in (winrate, self.monitor):
            if watching is not None:
                watching.trainer = trainer  # the win rate and the monitor reach TensorBoard / W&B too
        return trainer

    def before_training(self, trainer: Any) -> None:
        super().before_training(trainer)
        step = (checkpoint_step(self.resume) or 0) + 1 if self.resume else 1
        for member in getattr(self.mitigated, "members", []):  # a panel's judges restart where the judge does
            supersede_from(member.store, step)

    def train(self, trainer: Any) -> Any:
        try:
            return super().train(trainer)
        finally:
            if isinstance(self.mitigated, MitigatedReward):
                self.mitigated.close()

    def metrics(self, trainer: Any, result: Any) -> OnlineMetrics:
        """Merge the ranks' reward stores (main process), then the metrics from the output's store."""
        if not trainer.is_world_process_zero():
            return self._summary(trainer, None)
        merge_rank_stores(self.out, self.session.ranks)
        with RunStore(self.out, create=True) as store:
            return self._summary(trainer, store)

    def card(self, metrics: OnlineMetrics) -> Any:
        return online_card(metrics, self.config, self._name, self.tags)

    def _summary(self, trainer: Any, store: RunStore | None) -> OnlineMetrics:
        config, reward = self.config, self.session
        steps = per_step(store) if store is not None else []
        none = Usage(calls=0, cached=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
        log = [
            {k: v for k, v in entry.items() if k in KEPT_LOGS or k == "step" or k.startswith("rewards/")}
            for entry in trainer.state.log_history
            if "loss" in entry
        ]
        return OnlineMetrics(
            trainer=self.trainer,
            scoring=config.scoring,
            judge=reward.judge.model_id,
            constitution=f"{reward.constitution.name} ({reward.constitution.short_hash})",
            stopped="budget" if self.stop.stopped else "monitor" if self._monitor_stopped() else "finished",
            steps=steps,
            trl_log=log,
            usage=usage_of(store) if store is not None else none,
            rewards=sum(s["n"] for s in steps),
            failures=sum(s["failed"] for s in steps),
            training={
                **self.training_fields(trainer),
                "num_generations": trainer.args.num_generations,
                "device": self.device,
                **parallel_settings(trainer.args),
            },
            winrate_eval=evaluations(winrate_of(trainer)),
            checklist_versions=refreshes(store) if store is not None else [],
            refresh_steps=refresh_steps(store) if store is not None else [],
            mitigations=mitigation_log(config.mitigations, store),
            monitor=self.monitor.summary() if self.monitor is not None else None,
            config=config.model_dump(mode="json"),
        )

    def _monitor_stopped(self) -> bool:
        return self.monitor is not None and (self.monitor.stopped or "").startswith("the stop rule")


class GRPOTraining(OnlineTraining):
    trainer = "grpo"
    _name = "GRPO (TRL GRPOTrainer)"
    _tag_names = ["grpo", "rlaif"]


class RLOOTraining(OnlineTraining):
    trainer = "rloo"
    _name = "RLOO (TRL RLOOTrainer)"
    _tag_names = ["rloo", "rlaif"]


#: The online trainer of each `trainer` argument.
TRAININGS: dict[str, type[OnlineTraining]] = {"grpo": GRPOTraining, "rloo": RLOOTraining}


#: The store's meta key of the refreshes.
VERSIONS_KEY = "checklist_versions"
#: The reward store's per-step logs a rank keeps in its own store, merged with the rewards (`merge_rank_stores`).
RANK_LOGS = (MITIGATIONS_KEY, VERSIONS_KEY)


def recent(reward: JudgeReward, step: int, window: int) -> list[RewardRecord]:
    """The scored checklist rewards of steps `step - window + 1` to `step` in the reward store."""
    return [
        r
        for r in rewards(reward.store)
        if r.reward is not None
        and r.scoring == CHECKLIST.name
        and r.step is not None
        and step - window < r.step <= step
    ]


def refresh_checklist(
    reward: JudgeReward, section: ChecklistReward, proposer: ManagedModel, step: int, book: ChecklistBook
) -> Refresh:
    """Compare the highest- and lowest-rewarded recent rollouts, ask the proposer for items, and accept the new ones
    into `book` (a new version); the refresh is recorded in the store's meta either way."""
    scored = sorted(recent(reward, step, section.refresh_window), key=lambda r: r.reward or 0.0)
    common = {"step": step, "proposer": proposer.model_id}
    if len(scored) < 2:
        return _kept(reward, Refresh(version=book.version, note="fewer than 2 scored rollouts to compare", **common))
    k = min(section.refresh_pairs, len(scored) // 2)
    high, low = scored[::-1][:k], scored[:k]
    compared = {"high": [r.reward or 0.0 for r in high], "low": [r.reward or 0.0 for r in low]}
    if compared["high"][0] == compared["low"][0]:  # every rollout shown scores the same: nothing to contrast
        note = f"no contrast: the rollouts compared all score {compared['high'][0]:g}; the proposer was not asked"
        return _kept(reward, Refresh(version=book.version, compared=compared, note=note, **common))
    in_use = sorted({i for r in scored if r.checklist for i in r.checklist.verdicts})
    text = proposer_request(high, low, in_use, section.max_new_items)
    params = SamplingParams(temperature=0.0, max_tokens=1024, seed=step, json_schema=PROPOSER_SCHEMA)
    try:
        [reply] = reward.session.run(proposer.generate([[user(text)]], params))
    except FatalProviderError:
        raise
    except ProviderError as exc:
        note = f"the proposer failed: {exc}"
        return _kept(reward, Refresh(version=book.version, compared=compared, note=note, **common))
    items = read_proposed(reply.text)
    if isinstance(items, str):
        return _kept(reward, Refresh(version=book.version, compared=compared, note=items, **common))
    known = set(in_use) | {i.id for i in book.added}
    fresh = [item for item in items if item.id not in known][: section.max_new_items]
    version = book.accept(fresh)
    note = None if fresh else "no item with a new id was proposed"
    return _kept(reward, Refresh(version=version, accepted=fresh, compared=compared, note=note, **common))


def _kept(reward: JudgeReward, refresh: Refresh) -> Refresh:
    done = reward.store.meta(VERSIONS_KEY, [])
    reward.store.set_meta(**{VERSIONS_KEY: [*done, json.loads(refresh.model_dump_json())]})
    return refresh


def refresh_callback(reward: JudgeReward, section: ChecklistReward, proposer: ManagedModel) -> Any:
    """A TrainerCallback that refreshes the checklist every `section.refresh_every` steps."""
    from transformers import TrainerCallback

    every = section.refresh_every
    assert every is not None

    class ChecklistRefresh(TrainerCallback):
        def __init__(self) -> None:
            self.refreshes: list[Refresh] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step % every == 0:
                book = reward.options.book
                self.refreshes.append(refresh_checklist(reward, section, proposer, state.global_step, book))
            return control

    return ChecklistRefresh()


def refreshes(store: Any) -> list[dict[str, Any]]:
    """The refreshes a reward store records (its meta `checklist_versions`), oldest first."""
    return list(store.meta(VERSIONS_KEY, []))


def refresh_steps(store: Any) -> list[int]:
    """The steps after which a refresh made a new checklist version (the next step's rewards use it), oldest first:
    what a gold monitor reads, during training or after, to attribute a change of its gap to each refresh."""
    steps, version = [], 1
    for refresh in refreshes(store):
        if refresh["version"] > version:
            steps.append(int(refresh["step"]))
            version = refresh["version"]
    return steps
