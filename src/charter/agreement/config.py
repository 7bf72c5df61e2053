"""The run config's `agreement:` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from charter.errors import ConfigError
from charter.runs.store import RunStore
from charter.stats.agreement import METRICS, AgreementMetric
from charter.yamlio import ConfigModel


class AgreementConfig(ConfigModel):
    """How judge/human agreement is measured, calibrated and used as a publishing gate."""

    min_kappa: float | None = Field(default=None, ge=-1, le=1)
    """Gate: the judge-vs-human Cohen's kappa (ties excluded) must reach this; None: no kappa bar."""
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    """Gate: the judge-vs-human raw agreement (ties excluded) must reach this; None: no agreement bar."""
    min_human_preference_rate: float | None = Field(default=None, ge=0, le=1)
    """Gate: the lower 95% bound of the prediction-powered share of dataset rows whose chosen response people
    prefer must reach this; None: no such bar."""
    use_lower_ci_bound: bool = False
    """Gate on the lower bound of the 95% bootstrap interval instead of the point estimate."""
    calibration: Literal["platt", "temperature", "isotonic", "none"] = "temperature"
    """How `charter agreement` maps the judge's P(A) to human labels; 'none' leaves the dataset alone."""
    min_calibration_labels: int = Field(default=10, ge=2)
    """Fewest decisive (A or B) human labels before a calibration is fitted."""
    bootstrap_samples: int = Field(default=1000, ge=100)
    """Bootstrap resamples (of pairs) for every 95% confidence interval."""
    seed: int = 0
    """Seed for spot-check sampling, presentation order and the bootstrap."""
    sample_size: int = Field(default=50, ge=1)
    """Default number of pairs `charter spotcheck` draws."""
    confidence_buckets: list[float] = Field(default_factory=lambda: [0.6, 0.7, 0.8, 0.9])
    """Edges (in (0.5, 1)) splitting the judge's confidence max(p, 1-p) into buckets for sampling and reports."""
    judge_tie_band: float = Field(default=0.0, ge=0, lt=0.5)
    """The judge counts as saying 'tie' when |P(A) - 0.5| <= this."""
    min_confidence: float | None = Field(default=None, ge=0, le=0.5)
    """Confidence filter re-applied to calibrated values: drop rows whose p_chosen_calibrated - 0.5 is below
    this (the scale of `filters.min_confidence`; a row whose calibrated side flips is always dropped).
    None: use the run's `filters.min_confidence`."""
    ece_bins: int = Field(default=10, ge=2)
    """Equal-width bins for expected calibration error and the reliability diagram."""

    @model_validator(mode="after")
    def _sorted_edges(self) -> AgreementConfig:
        edges = self.confidence_buckets
        if any(not 0.5 < e < 1 for e in edges) or edges != sorted(set(edges)):
            raise ValueError("confidence_buckets must be increasing values strictly between 0.5 and 1")
        return self

    @classmethod
    def bar_fields(cls) -> dict[str, AgreementMetric]:
        """The fields that bar an agreement metric the table (`METRICS`) gates, `min_<name>`, in the fields' order."""
        gated = {f"min_{m.name}": m for m in METRICS.values() if m.gate}
        return {key: gated[key] for key in cls.model_fields if key in gated}

    def metric_bars(self) -> list[tuple[AgreementMetric, float]]:
        """The bars set on the agreement metrics the table gates, each with its metric (`bar_fields`)."""
        return [(metric, bar) for key, metric in self.bar_fields().items() if (bar := getattr(self, key)) is not None]

    @property
    def gated(self) -> bool:
        """Whether a bar is set on an agreement metric (min_kappa or min_agreement)."""
        return bool(self.metric_bars())


def config_for(store: RunStore) -> AgreementConfig:
    """The `agreement:` section of the run config in effect (as stored when the run last started)."""
    section = store.run_config().get("agreement") or {}
    try:
        return AgreementConfig.model_validate(section)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"{store.run_dir}: run config agreement section: {' '.join(first[:3])}") from None


def bucket_label(confidence: float, edges: list[float]) -> str:
    """The confidence bucket name, e.g. '0.60-0.70', for a confidence in [0.5, 1]."""
    bounds = [0.5, *edges, 1.0]
    for low, high in zip(bounds, bounds[1:]):
        if confidence < high or high == 1.0:
            return f"{low:.2f}-{high:.2f}"
    return f"{bounds[-2]:.2f}-1.00"
