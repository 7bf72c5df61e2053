"""The judge audit shown: one row per measure, and the markdown section of the report and the card."""

from __future__ import annotations

from charter.agreement.audit.perturb import FAMILY_NAMES, FORMATS
from charter.agreement.audit.record import AuditReport
from charter.agreement.summary import Figure
from charter.judge_prompt import UNFENCED_PROMPT_FORMAT


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
