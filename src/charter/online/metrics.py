"""What `train_online` returns and writes to OUTPUT_DIR/metrics.json (the model card reads it too)."""

from __future__ import annotations

from typing import Any, TypedDict

from charter.evals.during import WinRateEval
from charter.monitor.gold import MonitorSummary
from charter.online.config import Trainer
from charter.runs.rewards import StepPairs, StepRewards


class Usage(TypedDict):
    """What the judge's calls cost, all processes together."""

    calls: int
    """Calls that reached the judge (paid for)."""
    cached: int
    """Calls answered from the call cache."""
    prompt_tokens: int
    """Prompt tokens of the paid calls."""
    completion_tokens: int
    """Completion tokens of the paid calls."""
    cost_usd: float
    """Their cost at the configured prices."""


class OnlineRunMetrics(TypedDict):
    """What every online training returns and writes to OUTPUT_DIR/metrics.json (each trainer adds its own)."""

    judge: str
    """The judge model."""
    constitution: str
    """The constitution's name and short hash."""
    stopped: str
    """`finished`; `budget` when the budget stopped training (exit code 4); `monitor` when the gold monitor's stop
    rule did (`monitor.on_gap: stop`)."""
    trl_log: list[dict[str, float]]
    """TRL's logged values per step (loss, kl, the trainer's reward figures, completion length, step time)."""
    usage: Usage
    """The judge's calls and cost, all processes together."""
    training: dict[str, Any]
    """Steps, seconds, device, batch and processes."""
    winrate_eval: list[WinRateEval]
    """The win rate judged during training (the `winrate_eval` section), per evaluation step; [] without one."""
    config: dict[str, Any]
    """The config, as run."""


class OnlineMetrics(OnlineRunMetrics):
    """What `train_online` returns and writes to OUTPUT_DIR/metrics.json."""

    trainer: Trainer
    """grpo or rloo."""
    scoring: str
    """How the judge rewarded: score, group or reference."""
    steps: list[StepRewards]
    """The judge's reward per step: mean, spread, failures, answers from the cache or the store."""
    rewards: int
    """Rewards given, failures included."""
    failures: int
    """Failed judgments (reward None)."""
    checklist_versions: list[dict[str, Any]]
    """`checklist.refresh_every`: each refresh of the checklist (step, version, items accepted, rewards compared,
    the proposer, a note where nothing was accepted); [] without one."""
    refresh_steps: list[int]
    """`checklist.refresh_every`: the steps after which a refresh made a new checklist version (the rewards of the
    next step use it), for a gold monitor to attribute a change of its gap to each refresh; [] without one."""
    mitigations: dict[str, Any]
    """The `mitigations` set (`settings`) and what each did per step (`steps`: the rubric items left out per
    prompt, the panel's mean spread, the length slope, the completions capped); {} without any."""
    monitor: MonitorSummary | None
    """The gold monitor (the `monitor` section): each evaluation's reward and gold score with intervals, the gap,
    hack signatures, the flags of the stop rule, the gold-best step and checkpoint; None without one."""


class OnlineDPOMetrics(OnlineRunMetrics):
    """What `train_online_dpo` returns and writes to OUTPUT_DIR/metrics.json."""

    trainer: str
    """online-dpo."""
    steps: list[StepPairs]
    """Per step: pairs, trained, masked failed and undecided, judge calls, cache hits, cost."""
    pairs: int
    """Pairs judged."""
    trained: int
    """Pairs in the loss: the judge decided them."""
    masked: dict[str, int]
    """Pairs left out of the loss, by reason: failed (the judgment failed), undecided (the orders disagreed or the
    confidence was below min_confidence)."""
    skipped_steps: int
    """Steps whose pairs were all masked: skipped, no optimizer step (weights, optimizer state and learning-rate
    schedule as they were)."""
    mitigations: dict[str, Any]
    """The `mitigations` set (`settings`) and what each did per step (`steps`: the rubric items left out per
    prompt, completions over the reference length, completions capped); {} without any."""
    monitor: MonitorSummary | None
    """The gold monitor (the `monitor` section), its training reward the judge's win rate against the policy's
    answers at the first evaluation; None without one."""
