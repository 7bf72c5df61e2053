"""A loop config (`charter iterate LOOP.yaml`): a base run config, rounds, the data strategy, the human-data mix,
evaluation, the collapse monitor and the stop rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from charter.dpo.config import DPOConfigModel
from charter.loop.metrics import flaggable
from charter.monitor.gold import MonitorConfig
from charter.prompts import PromptsConfig
from charter.yamlio import ConfigModel, LocatedValueError, load_model

Strategy = Literal["replace", "accumulate"]


class HumanMix(ConfigModel):
    """Real preference pairs (written or labelled by people, or taken from a source dataset: never model-written)
    mixed into every round's DPO data, the measured mitigation against collapse."""

    path: str
    """A JSONL/parquet file or Hub dataset of real pairs (prompt, chosen, rejected)."""
    share: float | list[float] = Field(default=0.2)
    """The real share of each round's DPO rows (a list: one per round, the last repeated); `real_share` is its
    floor."""
    split: str = "train"
    """The split, for a Hub dataset."""

    def share_for(self, round_index: int) -> float:
        shares = self.share if isinstance(self.share, list) else [self.share]
        return float(shares[min(round_index, len(shares) - 1)])

    @field_validator("share")
    @classmethod
    def _in_range(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if not values or any(not 0 <= v < 1 for v in values):
            raise ValueError("share: a fraction in [0, 1), or a list of them")
        return value


class CollapseMonitorConfig(ConfigModel):
    """The collapse monitor: each round's policy answers a fixed probe set; its diversity is measured."""

    probes: PromptsConfig = PromptsConfig(bundled=True, shuffle=True, limit=32)
    """The probe prompts, the same every round (default: 32 of the bundled prompts, seeded)."""
    max_tokens: int = Field(default=96, gt=0)
    """Most tokens per probe answer."""
    temperature: float = Field(default=0.7, ge=0)
    """Sampling temperature of the probe answers (seeded)."""
    max_drop: float = Field(default=0.25, gt=0, lt=1)
    """A diversity measure falling more than this fraction below its reference (round 0, or the real data) raises a
    collapse flag, as `rule` says."""
    rule: Literal["interval", "point"] = "interval"
    """`interval`: flag a measure whose fall exceeds `max_drop` and whose 95% interval of the change (leave-one-out
    jackknife over the probes) lies wholly below no change; `point`: flag on the fall alone. Where no interval can
    be had (fewer than 3 answers, or leave-one-out values that do not vary) the point rule decides."""
    against: list[Literal["round_0", "real"]] = Field(default_factory=lambda: ["round_0"])
    """The references a fall is flagged against: `round_0` (the base policy's answers to the same probes) and
    `real` (a seeded sample, as many as the probes, of the real pairs' chosen responses; needs `human`). Both
    comparisons are reported either way."""
    metrics: list[str] | None = None
    """The measures that can raise a flag: the diversity metrics (`distinct_1`, `distinct_2`, `distinct_3`,
    `self_bleu`, `vendi`, `dispersion`: 1 - mean cosine, `compression_ratio`, and any registered beside them), and
    `length_std`, `vocabulary`; null: all of them."""

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        known = flaggable()
        for i, name in enumerate(value or []):
            if name not in known:
                raise LocatedValueError(f"unknown measure {name!r} (known: {', '.join(known)})", (i,))
        if value is not None and not value:
            raise ValueError("name at least one measure, or null for all")
        return value


class EvalConfig(ConfigModel):
    """Each new policy against the base and against the previous round's policy (both orders, Wilson CI)."""

    prompts: str | None = None
    """Held-out prompts (JSONL/parquet); default: the bundled set."""
    judge: str | None = None
    """The judge model string (default: the run config's judge model)."""
    judge_api_key_env: str | None = None
    """The environment variable holding that judge's key (default: the run config's judge's, when it is that judge)."""
    limit: int = Field(default=16, gt=0)
    """Prompts per comparison."""
    max_tokens: int = Field(default=96, gt=0)
    """Most tokens per answer."""
    reward_model: str | None = None
    """A reward model folder: its mean score of each policy's answers is reported too."""
    arena: bool = True
    """After the last round, rank the base and every round's policy on one scale (`charter eval arena` on these
    prompts: Bradley–Terry scores with 95% intervals and rank ranges) into LOOP_DIR/arena."""


class StopConfig(ConfigModel):
    """When the loop stops before its last round."""

    plateau: float | None = Field(default=None, ge=0)
    """Stop when the win rate against the previous round's policy stays below 0.5 + this for `patience` rounds."""
    patience: int = Field(default=1, ge=1)
    """Rounds of plateau before stopping."""
    on_collapse: bool = True
    """Stop when the collapse monitor raises a flag."""


class LoopConfig(ConfigModel):
    """Iterated constitutional rounds: in round r, policy_r answers the prompts, is critiqued, revised and judged
    (a charter run), and DPO on the preference data gives policy_{r+1}."""

    name: str = "loop"
    """Loop name; the default output directory is loops/NAME."""
    output_dir: str | None = None
    """Where the loop directory goes."""
    run: str
    """The run config each round starts from (path, relative to this file); its policy is replaced by the
    round's, its output_dir by LOOP_DIR/STRATEGY/round-R."""
    overrides: list[str] = Field(default_factory=list)
    """`--set` style overrides applied to the run config of every round."""
    rounds: int = Field(default=3, ge=1)
    """Rounds to run at most (DPO steps); the policies monitored are policy_0 ... policy_rounds."""
    strategies: list[Strategy] = Field(default_factory=lambda: ["accumulate"])
    """`replace`: DPO on this round's data only; `accumulate`: on every round's so far. Both: two arms, compared
    in the report."""
    critic: Literal["fixed", "policy"] = "fixed"
    """`fixed`: the run config's critic every round; `policy`: the round's policy critiques itself."""
    judge: Literal["fixed", "policy"] = "fixed"
    """`fixed`: the run config's judge every round; `policy`: the round's policy judges (Self-Rewarding)."""
    synth_each_round: bool = False
    """With a `synth` stage in the run config: synthesize afresh each round (seeded by the round)."""
    dpo: DPOConfigModel = DPOConfigModel()
    """DPO settings (its `model` is the round's policy and its `dataset` the round's data, set by the loop)."""
    human: HumanMix | None = None
    """Real (human or source) pairs mixed into the DPO data."""
    real_share: float = Field(default=0.0, ge=0, lt=1)
    """The least share of real rows (from `human`) in each round's DPO data: a round whose `human.share` is lower,
    or whose real rows run short, draws fewer synthetic rows so that the share holds. 0: no floor."""
    monitor: CollapseMonitorConfig = CollapseMonitorConfig()
    """The collapse monitor."""
    gold_monitor: MonitorConfig | None = None
    """The gold monitor between rounds: the base policy and, after each round's DPO, the new policy answer the
    held-out `prompts` (a file; greedy). The training reward is the round's judge's P(the answer beats the base
    policy's answer to that prompt), judged in the run's judge settings; the gold evaluator scores each answer apart
    from it. Each policy's reward and gold with intervals, the gap, hack signatures and the stop rule (`on_gap: stop`
    ends the arm after the round it flags) go to the loop's report, the gold-best round named. `every` and
    `keep_best` do not apply here: every policy is evaluated and kept."""
    eval: EvalConfig = EvalConfig()
    """The win-rate evaluation of each new policy."""
    stop: StopConfig = StopConfig()
    """Stop rules (the round limit is `rounds`)."""
    seed: int = 0
    """Seed for the rounds (each round's run gets seed + round)."""
    isolate_steps: bool = True
    """Run each step (the run, DPO, the monitor, the evaluation) in a fresh process: what it loaded is handed back
    to the system when it ends, so memory does not grow round by round (a few seconds per step to start it). False:
    every step in the loop's own process."""

    @model_validator(mode="after")
    def _unique(self) -> LoopConfig:
        if len(set(self.strategies)) != len(self.strategies) or not self.strategies:
            raise LocatedValueError("give each strategy once", ("strategies",))
        if self.real_share > 0 and self.human is None:
            raise LocatedValueError("a real share needs real data: set human.path", ("real_share",))
        if "real" in self.monitor.against and self.human is None:
            raise LocatedValueError("comparing with the real data needs it: set human.path", ("monitor", "against"))
        if self.gold_monitor is not None and self.gold_monitor.split is not None:
            raise LocatedValueError("the loop's held-out prompts are a file: give prompts", ("gold_monitor", "split"))
        return self

    def loop_dir(self) -> Path:
        return Path(self.output_dir or f"loops/{self.name}").expanduser()


def load_loop_config(path: str | Path, overrides: list[str] | None = None) -> LoopConfig:
    """Load a loop config; relative paths (the run config, human data, probes) resolve against the file."""
    config = load_model(LoopConfig, path, overrides)
    base = Path(path).resolve().parent

    def here(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute() or not (base / value).exists():
            return value
        return str(base / value)

    config.run = here(config.run) or config.run
    if config.human is not None:
        config.human.path = here(config.human.path) or config.human.path
    if config.monitor.probes.path:
        config.monitor.probes.path = here(config.monitor.probes.path)
    config.eval.prompts = here(config.eval.prompts)
    if config.gold_monitor is not None:
        config.gold_monitor.prompts = here(config.gold_monitor.prompts)
    return config
