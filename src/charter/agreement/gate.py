"""The publishing gate: refuse to publish data from a judge that fails the agreement bar the user set."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from charter.agreement.config import AgreementConfig
from charter.agreement.report import NoLabels, agreement_summary
from charter.agreement.summary import Figure
from charter.errors import GateFailed

GATE_FIGURES = (("kappa", "min_kappa", "Cohen's kappa"), ("agreement", "min_agreement", "raw agreement"))


NO_GATE = "no agreement gate was configured (agreement.min_kappa / min_agreement)"


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
    """Check the judge-vs-human figures (ties excluded) of a run against config.min_kappa / min_agreement."""
    bars = [
        (key, getattr(config, field), name) for key, field, name in GATE_FIGURES if getattr(config, field) is not None
    ]
    if not bars:
        return GateResult(True, None, None, None, NO_GATE, configured=False)
    try:
        summary = agreement_summary(run_dir, config)
    except NoLabels as exc:
        key, bar, name = bars[0]
        return GateResult(False, key, None, bar, f"agreement gate: {name} must be >= {bar} but {exc}")
    which = "lower 95% bound of " if config.use_lower_ci_bound else ""
    passed_parts = []
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
    key, bar, _ = bars[-1]
    return GateResult(
        True,
        key,
        _value(getattr(summary.judge_vs_human, key), config.use_lower_ci_bound),
        bar,
        "agreement gate passed: " + "; ".join(passed_parts),
    )


def require_gate(run_dir: str | Path, config: AgreementConfig, override: bool = False) -> GateResult:
    """evaluate_gate, raising GateFailed on failure unless `override`, which is then recorded in the result."""
    result = evaluate_gate(run_dir, config)
    if result.passed:
        return result
    if not override:
        raise GateFailed(
            f"{result.message}; fix the judge or label more pairs, or pass the override flag to publish anyway"
        )
    return replace(result, overridden=True, message=result.message + " (overridden)")
