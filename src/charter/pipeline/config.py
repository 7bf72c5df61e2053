"""The run config: one YAML file from prompts and a constitution to a preference dataset (and models).

It composes the stages' own typed sections end to end. Defaults, then YAML, then `--set key=value`
overrides; errors point at file:line:column and the key. `charter config schema` prints its JSON Schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from charter.agreement.config import AgreementConfig
from charter.api_args import public
from charter.checklist.store import ChecklistConfig
from charter.critique.config import CritiqueConfig
from charter.dpo.config import DPOConfigModel
from charter.evals.winrate import WinrateConfig
from charter.judge.settings import JudgeConfig
from charter.preference.config import FiltersConfig, PairingConfig
from charter.prompts import PromptsConfig
from charter.providers.base import SamplingParams
from charter.providers.cache import DEFAULT_CACHE
from charter.providers.config import DEFAULT_MODEL, RoleConfig, RunBatchConfig, check_cap_prices, check_price_keys
from charter.providers.usage import Budget, Price
from charter.reward_model.config import RewardModelConfig
from charter.stats.diversity import DiversityConfig
from charter.synth.config import SynthConfig
from charter.training.args import dpo_config, reward_config, unchecked
from charter.yamlio import ConfigModel, LocatedValueError, load_model

STAGES = ("synth", "critique", "judge", "reward_model", "dpo", "eval")
TRAINING_STAGES = ("reward_model", "dpo", "eval")
#: stages that need a config section of their own name
SECTION_STAGES = ("synth", *TRAINING_STAGES)

__all__ = [
    "CritiqueConfig",
    "DEFAULT_MODEL",
    "FiltersConfig",
    "ForecastConfig",
    "JudgeConfig",
    "PairingConfig",
    "PromptsConfig",
    "RoleConfig",
    "RunConfig",
    "STAGES",
    "TRAINING_STAGES",
    "load_run_config",
]


class ExecutionConfig(ConfigModel):
    """Where a run's per-prompt work runs: this process, or shards over a Ray cluster."""

    engine: Literal["local", "ray"] = "local"
    """`local`: this process. `ray`: the prompts split into `shards` by a stable hash, each a run directory under
    RUN_DIR/shards/ run as a Ray task (its own store and cache file, 1/N of every rate limit and of the budget),
    merged into the run as they finish. Needs `pip install charter[ray]`."""
    shards: int = Field(default=2, ge=1)
    """How many shards (Ray tasks) the prompts split into."""
    address: str | None = None
    """The Ray cluster: `auto`, `ray://HOST:10001`, or null/`local` to start a local one (the shard directories
    must be on storage every node can reach)."""
    num_cpus: int | None = Field(default=None, gt=0)
    """CPUs of a local cluster (default: all)."""


class ForecastConfig(ConfigModel):
    """How the cost forecast counts (`charter run --dry-run`, `charter.estimate`, and the forecast a run stores when
    it starts, shown beside the actual cost in its report)."""

    counter: Literal["auto", "chars", "words"] = "auto"
    """How texts are counted in tokens: `auto` uses the model's own tokenizer where one is at hand offline
    (tiktoken for `openai:` models where it is installed, a `local:` model's tokenizer where it is on disk), else
    `chars`; `chars`: `chars_per_token` characters a token; `words`: `tokens_per_word` tokens a whitespace-separated
    word."""
    chars_per_token: float = Field(default=4.0, gt=0)
    """Characters a token where `chars` counts (4: English prose through OpenAI's and Llama's tokenizers)."""
    tokens_per_word: float = Field(default=1.33, gt=0)
    """Tokens a word where `words` counts."""
    output_share: float = Field(default=0.5, gt=0, le=1)
    """A text reply's expected length as a share of its `max_tokens` (the high end takes all of `max_tokens`)."""
    output_share_low: float = Field(default=0.2, gt=0, le=1)
    """A text reply's length at the low end, as a share of its `max_tokens`."""
    sample: int = Field(default=200, ge=1)
    """Prompts counted (spread evenly over the prompt set); the forecast scales them to every prompt."""
    heuristic_error: float = Field(default=0.15, ge=0, lt=1)
    """How far a heuristic's count may be from the provider's tokenizer, either way, as a share (a tokenizer's own
    count is taken as exact). A prompt prefix near a prompt cache's 1,024-token minimum is then cached, in the
    expected figure, in the share of that range where it reaches the minimum (at the low end: wherever it can)."""

    @model_validator(mode="after")
    def _shares(self) -> ForecastConfig:
        if self.output_share_low > self.output_share:
            raise LocatedValueError("must not be above output_share", ("output_share_low",))
        return self


class RunConfig(ConfigModel):
    """A charter run."""

    name: str = "run"
    """Run name; the default output directory is runs/NAME."""
    output_dir: str | None = None
    """Where the run directory goes (default: runs/NAME next to where you run charter)."""
    seed: int = 0
    """Seed for principle sampling and shuffles."""
    constitution: str = "harmless"
    """A bundled constitution name or a YAML file."""
    prompts: PromptsConfig = PromptsConfig(bundled=True)
    """The prompts."""
    stages: list[Literal["synth", "critique", "judge", "reward_model", "dpo", "eval"]] = ["critique", "judge"]
    """Stages to run, from: synth, critique, judge, reward_model, dpo, eval."""
    policy: RoleConfig = RoleConfig()
    """The model that answers prompts."""
    critic: RoleConfig | None = None
    """The model that critiques and revises (default: the policy)."""
    judge: JudgeConfig = JudgeConfig()
    """The model that compares responses, and how."""
    checklist: ChecklistConfig | None = None
    """A checklist for each prompt (from a model, the prompts' `checklist` column, or the constitution's criteria):
    stored, exported as a `checklist` column, and what judge mode `checklist` judges by."""
    critique: CritiqueConfig = CritiqueConfig()
    """Critique/revision settings."""
    pairs: PairingConfig = PairingConfig()
    """Pair construction."""
    filters: FiltersConfig = FiltersConfig()
    """Preference dataset filters."""
    diversity: DiversityConfig = DiversityConfig()
    """How the diversity of the dataset is measured when the run writes it (distinct-n, self-BLEU, Vendi score,
    compression, lengths; in the report, `charter status --json` and the dataset card)."""
    concurrency: int = Field(default=64, gt=0)
    """Prompts in flight at once (each model's own `limits.concurrency` still applies). A run whose roles use a
    batch API keeps every prompt in flight, up to `batch.in_flight`, so each step is one batch round."""
    execution: ExecutionConfig = ExecutionConfig()
    """Run the per-prompt work in this process (`local`) or sharded over a Ray cluster (`ray`)."""
    batch: RunBatchConfig = RunBatchConfig()
    """Provider batch APIs (OpenAI Batch API, Anthropic Message Batches): `enabled` for every openai/anthropic
    role (or `batch: true` on a role), polling and gathering times, size limits."""
    max_failures: float = Field(default=0.1, ge=0)
    """Failed items (chains, sample sets, judgments) a run accepts: a count (1 or more) or a share of the items
    it attempted (below 1). Past it the run stops starting new items, keeps what is done and exits 3."""
    stop_grace_s: float = Field(default=10.0, ge=0)
    """On Ctrl-C or SIGTERM (Slurm preemption, Kubernetes, systemd, `timeout`): no new call starts, and the calls in
    flight get this many seconds to finish into the call cache before they are cancelled; the stages are then marked
    interrupted, the partial dataset and the report are written, and the run exits 130 (Ctrl-C) or 143 (SIGTERM). A
    second signal stops at once."""
    quarantine_after: int = Field(default=3, ge=1)
    """An item that failed in this many runs of the directory is not tried again (quarantined, and listed)."""
    budget: Budget = Budget()
    """Cost and token caps; reaching one stops the run cleanly, keeping what is done. A cap below the run's cost
    forecast is warned about before the first call."""
    forecast: ForecastConfig = ForecastConfig()
    """How the cost forecast counts tokens and replies (`charter run --dry-run`)."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """USD per million tokens by model id (`openai:gpt-4o-mini`), bare name, or model string as a role writes it; a
    key naming no model of the run is an error. A model priced here is priced at this (always); another `openai:` or
    `anthropic:` model at the genai-prices library's bundled prices (offline); any other at 0 (unpriced)."""
    cache: str | None = DEFAULT_CACHE
    """The call cache file shared across runs (null: no cache)."""
    report: bool = True
    """Write the markdown + HTML report at the end of the run."""
    synth: SynthConfig | None = None
    """Prompt synthesis (the `synth` stage, first): the run's `prompts` are its seeds, and the synthesized set
    (RUN_DIR/synth/prompts.jsonl, with the seeds unless `include_seeds: false`) becomes the run's prompt set."""
    agreement: AgreementConfig = AgreementConfig()
    """Human-agreement settings: the publishing gate (min_kappa / min_agreement), calibration, bootstrap."""
    reward_model: RewardModelConfig | None = None
    """Reward-model training on this run's preferences (its `dataset` defaults to this run)."""
    dpo: DPOConfigModel | None = None
    """DPO training on this run's preferences (its `dataset` defaults to this run)."""
    eval: WinrateConfig | None = None
    """Win-rate evaluation of the DPO policy (`run_dir` defaults to this run, `prompts` to the bundled set)."""

    @model_validator(mode="wrap")
    @classmethod
    def _trl_of_listed_stages(cls, data: Any, handler: ModelWrapValidatorHandler[RunConfig]) -> RunConfig:
        """The `trl:` fields of the training stages listed in `stages` are checked against TRL's classes as the
        config loads; a section whose stage is not listed is checked by the load that lists it (`--set stages=...`),
        so a run that trains nothing does not import TRL."""
        listed = data.get("stages", cls.model_fields["stages"].default) if isinstance(data, dict) else None
        if not isinstance(listed, list):
            return handler(data)
        trainers = {"reward_model": reward_config, "dpo": dpo_config}
        with unchecked(frozenset(load for stage, load in trainers.items() if stage not in listed)):
            return handler(data)

    @model_validator(mode="after")
    def _training_sections(self) -> RunConfig:
        for index, stage in enumerate(self.stages):
            if stage in SECTION_STAGES and getattr(self, stage) is None:
                raise LocatedValueError(
                    f"'{stage}' is listed but the run config has no '{stage}:' section", ("stages", index)
                )
        return self

    @model_validator(mode="after")
    def _checklist_for_its_mode(self) -> RunConfig:
        if self.judge.mode_entry.needs_context and self.checklist is None:
            raise LocatedValueError(
                f"judge mode {self.judge.mode} judges by each prompt's checklist: add a `checklist:` section",
                ("judge", "mode"),
            )
        return self

    @model_validator(mode="after")
    def _price_keys(self) -> RunConfig:
        check_price_keys(self.prices, self)
        check_cap_prices(self.budget, self.prices, self)
        return self

    @property
    def critic_role(self) -> RoleConfig:
        return self.critic or self.policy

    @property
    def model_roles(self) -> list[RoleConfig]:
        """The roles whose models the per-prompt work calls: policy, critic, the judge (each member of a panel) and
        the checklists' writer."""
        writer = [self.checklist.model] if self.checklist is not None and self.checklist.model is not None else []
        return [self.policy, self.critic_role, *self.judge.members, *writer]

    def samples_params(self) -> SamplingParams:
        """The policy's sampling with the samples' temperature (for `samples` pairs)."""
        return self.policy.params.model_copy(update={"temperature": self.pairs.temperature})

    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}").expanduser()


@public
def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config YAML file, with `--set`-style overrides applied on top.

    Relative paths in it (the prompt file, the synth seeds, the audit pairs) resolve against the file's folder
    where a file of that name is there.

    Args:
        path: The run config YAML file.
        overrides: `key.sub=value` items, as `--set` takes them; each value is read as YAML (numbers, booleans,
            lists), else kept as a string.

    Returns:
        The validated run config.

    Raises:
        ConfigError: The file is missing, unreadable or not valid YAML, or the config does not validate (one line
            per error, naming file:line:column and the key).
        ArgumentError: An override is not `key=value`.
    """
    config = load_model(RunConfig, path, overrides)
    base = Path(path).resolve().parent
    if config.prompts.path and not Path(config.prompts.path).is_absolute():
        candidate = base / config.prompts.path
        if candidate.exists():
            config.prompts.path = str(candidate)
    synth = config.synth
    if (
        synth is not None
        and synth.seeds is not None
        and synth.seeds.path
        and not Path(synth.seeds.path).is_absolute()
        and (base / synth.seeds.path).exists()
    ):
        synth.seeds.path = str(base / synth.seeds.path)
    audit = config.judge.audit
    if audit is not None and audit.pairs and not Path(audit.pairs).is_absolute() and (base / audit.pairs).exists():
        audit.pairs = str(base / audit.pairs)
    return config
