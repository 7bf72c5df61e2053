"""The run config's `judge:`, `pairs:` and `filters:` sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from charter.providers.base import SamplingParams
from charter.providers.config import RoleConfig
from charter.yamlio import ConfigModel


class JudgeSettings(ConfigModel):
    """How the judge compares two responses."""

    mode: Literal["logprobs", "cot", "verdict"] = "logprobs"
    """`logprobs`: option-token probabilities; `cot`: reasoning then a verdict; `verdict`: one letter."""
    orders: Literal["both", "one"] = "both"
    """Evaluate each comparison with the responses in both orders (position bias cancels) or one."""
    principles_per_pair: int = Field(default=1, ge=1)
    """Ensemble size: principles sampled per pair (by weight, seeded, without replacement)."""
    principles: list[str] | None = None
    """Fixed principle ids to use for every pair instead of sampling."""
    clamp: tuple[float, float] = (0.4, 0.6)
    """Range each chain-of-thought vote is clamped into (loser, winner)."""
    max_retries: int = Field(default=2, ge=0)
    """Re-asks (with a new seed) on unparseable output before recording a failure."""
    params: SamplingParams | None = None
    """Sampling for `cot`/`verdict` (default: greedy; 512 tokens for cot, 8 for verdict)."""

    @model_validator(mode="after")
    def _check_clamp(self) -> "JudgeSettings":
        low, high = self.clamp
        if not 0 <= low <= 0.5 <= high <= 1:
            raise ValueError("clamp must satisfy 0 <= low <= 0.5 <= high <= 1")
        return self

    def sampling(self) -> SamplingParams:
        """The sampling parameters of `cot`/`verdict` calls."""
        if self.params is not None:
            return self.params
        return SamplingParams(temperature=0.0, max_tokens=512 if self.mode == "cot" else 8, seed=0)

    def ensemble(self) -> str:
        """The ensemble in words: the fixed principles, or how many are sampled."""
        if self.principles:
            return f"fixed principles {', '.join(self.principles)}"
        return f"{self.principles_per_pair} principle(s) per pair, sampled by weight"


class JudgeConfig(JudgeSettings, RoleConfig):
    """The judge: its model (as a role) and how it compares (mode, orders, ensemble)."""

    params: SamplingParams | None = None  # type: ignore[assignment]
    """Sampling for `cot`/`verdict` (default: greedy; 512 tokens for cot, 8 for verdict)."""

    def settings(self) -> JudgeSettings:
        """The comparison settings alone (without the model and its limits)."""
        return JudgeSettings(**{k: getattr(self, k) for k in JudgeSettings.model_fields})


class PairsConfig(ConfigModel):
    """Which response pairs the judge compares."""

    kinds: list[Literal["revision", "samples"]] = ["revision"]
    """`revision`: initial response vs final revision; `samples`: k policy samples."""
    k: int = Field(default=4, ge=2)
    """Samples per prompt for `samples` pairs."""
    temperature: float = Field(default=1.0, ge=0)
    """Sampling temperature for the k samples."""
    strategy: Literal["all", "best_vs_worst"] = "best_vs_worst"
    """From judged sample pairs keep all pairs, or only the best against the worst sample."""


class FiltersConfig(ConfigModel):
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
