"""Render an agreement summary as Markdown (report/agreement.md) and as a rich table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from charter.agreement.items import items_markdown
from charter.agreement.summary import AgreementSummary

#: The pairwise figures: key (in `stats.PairwiseFigures`) and name as shown.
FIGURES: tuple[tuple[Literal["agreement", "agreement_with_ties", "kappa", "kappa_with_ties"], str], ...] = (
    ("agreement", "agreement (no ties)"),
    ("agreement_with_ties", "agreement (with ties)"),
    ("kappa", "Cohen's kappa (no ties)"),
    ("kappa_with_ties", "Cohen's kappa (with ties)"),
)


def fmt(fig: Mapping[str, Any] | None) -> str:
    """'0.740 [0.610, 0.850] (n=50)' or 'n/a'."""
    if not fig or fig.get("value") is None:
        return f"n/a (n={fig.get('n', 0) if fig else 0})"
    ci = fig.get("ci")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return f"{fig['value']:.3f}{interval} (n={fig['n']})"


def main_rows(summary: AgreementSummary) -> list[tuple[str, str, str, str, str]]:
    """(figure, judge, longer wins, first shown wins, human-human) rows."""
    return _main_rows(summary.model_dump())


def _main_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    base = summary["baselines"]
    hh = summary.get("human_human") or {}
    rows = []
    for key, name in FIGURES:
        rows.append(
            (
                name,
                fmt(summary["judge_vs_human"][key]),
                fmt(base["longer_wins"][key]),
                fmt(base["first_shown_wins"][key]),
                fmt(hh.get(key)) if hh and key in hh else "—",
            )
        )
    if hh:
        rows.append(("Krippendorff's alpha (humans)", "—", "—", "—", fmt(hh.get("krippendorff_alpha"))))
    return rows


def to_markdown(record: AgreementSummary) -> str:
    """The agreement report page."""
    summary = record.model_dump()
    pc = summary["position_consistency"]
    lines = [
        "# Judge / human agreement",
        "",
        f"{summary['labels']} labels ({summary['skips']} skipped) on {summary['labeled_pairs']} of "
        f"{summary['sampled_pairs']} sampled pairs by {', '.join(summary['annotators']) or 'nobody'}. "
        f"95% intervals: {summary['bootstrap']['samples']} bootstrap resamples of pairs, seed "
        f"{summary['bootstrap']['seed']}.",
        "",
        "| figure | judge vs human | longer wins vs human | first shown wins vs human | human vs human |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in _main_rows(summary)]
    rate = "n/a" if pc["rate"] is None else f"{pc['rate']:.3f}"
    lines += ["", f"Judge position consistency on these pairs: {rate} (n={pc['n']}).", ""]
    for key, title in (("by_principle", "principle"), ("by_confidence", "judge confidence bucket")):
        lines += [
            f"## By {title}",
            "",
            f"| {title} | labels | agreement (no ties) | kappa (no ties) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {g} | {v['labels']} | {fmt(v['agreement'])} | {fmt(v['kappa'])} |" for g, v in summary[key].items()
        ]
        lines.append("")
    lines += preference_markdown(summary.get("human_preference"))
    lines += panel_markdown(summary.get("panel"))
    lines += calibration_markdown(summary.get("calibration"))
    lines += items_markdown(record.checklist_items)
    return "\n".join(lines) + "\n"


def estimate(e: Mapping[str, Any] | None) -> str:
    """'0.612 [0.561, 0.663]' or 'n/a'."""
    return "n/a" if not e else f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def preference_markdown(found: Mapping[str, Any] | None) -> list[str]:
    """The share of rows whose chosen response people prefer: PPI, people only, judge only."""
    if not found:
        return []
    lines = [
        "## How often people prefer the chosen response",
        "",
        "The share of the dataset's rows whose chosen response people would prefer (a tie counts half), 95%"
        " intervals. **PPI** (prediction-powered, PPI++) corrects the judge's p_chosen over every row by the"
        " spot-checked rows; **people only** uses the labelled rows alone; **judge only** is the judge's mean"
        " p_chosen, which says how sure the judge is, not how often people agree. Labelled rows are weighted by"
        + (
            " their inverse inclusion probability (active sample)."
            if found["design"] == "active"
            else " their sampling stratum (stratified sample)."
        ),
        "",
        "| rows of | rows | labelled | PPI | people only | judge only | PPI weight of the judge |",
        "|---|---:|---:|---|---|---|---:|",
    ]
    groups = [("all rows", found["overall"])] + [(f"principle {k}", v) for k, v in found["by_principle"].items()]
    for name, g in groups:
        lam = "n/a" if not g.get("ppi") else f"{g['ppi']['lam']:.2f}"
        lines.append(
            f"| {name} | {g['rows']} | {g['labeled']} | {estimate(g.get('ppi'))} | {estimate(g.get('human'))} | "
            f"{estimate(g.get('judge'))} | {lam} |"
        )
    if any(not g.get("ppi") for _, g in groups):
        lines += ["", "n/a: fewer than 10 labelled rows, too few for an interval to be trusted."]
    uncovered = found["overall"].get("unlabeled_strata_rows", 0)
    if uncovered:
        lines += ["", f"{uncovered} rows lie in sampling strata with no label yet: label more to reach them."]
    return lines + [""]


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def panel_markdown(panel: Mapping[str, Any] | None, heading: str = "##") -> list[str]:
    """A judge panel: each member against people and the panel, the members against each other, their cost,
    and weights fitted on the labels."""
    if not panel:
        return []
    weighted = panel["pooling"] != "mean"
    lines = [
        f"{heading} Judge panel",
        "",
        f"{len(panel['members'])} judges, pooled by their {panel['pooling']} P(A), on {panel['pairs']} pairs every"
        " member judged. A member's figures are its own pick, before pooling.",
        "",
        "| judge | " + ("weight | " if weighted else "") + "agrees with people (no ties) | kappa (no ties) | "
        "agrees with the panel | position consistency | calls | cached | tokens | cost (USD) |",
        "|---|" + ("---:|" if weighted else "") + "---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in panel["members"]:
        human = m.get("judge_vs_human") or {}
        lines.append(
            f"| `{m['judge']}` | "
            + (f"{m['weight']:.3f} | " if weighted else "")
            + (f"{fmt(human.get('agreement'))} | {fmt(human.get('kappa'))} | " if human else "no labels | — | ")
            + f"{_share(m['with_panel'])} | {_share(m['position_consistency'])} | {m['calls']:,} | {m['cached']:,} | "
            f"{m['tokens']:,} | {m['cost_usd']:.4f} |"
        )
    between = panel.get("between_judges")
    if between:
        lines += [
            "",
            f"Between the judges: pairwise agreement {fmt(between['agreement'])}, Krippendorff's alpha (nominal) "
            f"{fmt(between['krippendorff_alpha'])}.",
        ]
    fitted = panel.get("fitted")
    if fitted:
        weights = ",".join(f"{w:g}" for w in fitted["weights"].values())
        lines += [
            "",
            f"Weights fitted on {fitted['labels']} decisive labels: "
            + ", ".join(f"`{k}` {v:.3f}" for k, v in fitted["weights"].items())
            + f". Out of fold ({fitted['folds']} folds by pair), the fitted pool agrees with people on "
            f"{_share(fitted['agreement_fitted'])} of the labels and the plain mean on "
            f"{_share(fitted['agreement_mean'])}. To pool with them: `--set 'judge.weights=[{weights}]'` (the "
            "judgments are pooled again from the call cache; the labels used to fit them then also measure them, "
            "so label fresh pairs to measure the weighted panel; a member of weight 0 is still asked: drop it from "
            "`judge.models` to save its calls).",
        ]
    elif panel["members"] and panel["members"][0].get("judge_vs_human"):
        lines += ["", "Fewer than 10 decisive labels: no weights are fitted yet."]
    return lines + [""]


def panel_console(panel: Mapping[str, Any]) -> list[str]:
    """The judge panel in a few terminal lines: each member, the members against each other, fitted weights."""
    lines = [f"judge panel ({panel['pooling']} of {len(panel['members'])}, {panel['pairs']} pairs):"]
    for m in panel["members"]:
        human = (m.get("judge_vs_human") or {}).get("agreement")
        lines.append(
            f"  {m['judge']}: agrees with people {fmt(human) if human else 'no labels'}, with the panel "
            f"{_share(m['with_panel'])}; {m['calls']:,} calls, ${m['cost_usd']:.4f}"
        )
    between = panel.get("between_judges")
    if between:
        lines.append(f"  between the judges: Krippendorff's alpha {fmt(between['krippendorff_alpha'])}")
    fitted = panel.get("fitted")
    if fitted:
        weights = ",".join(f"{w:g}" for w in fitted["weights"].values())
        lines.append(
            f"  weights fitted on {fitted['labels']} labels: {weights} (out of fold: fitted "
            f"{_share(fitted['agreement_fitted'])}, mean {_share(fitted['agreement_mean'])}); "
            f"--set 'judge.weights=[{weights}]' pools with them"
        )
    return lines


def calibration_markdown(cal: dict | None) -> list[str]:
    if not cal:
        return []
    lines = ["## Calibration", ""]
    if cal.get("skipped"):
        return lines + [f"Not fitted: {cal['skipped']}", ""]
    lines += [
        f"Method: {cal['method']} on {cal['labels']} decisive labels. ECE before {cal['ece_before']:.3f}, "
        f"after {cal['ece_after']:.3f} (in-sample)"
        + (f", {cal['ece_after_cv']:.3f} (cross-fitted)" if cal.get("ece_after_cv") is not None else "")
        + ".",
        "",
        "![reliability diagram](reliability.png)",
        "",
    ]
    lines += [
        f"The map is stored with the run and joined into `p_chosen_calibrated` whenever the dataset is "
        f"written; rows whose calibrated P(chosen) is below 0.5 + {cal.get('min_confidence')} are dropped "
        "(see the report's filter counts).",
        "",
    ]
    return lines


def rich_table(summary: AgreementSummary) -> Any:
    """The headline figures as a rich Table."""
    from rich.table import Table

    table = Table(title=f"judge / human agreement ({summary.labels} labels, {summary.labeled_pairs} pairs)")
    for col in ("figure", "judge", "longer wins", "first shown wins", "human-human"):
        table.add_column(col)
    for row in main_rows(summary):
        table.add_row(*row)
    return table
