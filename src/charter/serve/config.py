"""The config of `charter serve reward`: the YAML of `charter train grpo`, less what only training needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from charter.judge.modes import DEFAULT_RATING_MODE
from charter.judge.settings import JudgeConfig
from charter.providers.cache import DEFAULT_CACHE
from charter.providers.config import RoleConfig, check_cap_prices, check_price_keys
from charter.providers.usage import Budget, Price
from charter.reward.function import SCORE, Scoring, check_one_judge, check_step_reduction, with_default_mode
from charter.reward.scoring import ChecklistReward, StepScoringSettings, VerifiableReward

#: Keys of a `charter train grpo` config that only training reads: the server accepts and ignores them, so that one
#: file configures both.
TRAINING_ONLY = ("model", "prompts", "trl", "device", "chat_template", "lora", "resume")


class ServeConfig(StepScoringSettings):
    """Serve the constitutional judge as a reward over HTTP (OpenRLHF's `--reward.remote_url`, NeMo Gym's `/verify`
    and a native endpoint)."""

    constitution: str = "harmless"
    """Constitution name or YAML path the judge rewards against."""
    judge: JudgeConfig = JudgeConfig(mode=DEFAULT_RATING_MODE)
    """The judge: its model (a role) and how it judges, as in `charter train grpo`."""
    scoring: Scoring = SCORE.name
    """`score`: each completion's rubric score; `group`: its win rate among the completions of its prompt in one
    request; `reference`: P(better than the label / reference, or the reference model's answer); `rank`: the judge
    orders a request's completions in one call per presentation order (Plackett–Luce); `checklist`: each completion
    checked against the request's checklist (`checklist` / `checklists` in the request, else the constitution's
    criteria or the writer's) in one call, the weighted, gated verdicts."""
    checklist: ChecklistReward = ChecklistReward()
    """`checklist` scoring: the aggregation and the writer (`column` and the `refresh_*` keys are training's: the
    server reads each request's checklist from the request)."""
    group_strategy: Literal["all_pairs", "circular"] = "all_pairs"
    """`group` scoring: every two completions, or each against its neighbours in a random cycle (Bradley–Terry)."""
    rank_orders: int = Field(default=3, ge=1)
    """`rank` scoring: shuffled presentation orders per group, one call each."""
    reference_model: RoleConfig | None = None
    """`reference` scoring: the model that answers prompts without a reference (greedy, cached)."""
    judge_weight: float = Field(default=1.0, ge=0)
    """The judge reward's weight in the sum of rewards."""
    verify: VerifiableReward | None = None
    """Add a verifiable reward: a request's label is the prompt's reference for charter's verifiers."""
    reward_model: str | None = None
    """A reward model whose score is added to the reward, weighted beside the judge, as in `charter train grpo`: a
    folder from `charter train reward` or any sequence-classification model (folder or Hub id), loaded once at
    start. It reads prompt + completion as an assistant turn through its tokenizer's chat template (else the two
    texts joined), on CPU, off the event loop."""
    reward_model_weight: float = Field(default=1.0, ge=0)
    """The reward model's weight in the sum of rewards (its score is a logit, not 0..1: weigh it accordingly)."""
    reward_model_batch_size: int = Field(default=16, ge=1)
    """Conversations the reward model scores in one forward pass (bounds its memory)."""
    max_failures: float = Field(default=0.1, ge=0)
    """Read as in training, but the server never stops for failures: each one is answered as a failure."""
    budget: Budget = Budget()
    """Caps on the judge's cost or tokens: past one, requests are answered 503 with the reason."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """USD per million tokens by model id (or name), for the cost and the budget."""
    cache: str | None = DEFAULT_CACHE
    """The call cache (null: none). One per machine: SQLite over NFS is not safe to share between servers."""
    output_dir: Path = Path("reward-server")
    """Where the reward store (run.sqlite) goes."""
    seed: int = 0
    """Seed of the principle draws."""
    concurrency: int = Field(default=64, ge=1)
    """Judge calls in flight at once, shared by all requests."""
    max_queue: int = Field(default=1024, ge=1)
    """Completions accepted (judged or waiting) at once; past it a request is answered 429 with Retry-After, and a
    request of more completions than this is answered 413 (it could never fit)."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    """The largest request body accepted; a larger one is answered 413."""
    group_size: int | None = Field(default=None, ge=2)
    """NeMo Gym's `/verify` with `group` or `rank` scoring: the rollouts of one prompt (its `num_rollouts_per_prompt`),
    gathered until all have arrived and then compared together."""
    failed_reward: float | None = None
    """What `/get_reward` puts in `rewards` for a failed judgment: null (default; OpenRLHF then fails loudly) or a
    number you choose; either way `extra_logs.judge_failed` marks it. `/verify` answers it as `reward` beside NeMo
    Gym's `_ng_failure_class: judge_failed`. The native endpoint always answers null."""

    @model_validator(mode="before")
    @classmethod
    def _from_training_config(cls, data: Any) -> Any:
        """Drop the training-only keys; a judge without a mode gets the scoring's default mode."""
        if not isinstance(data, dict):
            return data
        kept = {k: v for k, v in data.items() if k not in TRAINING_ONLY}
        return with_default_mode(kept)

    @model_validator(mode="after")
    def _mode_fits_scoring(self) -> ServeConfig:
        # the checklist's refresh during training is training's: its keys are checked as given, then left unset
        fields = ChecklistReward.model_fields.items()
        refresh = {name: field.default for name, field in fields if name.startswith("refresh")}
        self.checklist = self.checklist.model_copy(update=refresh)
        self.checklist.model_fields_set.difference_update(refresh)
        check_one_judge(self.scoring, self.judge, "the reward server")
        check_step_reduction(self.scoring, self.step_reduction)
        check_price_keys(self.prices, self)
        check_cap_prices(self.budget, self.prices, self)
        return self
