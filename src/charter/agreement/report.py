"""`charter agreement RUN_DIR`: judge vs human agreement with bootstrap intervals, breakdowns and baselines.

Render an agreement summary as Markdown (report/agreement.md) and as a rich table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charter.agreement.config import AgreementConfig, bucket_label, config_for
from charter.agreement.items import item_agreement, items_markdown, step_agreement, steps_markdown
from charter.agreement.labels import JudgedPair, open_labels, require_judged
from charter.agreement.panel import panel_summary, pool_weights
from charter.agreement.sampling import confidence
from charter.agreement.summary import AgreementSummary, Baselines, Consistency, GroupFigures, human_preference
from charter.errors import UserError
from charter.records import Judgment, Pair
from charter.runs import labels as stored
from charter.runs.store import RunStore
from charter.stats import agreement as stats
from charter.stats.agreement import Figure, judge_label


class NoLabels(UserError):
    """There are no human labels to compare the judge with yet."""


@dataclass
class Observations:
    """One row per (pair, annotator) decisive-or-tie label, with what each predictor says."""

    pair_ids: np.ndarray
    human: np.ndarray
    judge: np.ndarray
    longer: np.ndarray
    first_shown: np.ndarray
    principle: np.ndarray
    bucket: np.ndarray
    p_a: np.ndarray


def longer_label(pair: Pair) -> str:
    """The 'longer response wins' baseline."""
    la, lb = len(pair.a.strip()), len(pair.b.strip())
    return "a" if la > lb else "b" if lb > la else "tie"


def first_shown_label(judgment: Judgment | None, page_order: str) -> str:
    """The 'first-shown response wins' baseline: what the judge saw first when it saw one order (a),
    otherwise what the annotator saw first on the labeling page."""
    if judgment is not None and judgment.orders == "one":
        return "a"
    return page_order[0]


def collect(store: RunStore, judged: dict[str, JudgedPair], config: AgreementConfig) -> Observations:
    """Human labels (skips left out) lined up with the judge and the baselines."""
    sample = {r.pair_id: r for r in stored.sample(store)}
    rows: list[tuple] = []
    for label in stored.labels(store):
        item = judged.get(label.pair_id)
        if label.label == "skip" or item is None:
            continue
        spot = sample.get(label.pair_id)
        rows.append(
            (
                item.pair_id,
                label.label,
                judge_label(item.p_a, config.judge_tie_band),
                longer_label(item.pair),
                first_shown_label(item.judgment, label.shown_order),
                spot.principle_id if spot else "(none)",
                bucket_label(confidence(item.p_a), config.confidence_buckets),
                item.p_a,
            )
        )
    cols = list(zip(*rows)) if rows else [()] * 8
    code = lambda values: np.array([stats.CODES[v] for v in values], dtype=int)  # noqa: E731
    return Observations(
        np.array(cols[0], dtype=object).astype(str),
        code(cols[1]),
        code(cols[2]),
        code(cols[3]),
        code(cols[4]),
        np.array(cols[5], dtype=object).astype(str),
        np.array(cols[6], dtype=object).astype(str),
        np.array(cols[7], dtype=float),
    )


def _subset(obs: Observations, keep: np.ndarray) -> Observations:
    return Observations(*(getattr(obs, f)[keep] for f in Observations.__dataclass_fields__))


def breakdown(obs: Observations, key: np.ndarray, config: AgreementConfig) -> dict[str, GroupFigures]:
    """Agreement and kappa (ties excluded) per group.

    Args:
        obs: The labels lined up with the judge.
        key: The group of each observation (a principle id, a confidence bucket), aligned with `obs`.
        config: Bootstrap samples and seed.

    Returns:
        group -> its figures, groups in sorted order.
    """
    out: dict[str, GroupFigures] = {}
    for group in sorted(set(key.tolist())):
        part = _subset(obs, key == group)
        figures = stats.pairwise_figures(part.human, part.judge, part.pair_ids, config.bootstrap_samples, config.seed)
        out[group] = GroupFigures(labels=int(len(part.human)), agreement=figures.agreement, kappa=figures.kappa)
    return out


def human_codes(store: RunStore) -> dict[str, dict[str, int]]:
    """annotator -> {pair_id: code} for non-skip labels."""
    out: dict[str, dict[str, int]] = {}
    for row in stored.labels(store):
        if row.label != "skip":
            out.setdefault(row.annotator, {})[row.pair_id] = stats.CODES[row.label]
    return out


def position_consistency(judged: dict[str, JudgedPair], pair_ids: set[str]) -> Consistency:
    """Share of the judge's both-order judgments (on the labeled pairs) that pick the same winner.

    Args:
        judged: pair id -> the pair with its judgment.
        pair_ids: The labeled pairs; those not in `judged` are passed over.

    Returns:
        The share and the number of both-order judgments it rests on.
    """
    flags = [judged[p].judgment.position_consistent for p in pair_ids if p in judged]
    flags = [f for f in flags if f is not None]
    return Consistency(rate=float(np.mean(flags)) if flags else None, n=len(flags))


def compute_summary(store: RunStore, config: AgreementConfig) -> AgreementSummary:
    """The agreement summary of a run (raises NoLabels when nobody has labeled anything yet)."""
    judged = require_judged(store)
    obs = collect(store, judged, config)
    sampled, labels = stored.sample(store), stored.labels(store)
    if not len(obs.human):
        raise NoLabels(
            f"{store.run_dir}: no human labels yet ({len(sampled)} pairs sampled, {len(labels)} labels incl. skips);"
            " draw a spot-check sample (spotcheck) and label it first"
        )
    b, s = config.bootstrap_samples, config.seed
    figures = lambda pred: stats.pairwise_figures(obs.human, pred, obs.pair_ids, b, s)  # noqa: E731
    fingerprints = store.fingerprints()
    return AgreementSummary.model_validate(
        {
            "computed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "judge_fingerprint": fingerprints.judge if fingerprints else None,
            "sampled_pairs": len(sampled),
            "labels": len(labels),
            "skips": sum(1 for r in labels if r.label == "skip"),
            "labeled_pairs": int(len(set(obs.pair_ids.tolist()))),
            "annotators": sorted({r.annotator for r in labels}),
            "judge_vs_human": figures(obs.judge),
            "human_human": stats.human_human(human_codes(store), b, s),
            "baselines": Baselines(longer_wins=figures(obs.longer), first_shown_wins=figures(obs.first_shown)),
            "position_consistency": position_consistency(judged, set(obs.pair_ids.tolist())),
            "by_principle": breakdown(obs, obs.principle, config),
            "by_confidence": breakdown(obs, obs.bucket, config),
            "bootstrap": {"samples": b, "seed": s, "interval": "95% percentile, resampling pairs"},
            "judge_tie_band": config.judge_tie_band,
            "human_preference": human_preference(store, judged, config),
            "panel": panel_summary(store, judged, (obs.pair_ids, obs.human), config, pool_weights(store)),
            "checklist_items": item_agreement(store, judged),
            "trajectory_steps": step_agreement(store, judged),
        }
    )


def agreement_summary(run_dir: str | Path, config: AgreementConfig | None = None) -> AgreementSummary:
    """Compute the summary without writing anything (used by the gate)."""
    store = open_labels(run_dir)
    try:
        return compute_summary(store, config or config_for(store))
    finally:
        store.close()


#: The pairwise figures: key (in `stats.PairwiseFigures`) and name as shown, from the table of metrics.
FIGURES = tuple((m.name, m.title()) for m in stats.PAIRWISE)


def fmt(fig: Figure | Mapping[str, Any] | None) -> str:
    """'0.740 [0.610, 0.850] (n=50)' or 'n/a (n=0)'; a figure or its dict."""
    fig = Figure.model_validate(fig) if isinstance(fig, Mapping) else fig
    if fig is None or fig.value is None:
        return f"n/a (n={fig.n if fig else 0})"
    interval = f" [{fig.ci[0]:.3f}, {fig.ci[1]:.3f}]" if fig.ci else ""
    return f"{fig.value:.3f}{interval} (n={fig.n})"


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
        alpha = stats.METRICS["krippendorff_alpha"]
        rows.append((f"{alpha.label} (humans)", "—", "—", "—", fmt(hh.get(alpha.name))))
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
    lines += steps_markdown(record.trajectory_steps)
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
