"""The publishing gates: refuse to publish data from a judge that fails the agreement bar or the audit bars the user
set."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from charter.agreement.audit import FAMILY_NAMES, AuditReport
from charter.agreement.config import AgreementConfig
from charter.agreement.report import NoLabels, agreement_summary
from charter.agreement.summary import Figure
from charter.errors import GateFailed
from charter.judge.settings import AuditConfig
from charter.stats.intervals import degenerate

NO_GATE = "no agreement gate was configured (agreement.{})".format(
    " / ".join([*AgreementConfig.bar_fields(), "min_human_preference_rate"])
)
NO_AUDIT_GATE = "no audit gate was configured (judge.audit.max_*)"
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


class Gates(NamedTuple):
    """The gates a run's data passes before it is published: the agreement gate, the judge-audit gate and the
    constitution-test gate."""

    agreement: GateResult
    audit: GateResult
    constitution: GateResult


def _value(fig: Figure, lower: bool) -> float | None:
    if fig.value is None:
        return None
    if lower:  # a zero-width interval says nothing of how sure the figure is: undefined, never passed
        return fig.ci[0] if fig.ci and not degenerate(fig.ci[0], fig.ci[1], fig.value) else None
    return fig.value


def evaluate_gate(run_dir: str | Path, config: AgreementConfig) -> GateResult:
    """Check a run against the bars its config sets on the agreement metrics the table gates (`min_kappa`,
    `min_agreement`: judge vs human, ties excluded) and min_human_preference_rate (the PPI share of rows whose
    chosen response people prefer, lower 95% bound)."""
    bars = config.metric_bars()
    preference_bar = config.min_human_preference_rate
    if not bars and preference_bar is None:
        return GateResult(True, None, None, None, NO_GATE, configured=False)
    try:
        summary = agreement_summary(run_dir, config)
    except NoLabels as exc:
        metric, bar = bars[0] if bars else (None, preference_bar)
        key, name = (metric.name, metric.gate) if metric else ("human_preference", PREFERENCE)
        return GateResult(False, key, None, bar, f"agreement gate: {name} must be >= {bar} but {exc}")
    which = "lower 95% bound of " if config.use_lower_ci_bound else ""
    passed_parts = []
    last: tuple[str, float | None, float] | None = None
    for metric, bar in bars:
        fig = getattr(summary.judge_vs_human, metric.name)
        value = _value(fig, config.use_lower_ci_bound)
        if value is None or value < bar:
            shown = "undefined" if value is None else f"{value:.3f}"
            ties = "ties a third category" if metric.ties else "ties excluded"
            return GateResult(
                False,
                metric.name,
                value,
                bar,
                f"agreement gate failed: {which}{metric.gate} (judge vs human, {ties}, n={fig.n}) is {shown}, "
                f"below the bar {bar}",
            )
        passed_parts.append(f"{which}{metric.gate} {value:.3f} >= {bar}")
        last = (metric.name, value, bar)
    if preference_bar is not None:
        found = summary.human_preference
        estimate = found.overall.ppi if found else None
        why = "no labelled row of the dataset"
        if estimate is not None and degenerate(estimate.low, estimate.high, estimate.value):
            estimate, why = None, "a zero-width interval"  # no lower bound at all
        if estimate is None or estimate.low < preference_bar:
            shown = f"undefined ({why})" if estimate is None else f"{estimate.low:.3f}"
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
    return _required(evaluate_gate(run_dir, config), override, "fix the judge or label more pairs")


def _required(result: GateResult, override: bool, advice: str) -> GateResult:
    """A gate's result, raising GateFailed when it failed unless `override`, which is then recorded in it."""
    if result.passed:
        return result
    if not override:
        raise GateFailed(
            f"{result.message}; {advice}, or pass --override-gate (override=True in Python) to publish anyway"
        )
    return replace(result, overridden=True, message=result.message + " (overridden)")


# -- the audit gate ---------------------------------------------------------------------------------------------


def _measured(report: AuditReport, measure: str) -> tuple[str, Figure | None]:
    if measure == "position_flip":
        return "position flip rate", report.position_flip
    if measure == "length_flip":
        return "length flip rate", report.length.flip
    if measure == "injection":
        family, fig = report.worst_injection("fenced")
        return f"injection flip rate ({FAMILY_NAMES.get(family or '', 'worst family')}, fenced)", fig
    return "self-preference (own answer over the better)", report.self_over_better


def evaluate_audit_gate(
    report: AuditReport | None, config: AuditConfig | None, judge_fingerprint: str | None = None
) -> GateResult:
    """Check a run's stored audit against the bars of `judge.audit` (max_position_flip, max_length_flip,
    max_injection, max_self_preference): each rate, or its upper 95% bound, must stay at or under its bar."""
    if config is None or not config.bars:
        return GateResult(True, None, None, None, NO_AUDIT_GATE, configured=False)
    first, first_bar = next(iter(config.bars.items()))
    if report is None:
        return GateResult(
            False,
            first,
            None,
            first_bar,
            "audit gate: no judge audit was run for this run (run it "
            "again with judge.audit, or charter judge audit --pairs RUN_DIR)",
        )
    if judge_fingerprint and report.judge_fingerprint != judge_fingerprint:
        return GateResult(
            False,
            first,
            None,
            first_bar,
            "audit gate: the stored audit is not of the judge settings that made the rows; audit the judge again",
        )
    which = "upper 95% bound of " if config.use_upper_ci_bound else ""
    passed = []
    for measure, bar in config.bars.items():
        name, fig = _measured(report, measure)
        value = None if fig is None or fig.value is None else fig.value
        if config.use_upper_ci_bound and value is not None:
            value = fig.ci[1] if fig and fig.ci else None
        n = fig.n if fig else 0
        if value is None:
            return GateResult(
                False,
                measure,
                None,
                bar,
                f"audit gate failed: {which}{name} (n={n}) is undefined, "
                f"so it cannot be shown to stay at or under the bar {bar}",
            )
        if value > bar:
            return GateResult(
                False,
                measure,
                value,
                bar,
                f"audit gate failed: {which}{name} (n={n}) is {value:.3f}, above the bar {bar}",
            )
        passed.append(f"{which}{name} {value:.3f} <= {bar}")
    return GateResult(True, measure, value, bar, "audit gate passed: " + "; ".join(passed))
