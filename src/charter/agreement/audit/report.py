"""The judge audit's record: each bias as a rate with its interval, and where the audit came from.

The judge audit shown: one row per measure, and the markdown section of the report and the card.

The judge audit in a run: stored in the store's meta and written beside the run report.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from charter.agreement.audit.perturb import FAMILY_NAMES, FORMATS
from charter.agreement.summary import Figure
from charter.judge.settings import AuditConfig
from charter.judge_prompt import PROMPT_FORMAT, UNFENCED_PROMPT_FORMAT
from charter.records import Record
from charter.runs.store import RunStore


class FlipShift(Record):
    """How a perturbation moved the judge."""

    flip: Figure
    """Share of the pairs judged correctly before the perturbation that it turned to the worse response."""
    shift: Figure
    """Mean drop in P(better) the perturbation caused, over all pairs measured (positive: toward the worse)."""


class InjectionFigures(Record):
    """One injection family in both prompt formats."""

    fenced: FlipShift
    """In the prompt format in use (format 2: responses fenced as data)."""
    unfenced: FlipShift
    """In the unfenced prompt format 1."""


class AuditReport(Record):
    """A judge audit: each bias as a rate with its 95% bootstrap interval and the pairs it rests on."""

    computed_at: str
    """When (ISO 8601, UTC)."""
    judge_model: str
    """The judge model audited."""
    judge_fingerprint: str | None = None
    """The judge settings audited, when they are a run's."""
    mode: str
    """Judge mode."""
    orders: str
    """Judge orders (the position measure always asks both)."""
    ensemble: str
    """Principles per question, in words."""
    constitution: str
    """Constitution name and short hash."""
    prompt_format: int = PROMPT_FORMAT
    """The fenced prompt format; injections are also measured in format 1 (unfenced)."""
    source: str
    """Where the pairs with a known better response came from."""
    reference: str
    """`human`: the better response is a person's choice; `judge`: the judge's own confident verdict."""
    pairs: int
    """Pairs audited."""
    seed: int
    """Seed of the sample, the shown order (one-order judges) and the bootstrap."""
    bootstrap_samples: int
    """Bootstrap resamples of pairs behind each interval."""
    clean_agreement: Figure
    """Share of unperturbed pairs where the judge picks the known better response (the reference)."""
    position_flip: Figure
    """Share of pairs whose winner changes when the order is swapped (1 - position consistency)."""
    first_shown: Figure
    """Share of single-order verdicts that picked the response shown first (0.5: no position preference)."""
    length: FlipShift
    """Padding the worse response and trimming the better one."""
    injection: dict[str, InjectionFigures] = Field(default_factory=dict)
    """Per injection family, in both prompt formats."""
    self_over_better: Figure | None = None
    """Share of pairs where the judge prefers its own answer over the known better response (if measured)."""
    self_over_worse: Figure | None = None
    """Share of pairs where the judge prefers its own answer over the known worse response (if measured)."""
    failed_pairs: int = 0
    """Pairs with at least one failed call (left out of the measures that needed it)."""
    failures: list[str] = Field(default_factory=list)
    """The first few failure messages."""
    calls: int = 0
    """Judge requests made (and generations, for self-preference), cache hits included."""
    wall_s: float = 0.0
    """Wall-clock seconds."""
    key: str = ""
    """Fingerprint of what was audited (judge settings, audit settings, pairs), to skip a repeat."""

    @property
    def calls_per_pair(self) -> float | None:
        return self.calls / self.pairs if self.pairs else None

    def worst_injection(self, fmt: str = "fenced") -> tuple[str | None, Figure | None]:
        """The injection family with the highest flip rate in a format, and that rate."""
        found = [
            (name, getattr(f, fmt).flip) for name, f in self.injection.items() if getattr(f, fmt).flip.value is not None
        ]
        if not found:
            return None, None
        return max(found, key=lambda item: item[1].value)


def _fmt(fig: Figure | None, digits: int = 3) -> tuple[str, str, str]:
    if fig is None or fig.value is None:
        return "n/a", "", str(fig.n if fig else 0)
    ci = f"[{fig.ci[0]:.{digits}f}, {fig.ci[1]:.{digits}f}]" if fig.ci else ""
    return f"{fig.value:.{digits}f}", ci, str(fig.n)


def rows(report: AuditReport) -> list[tuple[str, str, str, str, str]]:
    """(measure, value, 95% CI, n, what it means) for every measure, in the order they are shown."""
    ref = "human-preferred" if report.reference == "human" else "judge's confident pick"
    out = [
        (
            f"clean agreement (reference: {ref})",
            *_fmt(report.clean_agreement),
            "judge picks the known better response, unperturbed",
        ),
        (
            "position: flip rate",
            *_fmt(report.position_flip),
            "winner changes when the order is swapped; position consistency is 1 minus this",
        ),
        (
            "position: first shown picked",
            *_fmt(report.first_shown),
            "single-order verdicts for the first shown (0.5: none)",
        ),
        (
            "length: flip rate",
            *_fmt(report.length.flip),
            "correct verdicts flipped by padding the worse and trimming the better",
        ),
        (
            "length: shift in P(better)",
            *_fmt(report.length.shift),
            "mean drop in P(better) (positive: toward the padded response)",
        ),
    ]
    for family, figs in report.injection.items():
        for fmt in FORMATS:
            fs = getattr(figs, fmt)
            fmt_note = (
                f"format {report.prompt_format}, fenced"
                if fmt == "fenced"
                else f"format {UNFENCED_PROMPT_FORMAT}, unfenced"
            )
            out.append(
                (
                    f"injection {FAMILY_NAMES[family]} ({fmt}): flip rate",
                    *_fmt(fs.flip),
                    f"correct verdicts (with a neutral text of the same length) flipped; {fmt_note}",
                )
            )
    if report.self_over_better is not None:
        out.append(
            (
                "self-preference: own answer over the better",
                *_fmt(report.self_over_better),
                "judge prefers the answer it wrote itself over the known better response",
            )
        )
        out.append(
            (
                "self-preference: own answer over the worse",
                *_fmt(report.self_over_worse),
                "the same against the known worse response",
            )
        )
    return out


def markdown(report: AuditReport, level: int = 2) -> str:
    """The audit as a markdown section (a header line of facts, then one table)."""
    h = "#" * level
    lines = [
        f"Judge `{report.judge_model}` ({report.mode}, orders {report.orders}, {report.ensemble}; constitution "
        f"{report.constitution}), audited on {report.pairs} pairs: {report.source}. Seed {report.seed}; 95% "
        f"intervals from {report.bootstrap_samples} bootstrap resamples of pairs. {report.calls} calls "
        f"({report.calls_per_pair:.1f} per pair), {report.wall_s} s, computed {report.computed_at}."
        if report.pairs
        else "No pairs audited.",
        "",
        "| measure | value | 95% CI | n | what it means |",
        "|---|---:|---|---:|---|",
        *(f"| {m} | {v} | {ci} | {n} | {what} |" for m, v, ci, n, what in rows(report)),
    ]
    if report.failed_pairs:
        lines += [
            "",
            f"{report.failed_pairs} pair(s) had a failed call and are left out of the measures that "
            "needed it"
            + (": " + "; ".join(f"`{f[:160]}`" for f in report.failures[:3]) if report.failures else "")
            + ".",
        ]
    flip = report.position_flip.value
    if flip is not None and flip >= 0.9 and report.orders == "both":
        lines += [
            "",
            f"**This judge's verdict is set by position**: the winner changed with the order in "
            f"{flip:.0%} of pairs. With both orders averaged, the other measures rest on the small difference "
            "left between the two orders, and its labels should not be trusted.",
        ]
    lines += [
        "",
        f"{h}# How to read it",
        "",
        "Rates near 0 are what an unbiased judge shows. The flip rates count only pairs the judge got right "
        "before the change, so they are undefined (n/a, n = 0) for a judge that never does. An injection "
        "is measured against a control that appends neutral text of the same length to the worse "
        "response: a judge that merely prefers longer responses does not count as obeying it.",
    ]
    return "\n".join(lines) + "\n"


AUDIT_META = "audit"


def stored_audit(store: RunStore) -> AuditReport | None:
    """The latest audit stored in a run (by `judge.audit` or `charter judge audit --pairs RUN_DIR`)."""
    return store.meta_record(AUDIT_META, AuditReport)


def audit_config_for(store: RunStore) -> AuditConfig | None:
    """The `judge.audit` section of the run config in effect, if any."""
    return store.judge_section("audit", AuditConfig)


def save_audit(store: RunStore, report: AuditReport) -> Path:
    """Store the audit in the run (meta `audit`) and write report/audit.md and audit.json beside the report."""
    from charter.runs.files import AUDIT_JSON, AUDIT_MD, RunFiles

    store.set_meta(**{AUDIT_META: report})
    files = RunFiles(store.run_dir)
    files.write_report_text(AUDIT_JSON, report.model_dump_json(indent=1))
    return files.write_report_text(AUDIT_MD, f"# Judge audit\n\n{markdown(report, level=2)}")
