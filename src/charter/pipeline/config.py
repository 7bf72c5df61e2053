"""The run config: one YAML file from prompts and a constitution to a preference dataset (and models).

Defaults, then YAML, then `--set key=value` overrides. Errors point at file:line:column and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from charter.agreement.config import AgreementConfig
from charter.constitutions.schema import Message
from charter.preference.judge import JudgeSettings
from charter.providers.base import Limits, SamplingParams
from charter.providers.usage import Budget, Price
from charter.yamlio import load_model

STAGES = ("critique", "judge", "reward_model", "dpo", "eval")
DEFAULT_MODEL = "local:smollm2-135m-instruct"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptsConfig(_Strict):
    """Where prompts come from. Exactly one of `path`, `hf_dataset`, `inline`, or `bundled: true`."""

    path: str | None = None
    """A JSONL, CSV or parquet file (relative paths resolve against the config file)."""
    bundled: bool = False
    """Use charter's bundled prompt set (red-team and helpfulness requests); the default if no source is given."""
    hf_dataset: str | None = None
    """A Hugging Face dataset name, loaded with `datasets.load_dataset`."""
    hf_config: str | None = None
    """The dataset's config name, if it has several."""
    split: str = "train"
    """The dataset split."""
    column: str = "prompt"
    """Column holding the prompt: a string, or a list of chat messages (`messages` is also tried)."""
    inline: list[Union[str, list[Message]]] | None = None
    """Prompts written in the config: strings or message lists."""
    limit: int | None = Field(default=None, gt=0)
    """Use at most this many prompts (after shuffling)."""
    shuffle: bool = False
    """Shuffle before applying the limit."""
    seed: int = 0
    """Shuffle seed."""
    max_prompt_tokens: int | None = Field(default=None, gt=0)
    """Longest prompt allowed, estimated at 4 characters per token; longer ones are handled by `too_long`."""
    too_long: Literal["truncate", "skip"] = "truncate"
    """What to do with a prompt over `max_prompt_tokens`: keep its start, or skip it. Counted in the report."""

    @model_validator(mode="after")
    def _one_source(self) -> "PromptsConfig":
        given = [n for n in ("path", "hf_dataset", "inline") if getattr(self, n)] + (["bundled"] if self.bundled else [])
        if len(given) > 1:
            raise ValueError(f"give one prompt source, not {' and '.join(given)}")
        if not given:
            self.bundled = True
        return self


class RoleConfig(_Strict):
    """One model role. A plain string in YAML is taken as `model`."""

    model: str = DEFAULT_MODEL
    """Model string: openai:M, anthropic:M, openai-compatible:M@URL, local:NAME_OR_PATH, scripted:NAME."""
    params: SamplingParams = SamplingParams()
    """Sampling parameters for this role."""
    limits: Limits = Limits()
    """Concurrency, rate limits, retries and timeout for this role's model."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend options (e.g. `batch_size`, `device` for local models)."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value


class JudgeConfig(JudgeSettings, RoleConfig):
    """The judge: its model (as a role) and how it compares (mode, orders, ensemble)."""

    params: SamplingParams | None = None  # type: ignore[assignment]
    """Sampling for `cot`/`verdict` (default: greedy; 512 tokens for cot, 8 for verdict)."""

    def settings(self) -> JudgeSettings:
        return JudgeSettings(**{k: getattr(self, k) for k in JudgeSettings.model_fields})


class CritiqueConfig(_Strict):
    """SL-CAI: critique then revise, N rounds."""

    rounds: int = Field(default=1, ge=1)
    """Critique-revision rounds per prompt."""
    principles: list[str] | None = None
    """Fixed principle ids, one per round (cycled); default: sample by weight, seeded."""
    few_shot: bool = True
    """Put the constitution's worked examples in front of each critique."""


class PairsConfig(_Strict):
    """Which response pairs the judge compares."""

    kinds: list[Literal["revision", "samples"]] = ["revision"]
    """`revision`: initial response vs final revision; `samples`: k policy samples."""
    k: int = Field(default=4, ge=2)
    """Samples per prompt for `samples` pairs."""
    temperature: float = Field(default=1.0, ge=0)
    """Sampling temperature for the k samples."""
    strategy: Literal["all", "best_vs_worst"] = "best_vs_worst"
    """From judged sample pairs keep all pairs, or only the best against the worst sample."""


class FiltersConfig(_Strict):
    """Filters applied when the preference dataset is built (counts go in the report and card)."""

    min_confidence: float = Field(default=0.0, ge=0, le=0.5)
    """Drop pairs whose |p - 0.5| is below this."""
    drop_inconsistent: bool = True
    """Drop pairs whose two presentation orders picked different winners."""
    drop_ties: bool = True
    """Drop pairs judged exactly even (p = 0.5)."""
    dedupe: bool = True
    """Drop exact duplicates (same prompt, chosen and rejected)."""
    max_per_principle: int | None = Field(default=None, gt=0)
    """Cap rows per (first) principle so no principle dominates."""


class RunConfig(_Strict):
    """A charter run."""

    name: str = "run"
    """Run name; the default output directory is runs/NAME."""
    output_dir: str | None = None
    """Where the run directory goes (default: runs/NAME next to where you run charter)."""
    seed: int = 0
    """Seed for principle sampling, pair order and shuffles."""
    constitution: str = "harmless"
    """A bundled constitution name or a YAML file."""
    prompts: PromptsConfig = PromptsConfig(bundled=True)
    """The prompts."""
    stages: list[Literal["critique", "judge", "reward_model", "dpo", "eval"]] = ["critique", "judge"]
    """Stages to run, from: critique, judge, reward_model, dpo, eval."""
    policy: RoleConfig = RoleConfig()
    """The model that answers prompts."""
    critic: RoleConfig | None = None
    """The model that critiques and revises (default: the policy)."""
    judge: JudgeConfig = JudgeConfig()
    """The model that compares responses, and how."""
    critique: CritiqueConfig = CritiqueConfig()
    """Critique/revision settings."""
    pairs: PairsConfig = PairsConfig()
    """Pair construction."""
    filters: FiltersConfig = FiltersConfig()
    """Preference dataset filters."""
    concurrency: int = Field(default=64, gt=0)
    """Prompts in flight at once (each model's own `limits.concurrency` still applies)."""
    budget: Budget = Budget()
    """Cost and token caps; reaching one stops the run cleanly, keeping what is done."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """USD per million tokens by model id (e.g. `openai:gpt-4o-mini`), for cost accounting."""
    cache: str | None = "~/.cache/charter/calls.sqlite"
    """The call cache file shared across runs (null: no cache)."""
    report: bool = True
    """Write the markdown + HTML report at the end of the run."""
    agreement: AgreementConfig = AgreementConfig()
    """Human-agreement settings: the publishing gate (min_kappa / min_agreement), calibration, bootstrap."""
    reward_model: dict[str, Any] | None = None
    """Reward-model training section (see charter.reward_model.config)."""
    dpo: dict[str, Any] | None = None
    """DPO training section (see charter.dpo.config)."""
    eval: dict[str, Any] | None = None
    """Win-rate evaluation section (see charter.dpo.config)."""

    @property
    def critic_role(self) -> RoleConfig:
        return self.critic or self.policy

    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}").expanduser()


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config YAML with `--set` overrides; relative paths resolve against the file."""
    config = load_model(RunConfig, path, overrides)
    base = Path(path).resolve().parent
    if config.prompts.path and not Path(config.prompts.path).is_absolute():
        candidate = base / config.prompts.path
        if candidate.exists():
            config.prompts.path = str(candidate)
    return config
