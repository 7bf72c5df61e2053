"""The run report: RUN_DIR/report/report.md and a self-contained report.html, from the run directory alone.

Counts per stage, the filter waterfall, failures, tokens and cost per role, judge diagnostics (position
inconsistency, how often the longer response won, win rates per principle), the judge audit when one was run,
a handful of examples (`examples`) and PNG plots beside it (the judge's P(chosen) histogram, win rates per principle
and the rewards of an online training). It describes the settings of the rows it covers: those of the dataset files
when there are any.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import mimetypes
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from charter.checklist.store import count_checklists
from charter.evals.during import evaluation_lines
from charter.judge.pairwise import combination_lines, combination_summary
from charter.monitor.gold import MonitorStep, monitor_lines, read_history
from charter.pipeline.forecast.estimate import forecast_section
from charter.pipeline.report.examples import examples, float_batches
from charter.pipeline.status.record import (
    failure_summary,
    filter_steps,
    ordered_counts,
    run_counts,
    settings_notes,
    stage_progress,
    usage_summary,
)
from charter.preference.diversity import describes_current, diversity_markdown, stored_diversity
from charter.preference.manifest import DatasetSettings, current_settings, dataset_manifest
from charter.preference.stats import JudgeStats, headline, judge_p_values, judge_stats, rows_sentence
from charter.records import Fingerprints
from charter.runs.counts import stage_states
from charter.runs.files import AGREEMENT_MD, AUDIT_MD, REPORT_HTML, REPORT_MD, WINRATE_JSON, RunFiles
from charter.runs.items import any_judgment, stored_judgments
from charter.runs.rewards import StepRewards, pair_steps, per_step
from charter.runs.store import RunStore, open_store

TEMPLATES = Path(__file__).parent / "templates"


def data_uri(path: Path) -> str:
    """The file as a base64 data URI, so the HTML page needs nothing beside it."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


# -- files written by other stages ------------------------------------------------------------------------

_IMG = re.compile(r'<img src="([^"]*)" alt="([^"]*)"[^>]*>')
_LINK = re.compile(r'<a href="([^"]*)"[^>]*>(.*?)</a>', re.S)


def _inline_markdown(text: str, base: Path) -> str:
    """Markdown -> HTML with raw HTML escaped, local images inlined and relative links reduced to their text."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)

    def image(match: re.Match) -> str:
        target = base / match.group(1)
        if re.match(r"^[a-z]+:", match.group(1)) or not target.is_file():
            return match.group(2)  # the page must stand alone: an image it cannot embed becomes its alt text
        return f'<img src="{data_uri(target)}" alt="{match.group(2)}">'

    def link(match: re.Match) -> str:
        return match.group(0) if re.match(r"^(https?:|#|mailto:)", match.group(1)) else match.group(2)

    return _LINK.sub(link, _IMG.sub(image, html))


def audit_section(store: RunStore, settings: DatasetSettings | None) -> dict[str, Any] | None:
    """The stored judge audit as markdown and HTML, with a note when it audited other judge settings."""
    from charter.agreement.audit import markdown, stored_audit

    report = stored_audit(store)
    if report is None:
        return None
    text = markdown(report, level=3)
    judge_fp = settings.fingerprints.judge if settings else None
    other = report.judge_fingerprint is not None and judge_fp is not None and report.judge_fingerprint != judge_fp
    if other:
        text = "**Note:** this audit is of other judge settings than the rows this report covers.\n\n" + text
    return {
        "file": AUDIT_MD,
        "markdown": text,
        "html": _inline_markdown(text, store.run_dir / "report"),
        "other_settings": other,
    }


def constitution_test_section(store: RunStore, settings: DatasetSettings | None) -> dict[str, Any] | None:
    """The stored constitution test as markdown and HTML, with a note when it tested other judge settings."""
    from charter.lab.checks import checks_markdown, stored_test

    result = stored_test(store)
    if result is None:
        return None
    body = checks_markdown(result).split("\n", 2)[2]  # the page's title is the section's heading here
    text = body.replace("\n## ", "\n### ")
    judge_fp = settings.fingerprints.judge if settings else None
    if result.judge_fingerprint is not None and judge_fp is not None and result.judge_fingerprint != judge_fp:
        text = "**Note:** this test is of other judge settings than the rows this report covers.\n\n" + text
    return {"markdown": text, "html": _inline_markdown(text, store.run_dir / "report"), "flagged": result.flagged}


def diversity_section(store: RunStore) -> dict[str, Any] | None:
    """The dataset's diversity as measured when the run wrote it, as markdown and HTML; None where it was not."""
    report = stored_diversity(store)
    if report is None:
        return None
    text = "\n".join(diversity_markdown(report, describes_current(store, report)))
    return {"markdown": text, "html": _inline_markdown(text, store.run_dir / "report")}


def panel_section(store: RunStore) -> dict[str, Any] | None:
    """A judge panel's members (against people where there are labels), how far they agree, and their cost."""
    from charter.agreement.config import config_for
    from charter.agreement.labels import judged_pairs
    from charter.agreement.panel import members_of, panel_summary, pool_weights
    from charter.agreement.report import collect, panel_markdown

    fingerprints = store.fingerprints()
    one = any_judgment(store, fingerprints.judge) if fingerprints else None
    if one is None or not any(vote.judge for vote in one.principles):
        return None  # one judge (its votes name no member): no pass over every judged pair and its texts
    judged = judged_pairs(store)
    if not members_of(judged):
        return None
    config = config_for(store)
    obs = collect(store, judged, config)
    try:
        panel = panel_summary(store, judged, (obs.pair_ids, obs.human), config, pool_weights(store))
    except ImportError:  # Krippendorff's alpha comes with the agreement extra
        text = "The panel's figures need the agreement extra: `pip install 'charter[agreement]'`."
    else:
        text = "\n".join(panel_markdown(panel.model_dump() if panel else None, heading="###")[2:])
    return {"markdown": text, "html": _inline_markdown(text, store.run_dir / "report")}


def combination_section(store: RunStore) -> dict[str, Any] | None:
    """How the judge combined its votes where the rule records it (`judge.combine: priority`): the level that settled
    each pair, how many were settled early, and the conflicts between levels per pair of principles; None for the
    weighted mean."""
    fingerprints = store.fingerprints()
    one = any_judgment(store, fingerprints.judge) if fingerprints else None
    if fingerprints is None or one is None or one.combined is None:
        return None  # the weighted mean records nothing: no pass over every judgment
    summary = combination_summary(stored_judgments(store, fingerprints.judge, "ok"))
    if summary is None:
        return None
    text = "\n".join(combination_lines(summary))
    return {"summary": summary, "markdown": text, "html": _inline_markdown(text, store.run_dir / "report")}


def training_winrate(files: RunFiles) -> dict[str, Any] | None:
    """The win rate judged during training (`winrate_eval` in the metrics.json of an online training's output, or of
    the run's DPO folder) as markdown and HTML; None when there is none."""
    for path in (files.run_dir / "metrics.json", files.dpo_dir / "metrics.json"):
        try:
            rows = json.loads(path.read_text(encoding="utf-8")).get("winrate_eval") if path.is_file() else None
        except (OSError, ValueError, AttributeError):
            rows = None
        if rows:
            text = "\n".join(evaluation_lines(rows)[2:])
            return {"markdown": text, "html": _inline_markdown(text, files.report_dir)}
    return None


def training_monitor(files: RunFiles) -> dict[str, Any] | None:
    """The gold monitor of an online training (metrics.json's `monitor` once training ended, else the evaluations so
    far in monitor/history.json) as markdown and HTML, with `steps` for its plot; None without one."""
    path = files.run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        metrics = {}
    summary = metrics.get("monitor") if isinstance(metrics, dict) else None
    if summary:
        step = (metrics.get("training") or {}).get("global_step")
        text = "\n".join(monitor_lines(summary, step)[2:])
        steps = summary["steps"]
    else:
        steps = read_history(files.run_dir) or []
        if not steps:
            return None
        text = f"Training is under way: {len(steps)} evaluation(s) so far; the summary comes with metrics.json."
    return {"markdown": text, "html": _inline_markdown(text, files.report_dir), "steps": steps}


def plot_monitor(steps: Sequence[MonitorStep], path: Path) -> Path | None:
    """Line plot: the training reward and the gold score on the held-out prompts per evaluation step, each with its
    95% interval, the gap between them shaded, the flagged steps marked."""
    points: list[dict[str, Any]] = [dict(s) for s in steps if s["reward"] is not None and s["gold"] is not None]
    if not points:
        return None
    x = [s["step"] for s in points]
    fig = _figure()
    ax = fig.add_subplot()
    ax.fill_between(x, [s["gold"] for s in points], [s["reward"] for s in points], alpha=0.15, color="#c44e52",
                    label="gap (reward - gold)")  # fmt: skip
    for key, colour, label in (("reward", "#4c72b0", "training reward"), ("gold", "#55a868", "gold")):
        values = [s[key] for s in points]
        below = [v - (s[f"{key}_low"] if s[f"{key}_low"] is not None else v) for s, v in zip(points, values)]
        above = [(s[f"{key}_high"] if s[f"{key}_high"] is not None else v) - v for s, v in zip(points, values)]
        ax.errorbar(x, values, yerr=[below, above], fmt="-o", markersize=3, capsize=2, color=colour,
                    label=f"{label} (95% interval)")  # fmt: skip
    flagged = [(s["step"], s["gold"]) for s in points if s["flagged"]]
    if flagged:
        ax.plot(*zip(*flagged), "x", markersize=9, color="#c44e52", label="flagged by the stop rule")
    ax.set(xlabel="training step", ylabel="mean over held-out prompts", ylim=(-0.05, 1.05),
           title="Training reward against gold")  # fmt: skip
    ax.legend(loc="best", fontsize="small", frameon=False)
    fig.savefig(path, format="png")
    return path


def extras(files: RunFiles) -> dict[str, Any]:
    """agreement.md and winrate.json, when other stages have written them beside the report."""
    found: dict[str, Any] = {"agreement": None, "winrate": None}
    agreement = files.report_text(AGREEMENT_MD)
    if agreement is not None:
        found["agreement"] = {
            "file": AGREEMENT_MD,
            "markdown": agreement,
            "html": _inline_markdown(agreement, files.report_dir),
        }
    winrate = files.report_text(WINRATE_JSON)
    if winrate is not None:
        try:
            data = json.loads(winrate)
        except ValueError as exc:
            found["winrate"] = {"file": WINRATE_JSON, "error": f"unreadable: {exc}", "scalars": {}, "json": ""}
        else:
            scalars = (
                {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))}
                if isinstance(data, dict)
                else {}
            )
            found["winrate"] = {
                "file": WINRATE_JSON,
                "error": None,
                "scalars": scalars,
                "json": json.dumps(data, indent=2, ensure_ascii=False),
            }
    return found


# -- rendering --------------------------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def _fence(text: str, lang: str = "") -> str:
    """A markdown fenced block that no backtick run inside `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _cell(value: Any) -> str:
    """A value made safe for one markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _conversation(messages: list[dict] | str) -> str:
    if isinstance(messages, str):
        return messages
    return "\n\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in messages)


def _transcript(turns: list[dict]) -> str:
    """A trajectory as `transcript_shown` lays it out, in plain text: one block a message, labelled with its index
    and role, its actions below it, the first violating step marked."""
    blocks = []
    for t in turns:
        head = f"[{t['index']}] {t['label']}" + ("  <- first violating step" if t["violating"] else "")
        blocks.append(
            "\n".join([head, *([t["content"]] if t["content"] else []), *(f"Action: {a}" for a in t["actions"])])
        )
    return "\n\n".join(blocks)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html", "html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=_pct, num=_num, fence=_fence, cell=_cell, conversation=_conversation, transcript=_transcript)
    return env


def checklist_lines(store: RunStore, settings: DatasetSettings | None) -> list[str]:
    """The report's line on the run's checklists: source, writer, how many are stored, the aggregation."""
    section = None if settings is None else settings.checklist
    fp = None if settings is None else settings.fingerprints.checklist
    if section is None or fp is None:
        return []
    writer = f" written by {settings.models.get('checklist')}" if settings and section.source == "model" else ""
    mode = (
        f", judged item by item ({section.aggregation} aggregation)"
        if settings and settings.judge.mode_entry.needs_context
        else ""
    )
    return [f"Checklists: source {section.source}{writer}, {count_checklists(store, fp)} stored{mode}"]


def settings_lines(settings: DatasetSettings | None) -> list[str]:
    """The settings of the rows the report covers, in words."""
    if settings is None:
        return []
    judge = settings.judge
    lines = [
        f"Judge: mode {judge.mode}, orders {judge.orders}, {judge.ensemble()}"
        + (f", cot votes clamped to {list(judge.clamp)}" if judge.reply.clamped else "")
        + (f", votes combined by {judge.combine}" if judge.combination.recorded else "")
    ]
    if settings.critique is not None:
        fixed = f" (fixed: {', '.join(settings.critique.principles)})" if settings.critique.principles else ""
        lines.append(
            f"Critique: {settings.critique.rounds} round(s){fixed}, few-shot examples "
            f"{'on' if settings.critique.few_shot else 'off'}"
        )
    pairs = settings.pairs
    lines.append(
        f"Pairs: {', '.join(pairs.kinds)}"
        + (
            f" (k={pairs.k} samples at temperature {pairs.temperature}, {pairs.strategy})"
            if "samples" in pairs.kinds
            else ""
        )
    )
    f = settings.filters
    lines.append(
        f"Filters: min confidence {f.min_confidence}, drop inconsistent {f.drop_inconsistent}, drop ties "
        f"{f.drop_ties}, dedupe {f.dedupe}, per-principle cap {f.max_per_principle or 'none'}"
    )
    lines.append(f"Settings fingerprint {settings.fingerprints.dataset}")
    return lines


def report_data(store: RunStore, files: RunFiles) -> dict[str, Any]:
    """Everything the templates show, computed from the run store and the data files.

    The settings shown are those of the dataset files when there are any (the rows the report covers),
    otherwise those in effect."""
    manifest = dataset_manifest(store)
    settings = manifest.settings if manifest else current_settings(store)
    fp = settings.fingerprints if settings else store.fingerprints()
    counts = run_counts(store)
    constitution = store.meta("constitution") or {}
    stats = judge_stats(store, fp, constitution.get("principles", [])) if fp else JudgeStats()
    shown, source = examples(store, fp)
    rewards = per_step(store)
    pairs = pair_steps(store)
    plots, plot_note = make_plots(store, fp or None, stats, files.report_dir, rewards) if fp or rewards else ([], None)
    monitor = training_monitor(files)
    if monitor and plot_note is None and plot_monitor(monitor["steps"], files.report_dir / "monitor.png"):
        plots.append({"title": "Training reward against gold (gold monitor)", "file": "monitor.png"})
    failures = failure_summary(store)
    return {
        "headline": headline(stats if fp else None, counts, failures["by_kind"]),
        "rows_note": rows_sentence(counts, stats),
        "run_id": store.meta("run_id"),
        "created_at": store.meta("created_at"),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "constitution": constitution,
        "models": settings.models if settings else {},
        "settings": settings_lines(settings) + checklist_lines(store, settings),
        "notes": settings_notes(store),
        "calibration": manifest.calibration if manifest else None,
        "stages": stage_progress(store),
        "counts": ordered_counts(counts),
        "filters": filter_steps(counts),
        "usage": usage_summary(store),
        "forecast": forecast_section(store),
        "rewards": rewards,
        "pairs": pairs,
        # an online training's store: rewards and no run stages, so the run's sections would only say "none yet"
        "online": bool(rewards or pairs) and not stage_states(store) and not stats.judged,
        "failures": failures,
        "stats": stats,
        "examples": shown,
        "examples_source": source,
        "plots": plots,
        "plot_note": plot_note,
        "extras": extras(files),
        "audit": audit_section(store, settings),
        "panel": panel_section(store),
        "combination": combination_section(store),
        "training_winrate": training_winrate(files),
        "monitor": monitor,
        "constitution_test": constitution_test_section(store, settings),
        "diversity": diversity_section(store),
    }


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write RUN_DIR/report/report.md and the self-contained report.html; returns their paths."""
    with open_store(run_dir) as store:
        files = RunFiles(store.run_dir)
        files.report_dir.mkdir(parents=True, exist_ok=True)
        data = report_data(store, files)
        env = _environment()
        md_path = files.write_report_text(REPORT_MD, env.get_template("report.md.j2").render(**data))
        images = {p["file"]: data_uri(files.report_dir / p["file"]) for p in data["plots"]}
        html_path = files.write_report_text(
            REPORT_HTML, env.get_template("report.html.j2").render(**data, images=images)
        )
    return md_path, html_path


def _figure(height: float = 3.6, left: float = 0.1):
    """A figure with fixed margins (a layout engine costs more than the plot at these sizes)."""
    from matplotlib.figure import Figure  # the object API: no pyplot global state, Agg canvas for savefig

    fig = Figure(figsize=(6.4, height), dpi=100)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.55 / height, top=1 - 0.4 / height)
    return fig


#: The probability histogram's bins: 20 of width 0.05 over [0, 1].
P_BINS = 20


def p_counts(batches: Iterable[Any]) -> Any:
    """Counts of probabilities (numpy batches, NaN skipped) in the histogram's bins, tallied batch by batch."""
    import numpy as np

    edges = np.linspace(0, 1, P_BINS + 1)
    counts = np.zeros(P_BINS, dtype=np.int64)
    for values in batches:
        counts += np.histogram(values[~np.isnan(values)], bins=edges)[0]
    return counts


def plot_p_histogram(judged: Any, chosen: Any, path: Path) -> Path:
    """Histogram of the judge's p_a (and of the dataset's p_chosen where there is a dataset), from bin counts."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, P_BINS + 1)
    edges = bins.tolist()
    ax.hist(
        bins[:-1],
        bins=edges,
        weights=judged,
        alpha=0.6,
        label=f"judge p_a (n={int(judged.sum())})",
        color="#4c72b0",
    )
    if chosen.sum():
        ax.hist(
            bins[:-1],
            bins=edges,
            weights=chosen,
            alpha=0.6,
            color="#dd8452",
            label=f"dataset p_chosen (n={int(chosen.sum())})",
        )
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlabel="probability", ylabel="pairs", xlim=(0, 1), title="Judge probabilities")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # head-room so the legend never covers a bar
    ax.legend(loc="upper center", ncols=2, fontsize="small", frameon=False)
    fig.savefig(path, format="png")
    return path


def plot_principle_win_rates(per_principle: dict[str, Any], path: Path) -> Path | None:
    """Bar chart: per judge principle, how often the revision beat the initial response."""
    rows = [
        (pid, f.revision_win_rate, f.revision_pairs)
        for pid, f in per_principle.items()
        if f.revision_win_rate is not None
    ]
    if not rows:
        return None
    names = [f"{pid} (n={n})" for pid, _, n in rows][::-1]
    widest = max(len(name) for name in names)
    fig = _figure(height=max(2.0, 0.3 * len(rows) + 1.0), left=min(0.6, 0.04 + 0.0125 * widest))
    ax = fig.add_subplot()
    ax.barh(names, [rate for _, rate, _ in rows][::-1], color="#55a868")
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlim=(0, 1), xlabel="revision beat the initial response (win rate)")
    ax.set_title("Revision win rate per judge principle", loc="right")
    fig.savefig(path, format="png")
    return path


def plot_rewards(steps: list[StepRewards], path: Path) -> Path | None:
    """Line plot: the judge's mean reward per training step (online training), with its spread and failures."""
    # (step, mean, sd, failed) of the steps with a step number and at least one reward
    points = [
        (s["step"], s["mean"], s["std"] or 0.0, s["failed"])
        for s in steps
        if s["step"] is not None and s["mean"] is not None
    ]
    if not points:
        return None
    x, mean, spread, _ = (list(column) for column in zip(*points))
    fig = _figure()
    ax = fig.add_subplot()
    low, high = [m - d for m, d in zip(mean, spread)], [m + d for m, d in zip(mean, spread)]
    ax.fill_between(x, low, high, alpha=0.2, color="#4c72b0")
    ax.plot(x, mean, "-o", markersize=3, color="#4c72b0", label="mean reward (band: ±1 sd)")
    failed = [(step, m) for step, m, _, n in points if n]
    if failed:
        ax.plot(*zip(*failed), "x", color="#c44e52", label="step with failures")
    ax.set(xlabel="training step", ylabel="judge reward", ylim=(-0.05, 1.05), title="Judge rewards per step")
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    fig.savefig(path, format="png")
    return path


def make_plots(
    store: RunStore, fp: Fingerprints | None, stats: JudgeStats, out: Path, rewards: Sequence[StepRewards] = ()
) -> tuple[list[dict], str | None]:
    """Write the PNG plots into `out`; returns [{title, file}] and a note if plotting was impossible."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "Plots need matplotlib (a dependency of charter): pip install matplotlib."
    plots = []
    if rewards and plot_rewards(list(rewards), out / "rewards.png"):
        plots.append({"title": "Judge rewards per training step", "file": "rewards.png"})
    if fp is None:
        return plots, None
    judged = p_counts(judge_p_values(store, fp))
    if judged.sum():
        chosen = p_counts(float_batches(RunFiles(store.run_dir), "p_chosen")())
        plot_p_histogram(judged, chosen, out / "judge_p.png")
        plots.append({"title": "Judge probabilities", "file": "judge_p.png"})
    if plot_principle_win_rates(stats.per_principle, out / "principle_win_rates.png"):
        plots.append({"title": "Revision win rate per principle", "file": "principle_win_rates.png"})
    return plots, None
