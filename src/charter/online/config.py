"""The config of `charter train grpo` and `charter train rloo`: online RL with the constitutional judge as reward."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from charter.constitutions import load_constitution
from charter.judge.modes import DEFAULT_MODE, DEFAULT_RATING_MODE
from charter.judge.settings import JudgeConfig
from charter.monitor.gold import MonitorConfig, same_judge, same_judge_line
from charter.online.mitigate import Mitigations
from charter.prompts import PromptsConfig
from charter.providers.cache import DEFAULT_CACHE
from charter.providers.config import RoleConfig, check_cap_prices, check_price_keys
from charter.providers.usage import Budget, Price
from charter.reward.checklisted import CHECKLIST
from charter.reward.function import (
    SCORE,
    Scoring,
    check_one_judge,
    check_step_reduction,
    comparing_misfit,
    scoring_entry,
    with_default_mode,
)
from charter.reward.scoring import ChecklistReward, StepScoringSettings, VerifiableReward
from charter.runs.rewards import PAIR_SCORING
from charter.training.args import checked_trl_fields, grpo_config, online_dpo_config, rloo_config
from charter.training.config import LoraSettings, WinRateEvalConfig
from charter.yamlio import ConfigModel, LocatedValueError

#: The online trainers charter drives: TRL's GRPOTrainer and RLOOTrainer.
Trainer = Literal["grpo", "rloo"]


class OnlineBase(ConfigModel):
    """What every online trainer shares: the policy, its prompts, the constitution, the judge's limits and costs,
    the output and TRL's passthrough."""

    model: str = "smollm2-135m-instruct"
    """The policy: `smollm2-135m-instruct` (the embedded model), a folder or a Hub id."""
    prompts: PromptsConfig | str
    """The prompts to train on: a prompts section (path, bundled, hf_dataset, inline, limit, shuffle, ... as in a
    run config), a JSONL/parquet file, or a run directory (the run's prompts)."""
    constitution: str = "harmless"
    """Constitution name or YAML path the judge rewards against."""
    max_failures: float = Field(default=0.1, ge=0)
    """Failed judgments allowed before training stops: a count (>= 1) or a share of the rewards (< 1)."""
    budget: Budget = Budget()
    """Caps on the judge's cost or tokens, checked after each step: training stops after the step that reaches one
    (its calls finish; the overrun is at most one step), saves a checkpoint and exits with code 4."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """USD per million tokens by model id (or name), for the cost and the budget."""
    cache: str | None = DEFAULT_CACHE
    """The call cache shared with runs (null: none): a repeated completion is never paid twice."""
    output_dir: Path = Path("grpo")
    """Where the policy, metrics.json, README.md and the reward store (run.sqlite) go."""
    seed: int = 0
    """Seed of training, the prompt order and the principle draws."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: CPU gets fp32 (TRL's bf16 default is slow there), CUDA bf16."""
    chat_template: str | None = None
    """A Jinja file or template text for tokenizers without a chat template; default: the tokenizer's own."""
    lora: LoraSettings | None = None
    """Train LoRA adapters through peft instead of all weights; the saved model has them merged in."""
    resume: bool = True
    """Resume from the newest checkpoint in output_dir when a previous run stopped (a budget stop included)."""
    winrate_eval: WinRateEvalConfig | None = None
    """Judge the policy's win rate against reference answers every few steps during training (charter's
    `WinRateCallback`): into the trainer's logs, metrics.json (`winrate_eval`), the report and the card."""
    trl: dict[str, Any] = Field(default_factory=dict)
    """TRL GRPOConfig / RLOOConfig fields, passed through (num_generations, max_completion_length, learning_rate,
    max_steps, beta, temperature, per_device_train_batch_size, ...); each checked against TRL's class's field names
    and types when the config loads."""

    @model_validator(mode="after")
    def _prices(self) -> OnlineBase:
        check_price_keys(self.prices, self)
        check_cap_prices(self.budget, self.prices, self)
        return self


class OnlineConfig(OnlineBase, StepScoringSettings):
    """Train a policy online (GRPO or RLOO through TRL) with charter's judge as the reward."""

    judge: JudgeConfig = JudgeConfig(mode=DEFAULT_RATING_MODE)
    """The judge: its model (a role) and how it judges (mode, scale, rating, orders, ensemble). `score` scoring
    needs mode `score`; `group` and `reference` need a mode that compares two answers."""
    scoring: Scoring = SCORE.name
    """`score`: each completion's rubric score; `group`: its win rate among the completions of its prompt, both
    orders; `reference`: P(better than the prompt's reference, or the reference model's answer); `rank`: the judge
    orders its prompt's completions in one call (listwise), a few times in shuffled order, fitted by Plackett–Luce;
    `checklist`: its prompt's checklist (`checklist` section) answered in one call, the weighted, gated verdicts."""
    checklist: ChecklistReward = ChecklistReward()
    """`checklist` scoring: where each prompt's checklist comes from, the aggregation, and `refresh_every`."""
    group_strategy: Literal["all_pairs", "circular"] = "all_pairs"
    """`group` scoring: `all_pairs` compares every two completions (k(k-1)/2 pairs, the reward a win rate);
    `circular` compares each with its neighbours in a random cycle (k pairs), the reward the expected win rate under
    a Bradley–Terry fit of those comparisons."""
    rank_orders: int = Field(default=3, ge=1)
    """`rank` scoring: the presentation orders each group is ordered in (one call each; shuffled, to cancel the
    judge's position bias)."""
    reference_model: RoleConfig | None = None
    """`reference` scoring: the model that answers prompts without a `reference` column (greedy, cached)."""
    judge_weight: float = Field(default=1.0, ge=0)
    """The judge reward's weight in the sum of rewards; 0 (beside a verifier or a reward model): the judge is not
    asked, no calls, unless `judge_monitor`. Online DPO's `judge_weight` is its weight in the pooled P instead."""
    judge_monitor: bool = False
    """With `judge_weight: 0`, still ask the judge for every completion, into the reward store and TRL's log, training
    on none of it: paid calls that show what the judge thinks of the policy as it trains on another reward."""
    verify: VerifiableReward | None = None
    """Add a verifiable reward from charter's verifiers, weighted against the judge."""
    reward_model: str | None = None
    """A reward model whose score is added to the reward, weighted beside the judge (canonical RLAIF, the judge
    distilled into a model, Lee et al. 2023): a folder from `charter train reward`, or any sequence-
    classification reward model (folder or Hub id). TRL scores each prompt and completion with it, through its
    tokenizer's chat template."""
    reward_model_weight: float = Field(default=1.0, ge=0)
    """The reward model's weight in the sum of rewards (its score is a logit, not 0..1: weigh it accordingly)."""
    mitigations: Mitigations = Mitigations()
    """Mitigations against judge gaming, each one setting, none by default: rubric dropout, a panel with a penalty on
    disagreement, length-controlled rewards, a cap for hack signatures (see the mitigations guide)."""
    monitor: MonitorConfig | None = None
    """The gold monitor: every `every` steps the policy answers held-out prompts (a file, or a `split` of the
    training prompts never trained on), scored by the training reward and a gold evaluator apart from it; the gap
    with intervals, hack signatures, the stop rule (`on_gap`) and the gold-best checkpoint go to metrics.json
    (`monitor`), the status, the report and the card."""

    @model_validator(mode="before")
    @classmethod
    def _judge_mode_from_scoring(cls, data: Any) -> Any:
        return with_default_mode(data)

    @field_validator("trl")
    @classmethod
    def _trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Checked against both trainers' configs (`charter train grpo` or `rloo` chooses one when it starts)."""
        return checked_trl_fields(value, [grpo_config, rloo_config])

    @model_validator(mode="after")
    def _mode_fits_scoring(self) -> OnlineConfig:
        check_one_judge(self.scoring, self.judge, "online training")
        check_step_reduction(self.scoring, self.step_reduction)
        if self.judge_weight == 0 and not (self.verify or self.reward_model or self.judge_monitor):
            raise LocatedValueError(
                "judge_weight 0 leaves nothing to train on: add verify or reward_model (or judge_monitor: true to "
                "train on no reward and watch the judge)",
                ("judge_weight",),
            )
        if "reward_weights" in self.trl:
            raise LocatedValueError("set judge_weight and verify.weight instead", ("trl", "reward_weights"))
        if self.checklist.refresh_every is not None and self.scoring != CHECKLIST.name:
            raise LocatedValueError(f"refresh_every needs scoring: {CHECKLIST.name}", ("checklist", "refresh_every"))
        self._mitigations_fit()
        if self.monitor is not None:
            self._gold_apart(self.monitor)
        return self

    def _mitigations_fit(self) -> None:
        m = self.mitigations
        if m.rubric_dropout is not None and self.scoring != CHECKLIST.name:
            raise LocatedValueError(
                f"rubric_dropout needs scoring: {CHECKLIST.name}", ("mitigations", "rubric_dropout")
            )
        asks_judge = self.judge_weight > 0 or self.judge_monitor
        if m.settings() and not asks_judge:
            raise LocatedValueError("mitigations change the judge's reward: judge_weight is 0", ("mitigations",))
        if m.panel is not None and (self.budget.max_cost_usd is not None or self.budget.max_tokens is not None):
            raise LocatedValueError(
                "the budget counts the judge's calls alone: a panel's judges are not under it", ("mitigations", "panel")
            )

    def _gold_apart(self, monitor: MonitorConfig) -> None:
        """A gold evaluator that is the training reward itself is refused: the checklist the reward reads, or the
        verifier it adds."""
        gold = monitor.gold
        if gold.checklist_column is not None and self.scoring == CHECKLIST.name:
            if gold.checklist_column == self.checklist.column:
                raise LocatedValueError(
                    f"the gold checklist is the reward's own column {gold.checklist_column!r}: give held-out items "
                    "the reward never sees",
                    ("monitor", "gold", "checklist_column"),
                )
        if gold.verifier is not None and self.verify is not None and gold.verifier == self.verify.verifier:
            raise LocatedValueError(
                f"the gold verifier {gold.verifier!r} is the training reward's own verifier",
                ("monitor", "gold", "verifier"),
            )
        rates = bool(scoring_entry(self.scoring).rates)
        panel = self.mitigations.panel.judges if self.mitigations.panel is not None else []
        training = [m for m in [self.judge.model or "", *(r.model for r in panel)] if m]  # the judges the reward asks
        for i, member in enumerate(gold.members if gold.constitution is not None else []):
            if member.model in training and same_judge(
                gold.model_copy(update={"judge": member, "models": None, "weights": None}),
                training,
                load_constitution(self.constitution),
                self.judge,
                rates,
            ):
                at = ("monitor", "gold", "judge") if gold.models is None else ("monitor", "gold", "models", i)
                raise LocatedValueError(same_judge_line(gold, member.model), at)
        if self.judge_weight == 0 and not self.judge_monitor:
            raise LocatedValueError(
                "the monitor compares the judge's reward with gold: judge_weight 0 asks no judge (set judge_monitor)",
                ("monitor",),
            )


class OnlineDPOConfig(OnlineBase):
    """Train a policy with online DPO (OAIF, through TRL's online DPO trainer): two completions per prompt from the
    current policy, compared by charter's pairwise judge, a DPO step on the pairs the judge decided."""

    judge: JudgeConfig = JudgeConfig(mode=DEFAULT_MODE)
    """The pairwise judge: its model (a role), or a panel (`models`, optional `weights`), and how it compares (mode
    logprobs, cot or verdict; orders, ensemble). With `orders: both` a pair whose two orders pick different winners
    is undecided; a pair any panel member fails is a failed judgment."""
    scoring: Literal[PAIR_SCORING, CHECKLIST.name] = PAIR_SCORING  # type: ignore[valid-type] - the entries' names
    """`pair`: the pairwise judge compares the two completions; `checklist`: each is checked against its prompt's
    checklist (one call each) and the pair's P(first better) is 0.5 plus half their score difference (a pair where
    either has no score is masked as failed)."""
    checklist: ChecklistReward = ChecklistReward()
    """`checklist` scoring: where each prompt's checklist comes from and the aggregation (no `refresh_every`)."""
    min_confidence: float = Field(default=0.1, ge=0, lt=0.5)
    """The least |P(first better) - 0.5| of a pair trained on; a pair below it is masked as undecided."""
    reward_model: str | None = None
    """A reward model that votes on each pair beside the judge, or instead of it with `judge_weight: 0` (canonical
    RLAIF, the judge distilled into a model, Lee et al. 2023): a folder from `charter train reward`, or any
    sequence-classification reward model (folder or Hub id) whose tokenizer has a chat template. Its P(first
    better) is sigmoid(r_first - r_second) (the Bradley–Terry probability it was trained on); the pair is decided on
    the weighted mean of it and the judge's P, and a pair the judge fails is still masked as failed."""
    reward_model_weight: float = Field(default=1.0, gt=0)
    """The reward model's weight in the pooled P(first better)."""
    judge_weight: float = Field(default=1.0, ge=0)
    """The judge's weight in the pooled P(first better); 0 (with a reward model): the judge is not asked, no calls."""
    output_dir: Path = Path("online-dpo")
    """Where the policy, metrics.json, README.md and the reward store (run.sqlite) go."""
    mitigations: Mitigations = Mitigations()
    """Mitigations against judge gaming that act on each completion's checklist score (`scoring: checklist`): rubric
    dropout, a length penalty (`length_control` with `rule: penalty`) and a cap for hack signatures, applied to both
    completions' scores before the pair's P(first better) is taken from them. A judge panel is `judge.models`; the
    batch's length residual has no pair form (see the mitigations guide)."""
    monitor: MonitorConfig | None = None
    """The gold monitor, as for GRPO: every `every` steps the policy answers held-out prompts (a file, or a `split`
    of the training prompts never trained on), scored by the training reward and a gold evaluator apart from it.
    Online DPO's judge rewards pairs, so its training reward here is the judge's P(the answer is better than the
    policy's own answer to that prompt at the first evaluation), its mean the win rate against the starting policy
    (0.5 at step 0). The gap, hack signatures, the stop rule and the gold-best checkpoint go to metrics.json
    (`monitor`), the status, the report and the card."""
    trl: dict[str, Any] = Field(default_factory=dict)
    """TRL OnlineDPOConfig fields, passed through (max_new_tokens, learning_rate, max_steps, beta, loss_type,
    temperature, per_device_train_batch_size, ...); each checked against its field names and types when the config
    loads."""

    @model_validator(mode="before")
    @classmethod
    def _comparing_judge(cls, data: Any) -> Any:
        """A judge without a mode compares by log-probabilities."""
        if isinstance(data, dict):
            judge = data.get("judge", {})
            judge = {"model": judge} if isinstance(judge, str) else judge
            if isinstance(judge, dict) and "mode" not in judge:
                data = {**data, "judge": {**judge, "mode": DEFAULT_MODE}}
        return data

    @field_validator("trl")
    @classmethod
    def _trl_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return checked_trl_fields(value, [online_dpo_config])

    @model_validator(mode="after")
    def _judge_compares(self) -> OnlineDPOConfig:
        misfit = None if self.scoring == CHECKLIST.name else comparing_misfit(self.judge, "online DPO")
        if self.checklist.refresh_every is not None:
            raise LocatedValueError("online DPO takes no refresh_every", ("checklist", "refresh_every"))
        if misfit:
            raise LocatedValueError(misfit, ("judge", "mode"))
        if self.judge_weight == 0 and not self.reward_model:
            raise LocatedValueError("judge_weight 0 needs a reward_model to decide the pairs", ("judge_weight",))
        for key in ("reward_funcs", "reward_weights", "missing_eos_penalty"):
            if key in self.trl:  # a reward, or a penalty added to one: the judge's preference is the only signal
                raise LocatedValueError("the judge alone gives online DPO its preferences", ("trl", key))
        self._pair_mitigations()
        gold = self.monitor.gold if self.monitor is not None else None
        if gold is not None and self.scoring == CHECKLIST.name and gold.checklist_column == self.checklist.column:
            raise LocatedValueError(
                f"the gold checklist is the reward's own column {gold.checklist_column!r}: give held-out items the "
                "reward never sees",
                ("monitor", "gold", "checklist_column"),
            )
        return self

    def _pair_mitigations(self) -> None:
        """The mitigations online DPO has: the ones that act on each completion's checklist score."""
        m = self.mitigations
        if not m.settings():
            return
        if self.scoring != CHECKLIST.name:
            raise LocatedValueError(
                "online DPO's mitigations act on each completion's checklist score: set scoring: checklist (a pair's "
                "judgment is a preference between two answers, not a score of each)",
                ("mitigations",),
            )
        if m.panel is not None:
            raise LocatedValueError(
                "online DPO's judge panel is judge.models (a pair any member fails is masked); the disagreement "
                "penalty is a rule of per-completion rewards from several judges",
                ("mitigations", "panel"),
            )
        if m.length_control is not None and m.length_control.rule == "residual":
            raise LocatedValueError(
                "the residual rule takes a batch's length trend out of its rewards; online DPO scores a pair at a "
                "time: use rule: penalty",
                ("mitigations", "length_control", "rule"),
            )
        if self.judge_weight == 0:
            raise LocatedValueError("mitigations change the judge's scores: judge_weight is 0", ("mitigations",))
