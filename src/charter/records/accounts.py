"""People, money and calibration: human labels (as stored and as published), usage per role and model, the
calibration map fitted to people's labels, and the fingerprints of the settings in effect."""

from __future__ import annotations

import bisect
from typing import Literal

from pydantic import Field

from charter.logistic import logit, sigmoid
from charter.records.base import Message, Record


class HumanLabel(Record):
    """One annotator's label on a spot-checked pair, in the pair's own terms."""

    pair_id: str
    """The pair labeled."""
    annotator: str
    """Who labeled it."""
    label: Literal["a", "b", "tie", "skip"]
    """`a`: the pair's response a is better, whatever order it was shown in."""
    shown_order: Literal["ab", "ba"]
    """`ab`: a was shown first on the page; `ba`: b first."""
    created_at: float
    """When (seconds since the epoch)."""
    replaced_count: int = 0
    """How many earlier labels by this annotator on this pair it replaced."""


class LabelRow(Record):
    """A human label as published (the `human_labels` configuration): the label with the pair it labels."""

    pair_id: str
    """The pair labeled."""
    annotator: str
    """Who labeled it."""
    label: Literal["a", "b", "tie"]
    """The better response in the pair's terms (skips are not published)."""
    shown_order: Literal["ab", "ba"]
    """The order the pair was shown in."""
    created_at: str
    """When (ISO 8601, UTC)."""
    prompt: list[Message]
    """The pair's conversation."""
    response_a: str
    """The pair's response a."""
    response_b: str
    """The pair's response b."""
    run_id: str
    """The run the pair came from."""
    synthetic: bool = False
    """Always false: a person wrote this label."""


class UsageRow(Record):
    """Tokens and cost for one (role, model)."""

    role: str
    """policy, critic, judge, ..."""
    model: str
    """Model id."""
    calls: int = 0
    """Calls answered by the model."""
    cached: int = 0
    """Calls answered from the call cache (free)."""
    prompt_tokens: int = 0
    """Prompt tokens of the answered calls."""
    completion_tokens: int = 0
    """Completion tokens of the answered calls."""
    cost_usd: float = 0.0
    """Priced cost of the answered calls."""
    estimated: int = 0
    """Answered calls whose reply carried no usage: their tokens are estimated from characters."""
    retries: int = 0
    """Requests sent again after a failure worth retrying (429, 5xx, a timeout, a dropped connection, a malformed
    reply; a failed request of a provider batch sent in the next round)."""
    cache_read_tokens: int = 0
    """Prompt tokens (of `prompt_tokens`) the provider read from its prompt cache, billed at `cached_input`."""
    cache_write_tokens: int = 0
    """Prompt tokens (of `prompt_tokens`) the provider wrote to its prompt cache, billed at `cache_write`."""
    cache_saved_usd: float = 0.0
    """What the provider's prompt cache saved against pricing every prompt token at the input price."""


#: How a judge's probabilities are mapped to calibrated ones.
CalibrationMethod = Literal["platt", "temperature", "isotonic"]


class CalibrationMap(Record):
    """A map from the judge's P(a) to a calibrated P(a), fitted to human labels by `charter agreement`.

    It applies to judgments of the judge settings it was fitted on (`judge_fingerprint`) only, and is
    joined into the dataset whenever the dataset is written, so no re-run loses it.
    """

    method: CalibrationMethod
    """How it was fitted."""
    judge_fingerprint: str
    """The judge settings whose probabilities it maps."""
    temperature: float | None = None
    """temperature: sigmoid(logit(p) / T)."""
    slope: float | None = None
    """platt: sigmoid(slope * logit(p) + intercept)."""
    intercept: float | None = None
    """platt: the intercept."""
    x: list[float] = Field(default_factory=list)
    """isotonic: increasing thresholds of p."""
    y: list[float] = Field(default_factory=list)
    """isotonic: the calibrated value at each threshold (linear in between, clipped outside)."""
    min_confidence: float = 0.0
    """Rows whose calibrated P(chosen) is below 0.5 + this are dropped from the dataset."""
    labels: int = 0
    """Decisive human labels it was fitted on."""
    fitted_at: str = ""
    """When (ISO 8601, UTC)."""

    def apply(self, p: float) -> float:
        """The calibrated P(a) for the judge's P(a)."""
        if self.method == "isotonic":
            return _interpolate(self.x, self.y, p)
        z = logit(p)
        if self.method == "temperature":
            return sigmoid(z / float(self.temperature or 1.0))
        return sigmoid(float(self.slope or 0.0) * z + float(self.intercept or 0.0))


def _interpolate(xs: list[float], ys: list[float], p: float) -> float:
    if not xs:
        raise ValueError("an isotonic calibration map needs thresholds")
    if p <= xs[0]:
        return ys[0]
    if p >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, p)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (p - x0) / (x1 - x0)


class Fingerprints(Record):
    """The fingerprints of the settings in effect: items stored under others are older and left out."""

    critique: str | None = None
    """Chains (null when the run makes no revision pairs)."""
    samples: str | None = None
    """Policy samples (null when the run makes no sample pairs)."""
    judge: str
    """Judgments."""
    dataset: str
    """Everything that shapes the dataset: the three above, pair kinds and strategy, filters."""
    checklist: str | None = None
    """Checklists (null when the run config has no `checklist:` section)."""

    def sources(self) -> list[str]:
        """The chain and sample fingerprints in effect (what current pairs are built from)."""
        return [fp for fp in (self.critique, self.samples) if fp]
