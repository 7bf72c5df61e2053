"""The publishing gate: refuse to publish data from a judge that fails the agreement bar the user set."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from charter.agreement.config import AgreementConfig
from charter.agreement.report import NoLabels, agreement_summary
from charter.agreement.summary import Figure
from charter.errors import GateFailed

GATE_FIGURES = (("kappa", "min_kappa", "Cohen's kappa"), ("agreement", "min_agreement", "raw agreement"))


NO_GATE = "no agreement gate was configured (agreement.min_kappa / min_agreement / min_human_preference_rate)"
PREFERENCE = "the PPI share of rows whose chosen response people prefer (lower 95% bound)"


@dataclass(frozen=True)
class GateResult:
    """The outcome of the gate; `overridden` is True when a failing gate was passed by an explicit override."""

    passed: bool
    figure: str | None
    value: float | None
    bar: float | None
    message: str
    overridden: bool = False
    configured: bool = True


def _value(fig: Figure, lower: bool) -> float | None:
    if fig.value is None:
        return None
    if lower:
        return fig.ci[0] if fig.ci else None
    return fig.value


def evaluate_gate(run_dir: str | Path, config: AgreementConfig) -> GateResult:
    """Check a run against config.min_kappa / min_agreement (judge vs human, ties excluded) and
    min_human_preference_rate (the PPI share of rows whose chosen response people prefer, lower 95% bound)."""
    bars = [
        (key, getattr(config, field), name) for key, field, name in GATE_FIGURES if getattr(config, field) is not None
    ]
    preference_bar = config.min_human_preference_rate
    if not bars and preference_bar is None:
        return GateResult(True, None, None, None, NO_GATE, configured=False)
    try:
        summary = agreement_summary(run_dir, config)
    except NoLabels as exc:
        key, bar, name = bars[0] if bars else ("human_preference", preference_bar, PREFERENCE)
        return GateResult(False, key, None, bar, f"agreement gate: {name} must be >= {bar} but {exc}")
    which = "lower 95% bound of " if config.use_lower_ci_bound else ""
    passed_parts = []
    last: tuple[str, float | None, float] | None = None
    for key, bar, name in bars:
        fig = getattr(summary.judge_vs_human, key)
        value = _value(fig, config.use_lower_ci_bound)
        if value is None or value < bar:
            shown = "undefined" if value is None else f"{value:.3f}"
            return GateResult(
                False,
                key,
                value,
                bar,
                f"agreement gate failed: {which}{name} (judge vs human, "
                f"ties excluded, n={fig.n}) is {shown}, below the bar {bar}",
            )
        passed_parts.append(f"{which}{name} {value:.3f} >= {bar}")
        last = (key, value, bar)
    if preference_bar is not None:
        found = summary.human_preference
        estimate = found.overall.ppi if found else None
        if estimate is None or estimate.low < preference_bar:
            shown = "undefined (no labelled row of the dataset)" if estimate is None else f"{estimate.low:.3f}"
            return GateResult(
                False,
                "human_preference",
                None if estimate is None else estimate.low,
                preference_bar,
                f"agreement gate failed: {PREFERENCE} is {shown}, below the bar {preference_bar}",
            )
        passed_parts.append(f"{PREFERENCE} {estimate.low:.3f} >= {preference_bar}")
        last = ("human_preference", estimate.low, preference_bar)
    assert last is not None  # a bar was set: checked above
    return GateResult(True, last[0], last[1], last[2], "agreement gate passed: " + "; ".join(passed_parts))


def require_gate(run_dir: str | Path, config: AgreementConfig, override: bool = False) -> GateResult:
    """evaluate_gate, raising GateFailed on failure unless `override`, which is then recorded in the result."""
    result = evaluate_gate(run_dir, config)
    if result.passed:
        return result
    if not override:
        raise GateFailed(
            f"{result.message}; fix the judge or label more pairs, or pass --override-gate (override=True in "
            "Python) to publish anyway"
        )
    return replace(result, overridden=True, message=result.message + " (overridden)")
