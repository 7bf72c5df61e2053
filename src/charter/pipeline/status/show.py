"""The views of the status record (charter.pipeline.status.record): the text view of `charter status`, drawn with
rich for a terminal of any width (at 80 columns no model name or figure is split over lines), and the JSON view that
`charter status RUN --json` prints, the rich view with nothing left out, for scripts and CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from charter.monitor.gold import published_line, rule_change
from charter.pipeline.status.record import StageProgress, StatusReport, status
from charter.providers.batch import ENDED
from charter.runs.counts import COUNT_LABELS, ordered_counts

__all__ = ["print_status", "status_json", "trainer_summary"]


def _steps_table(title: str, columns: tuple[str, ...]) -> Any:
    """An empty table of training steps: `columns`, right-justified."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    return table


def _shown(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps a table shows: all of up to 12, else the first and the last 6."""
    return steps if len(steps) <= 12 else [*steps[:6], *steps[-6:]]


def _pairs_table(steps: list[dict[str, Any]]) -> Any:
    """Online DPO's pairs per training step: trained on, masked because the judgment failed or was undecided."""
    columns = ("step", "pairs", "trained", "masked failed", "masked undecided", "from cache")
    table = _steps_table("Online DPO pairs per training step (reward store)", columns)
    for row in _shown(steps):
        table.add_row(*(str(row.get(k)) for k in ("step", "pairs", "trained", "failed", "undecided", "from_store")))
    return table


def _rewards_table(steps: list[dict[str, Any]]) -> Any:
    """The judge's rewards per training step (the reward store of online training)."""
    table = _steps_table(
        "Judge rewards per training step (reward store)", ("step", "rewards", "failed", "mean", "std", "from cache")
    )
    for row in _shown(steps):
        mean, std = row["mean"], row["std"]
        table.add_row(
            str(row["step"]),
            str(row["n"]),
            str(row["failed"]),
            "n/a" if mean is None else f"{mean:.3f}",
            "n/a" if std is None else f"{std:.3f}",
            str(row["cached"]),
        )
    return table


def _interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def _monitor_table(steps: list[dict[str, Any]]) -> Any:
    """The gold monitor's evaluations: training reward against gold on the held-out prompts, the gap, the flags."""
    columns = ("step", "reward", "gold", "gap", "gold change since best", "gold failed", "flag")
    table = _steps_table("Gold monitor: training reward against gold (held-out prompts)", columns)
    for row in _shown(steps):
        change, what = rule_change(row)
        since = "" if row["step"] == row["best_step"] else _interval(change["change"], change["low"], change["high"])
        since += " (people-corrected)" if since and what != "gold" else ""
        table.add_row(
            str(row["step"]),
            _interval(row["reward"], row["reward_low"], row["reward_high"]),
            _interval(row["gold"], row["gold_low"], row["gold_high"]),
            _interval(row["gap"], row["gap_low"], row["gap_high"]),
            f"{since} (best {row['best_step']})" if since else f"best {row['best_step']}",
            str(row["gold_failures"]),
            "FLAG" if row["flagged"] else "",
        )
    return table


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _progress_text(row: StageProgress) -> str:
    """Items done of all (a failed item is not done), and those failed apart: `4/16 (25%), 12 failed`."""
    done, total, failed = row["done"], row["total"], row.get("failed", 0)
    if done is None:
        return f"{failed} failed" if failed else ""
    shown = f"{done}/{total} ({100 * done / total:.0f}%)" if total else f"{done}"
    return f"{shown}, {failed} failed" if failed else shown


def _stage_table(data: StatusReport):
    from rich.table import Table

    colours = {"done": "green", "running": "yellow", "failed": "red", "interrupted": "red"}
    table = Table(title="Stages", title_justify="left")
    for column in ("stage", "status", "progress", "elapsed"):
        table.add_column(column, justify="right" if column in ("progress", "elapsed") else "left")
    for row in data["stages"]:
        colour = next((c for status, c in colours.items() if row["status"].startswith(status)), "white")
        table.add_row(row["stage"], f"[{colour}]{row['status']}[/]", _progress_text(row), _duration(row["elapsed_s"]))
    return table


#: count labels the terminal view leaves out while they are zero (the report shows them all)
_ZERO_HIDDEN = {
    COUNT_LABELS[k]
    for k in (
        "prompts_empty",
        "prompts_duplicate",
        "prompts_too_long",
        "prompts_skipped_too_long",
        "prompts_truncated",
        "samples",
        "chains_unrevised",
    )
}


def _counts_table(data: StatusReport):
    from rich.table import Table

    table = Table(title="Counts", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in ordered_counts(data["counts"]):
        if value or label not in _ZERO_HIDDEN:
            table.add_row(label, f"{value:,}")
    for step in data["filters"][1:]:
        if step["dropped"]:
            table.add_row(f"  dropped: {step['step']}", f"-{step['dropped']:,} → {step['remaining']:,}")
    return table


#: The usage table's columns after role and model, with each row's and the total's value of them.
_USAGE_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("calls", lambda r: f"{r['calls']:,}"),
    ("cached", lambda r: f"{r['cached']:,}"),
    ("retries", lambda r: f"{r['retries']:,}"),
    ("prompt tok", lambda r: f"{r['prompt_tokens']:,}"),
    ("cache read/write", lambda r: f"{r['cache_read_tokens']:,}/{r['cache_write_tokens']:,}"),
    ("compl. tok", lambda r: f"{r['completion_tokens']:,}"),
    ("USD", lambda r: f"{r['cost_usd']:.4f}"),
)


def _usage_figures(values: dict[str, Any]) -> list[str]:
    """A usage row's (or the totals') figures, in the order of `_USAGE_COLUMNS`."""
    return [shown(values) for _, shown in _USAGE_COLUMNS]


def _price_sources(rows: list[dict[str, Any]]) -> dict[str, str]:
    """What priced each model, by model (a model of several roles once)."""
    return {row["model"]: row["price_source"] for row in rows}


def _cache_line(totals: dict[str, float]) -> str:
    share = totals["cache_read_tokens"] / totals["prompt_tokens"] if totals["prompt_tokens"] else 0.0
    return (
        f"{share:.1%} of prompt tokens read from the providers' caches;"
        f" caching saved {totals['cache_saved_usd']:.4f} USD."
    )


def _usage_table(data: StatusReport):
    """Tokens and cost, one table row per (role, model)."""
    from rich.table import Table

    table = Table(title="Tokens and cost", title_justify="left")
    for column in ("role", "model", *(name for name, _ in _USAGE_COLUMNS)):
        table.add_column(column, justify="left" if column in ("role", "model") else "right", overflow="fold")
    usage = data["usage"]
    for r in usage["rows"]:
        table.add_row(r["role"], r["model"], *_usage_figures(r))
    if usage["rows"]:
        table.add_row("[bold]total[/]", "", *_usage_figures(usage["totals"]))
        priced = "; ".join(f"{model}: {source}" for model, source in _price_sources(usage["rows"]).items())
        table.caption = f"{_cache_line(usage['totals'])} Priced by {priced}"
        table.caption_justify = "left"
    return table


def _price_note(source: str) -> str:
    return "unpriced" if source == "unpriced" else f"priced by {source}"


def _usage_block(title: Any, figures: list[str], widths: list[int]) -> Any:
    """One (role, model) of the narrow usage view: its title line, then its figures in two columns of label and
    value (`widths`: each figure's, alike in every block), none of them wrapped (folded only where one figure is
    wider than the terminal)."""
    from rich.console import Group
    from rich.table import Table

    names = [name for name, _ in _USAGE_COLUMNS]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(width=0)  # the indent
    for side in ((0, 1, 2, 6), (3, 4, 5)):
        grid.add_column(min_width=max(len(names[i]) for i in side), no_wrap=True, overflow="fold")
        grid.add_column(justify="right", min_width=max(widths[i] for i in side), no_wrap=True, overflow="fold")
    left = [(names[i], figures[i]) for i in (0, 1, 2, 6)]
    right = [(names[i], figures[i]) for i in (3, 4, 5)] + [("", "")]
    for (label, value), (other, more) in zip(left, right):
        grid.add_row("", label, value, other, more)
    return Group(title, grid)


def _usage_narrow(data: StatusReport) -> Any:
    """Tokens and cost for a terminal too narrow for the table: per (role, model) a title line (role, model and
    what priced it) and its figures below, so that no model name or figure is split over lines."""
    from rich.console import Group
    from rich.text import Text

    usage = data["usage"]
    rows = [(r, _usage_figures(r)) for r in usage["rows"]]
    totals = _usage_figures(dict(usage["totals"]))
    widths = [max(len(figures[i]) for figures in [totals, *(f for _, f in rows)]) for i in range(len(totals))]
    parts: list[Any] = [Text("Tokens and cost", style="italic")]
    for r, figures in rows:
        title = Text(f"{r['role']}  ", style="bold")
        title.append(r["model"])
        title.append(f"  {_price_note(r['price_source'])}", style="dim")
        parts.append(_usage_block(title, figures, widths))
    if rows:
        parts += [_usage_block(Text("total", style="bold"), totals, widths), Text(_cache_line(usage["totals"]))]
    return Group(*parts)


def _usage_view(data: StatusReport, console: Any) -> Any:
    """The usage table where the console is wide enough for it to show every cell on one line, else the narrow
    view (a log file, CI, a terminal of 80 columns)."""
    from rich.measure import Measurement

    table = _usage_table(data)
    if not data["usage"]["rows"]:
        return table
    table.caption = None  # the caption wraps between words anyway; the cells must fit
    wanted = Measurement.get(console, console.options.update_width(10_000), table).maximum
    fits = wanted <= console.width
    return _usage_table(data) if fits else _usage_narrow(data)


def _failures_text(data: StatusReport):
    from rich.text import Text

    failures = data["failures"]
    text = Text()
    if not failures["total"]:
        note = f" ({failures['resolved']} item(s) failed once and then succeeded)" if failures["resolved"] else ""
        return Text(f"No failures.{note}", style="green")
    by_stage = ", ".join(f"{stage}: {n}" for stage, n in failures["by_stage"].items())
    held = f"; {failures['quarantined']} quarantined (not tried again)" if failures["quarantined"] else ""
    text.append(
        f"Failed items: {failures['total']} ({by_stage}){held}; a new run tries the others again\n", style="bold red"
    )
    for f in failures["first"]:
        text.append(f"  [{f['stage']}] {f['item_id']} ({f['kind']}, failed in {f['runs']} run(s)): ", style="red")
        text.append(f"{f['error']}\n")  # Text.append never interprets markup: model text stays literal
        if f["raw"]:
            text.append(f"    raw: {f['raw']!r}\n", style="dim")
    return text


def _header(data: StatusReport, width: int) -> Any:
    """The run's identity, constitution and models: the models on one line where it fits, else one line a role
    (`role  model`), so that a model string is split only where it alone is wider than the terminal."""
    from rich.text import Text

    header = Text(f"Run {data['run_id'] or '?'}", style="bold")
    header.append(f"  {data['path']}  created {data['created_at'] or '?'}\n", style="dim")
    constitution = data["constitution"] or {}
    named = f"constitution {constitution.get('name')} {constitution.get('hash', '')[:12]}" if constitution else ""
    models = ", ".join(f"{role}={model}" for role, model in data["models"].items())
    if len(f"{named}  {models}") <= width:
        header.append(f"{named}  {models}" if named else models)
        return header
    pad = max(map(len, data["models"]), default=0) + 2
    lines = [f"{role:<{pad}}{model}" for role, model in data["models"].items()]
    header.append("\n".join([named, *lines] if named else lines))
    return header


def _online_steps(data: StatusReport) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Online training's rewards per step, and online DPO's pairs per step (one of them is empty)."""
    online = data["online"]
    if online is None:
        return [], []
    return ([], online["per_step"]) if "trained" in online else (online["per_step"], [])


def _stage_notes(stages: list[StageProgress]) -> list[tuple[str, str]]:
    """Each stage's recorded reason as a line and its style, once: a finished side stage's note says what it did
    (`audit: ...`); a stop that ended several stages together (critique and judge share one) is one `stopped:`
    line."""
    lines: dict[str, str] = {}
    for row in stages:
        reason = row["counts"].get("reason")
        if not reason:
            continue
        if row["status"] in ("done", "skipped"):
            lines.setdefault(f"{row['stage']}: {reason}", "")
        else:
            lines.setdefault(f"stopped: {reason}", "red")
    return sorted(lines.items(), key=lambda item: (item[1] == "", item[0]))


def print_status(run_dir: str | Path, console: Any = None) -> StatusReport:
    """Print a run's status with rich (the `charter status` command); returns the status record."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    data = status(run_dir)
    rewards, pairs = _online_steps(data)
    console.print(_header(data, console.width))
    for sentence in data["headline"]:  # what to read first: a judge at chance, failures, few rows
        console.print(Text(sentence, style="bold red"))
    if data["stages"]:
        console.print(_stage_table(data))
        for line, style in _stage_notes(data["stages"]):
            console.print(Text(line, style=style))
    elif rewards:
        steps = rewards
        console.print(
            f"Online training: {len(steps)} step(s) rewarded, {sum(s['n'] for s in steps)} rewards, "
            f"{sum(s['failed'] for s in steps)} failed judgment(s) (the reward store)"
        )
    elif pairs:
        steps = pairs
        console.print(
            f"Online DPO: {len(steps)} step(s), {sum(s['pairs'] for s in steps)} pairs, "
            f"{sum(s['trained'] for s in steps)} trained, masked {sum(s['failed'] for s in steps)} failed and "
            f"{sum(s['undecided'] for s in steps)} undecided (the reward store)"
        )
    else:
        console.print("No stage has started yet.")
    if data["stages"] or not (rewards or pairs):
        console.print(_counts_table(data))
    if rewards:
        console.print(_rewards_table(rewards))
    if pairs:
        console.print(_pairs_table(pairs))
    if data["monitor"]:
        console.print(_monitor_table([dict(s) for s in data["monitor"]]))
        training = data["training"] or {}
        summary, last = training.get("monitor"), (training.get("training") or {}).get("global_step")
        if summary and last is not None:  # training ended: which policy was published, and the gold-best one
            console.print(published_line(summary, last))
    console.print(_usage_view(data, console))
    console.print(_failures_text(data))
    if data["batches"]:
        running = [b for b in data["batches"] if b["state"] not in ENDED]
        line = f"Provider batches: {len(data['batches'])} submitted"
        line += (
            f", {len(running)} still running ({', '.join(b['batch_id'] for b in running[:3])}"
            f"{', ...' if len(running) > 3 else ''}; the same run command collects them)"
            if running
            else ", all ended"
        )
        console.print(Text(line, style="yellow" if running else ""))
    for note in data["notes"]:
        console.print(Text(note, style="yellow"))
    return data


def trainer_summary(report: StatusReport) -> str:
    """One line on an offline trainer's output folder (what `charter status` prints for one)."""
    training = (report["training"] or {}).get("training") or {}
    names = {"reward_model": "Reward model", "dpo": "DPO policy"}
    shown = [
        f"{label} {training[key]}"
        for key, label in (("global_step", "steps"), ("train_loss", "train loss"), ("seconds", "seconds"))
        if training.get(key) is not None
    ]
    name, model = names.get(report["kind"], report["kind"]), report["models"].get("model", "?")
    return f"{name} trained from {model}: {', '.join(shown) or 'no training summary'}"


def status_json(report: StatusReport) -> str:
    """The report as JSON text (what `charter status --json` prints)."""
    return json.dumps(report, indent=2, ensure_ascii=False, default=str)
