"""`charter status RUN_DIR`: where a run stands, read from its run store alone.

Stage progress, counts per stage, failures, tokens and cost. Safe to call while a run is writing
(SQLite WAL readers do not block the writer) and on runs that were interrupted mid-stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TypedDict

from charter.preference.manifest import current_settings, dataset_manifest
from charter.providers.batch import ENDED
from charter.providers.prices import Price, normalise_keys, resolve_price
from charter.records import UsageRow
from charter.runs.counts import COUNT_LABELS, FilterStep, filter_steps, ordered_counts
from charter.runs.files import RunFiles
from charter.runs.lock import holder
from charter.runs.rewards import StepPairs, StepRewards, pair_steps, per_step
from charter.runs.store import BatchState, RunStore, open_store
from charter.runs.tallies import failure_tallies, live_counts, stage_items, usage_totals

__all__ = ["RunStatus", "filter_steps", "ordered_counts", "print_status", "run_counts", "status"]


class StageProgress(TypedDict):
    """One stage's row in the status."""

    stage: str
    status: str
    """running, done, failed, stopped, or "interrupted (...)" when no process holds a stage marked running."""
    started_at: float | None
    finished_at: float | None
    elapsed_s: float | None
    """Seconds from start to finish (to now while it runs)."""
    done: int | None
    """Items finished, where known."""
    total: int | None
    """Items in all, where known."""
    counts: dict[str, Any]
    """The stage's own counts as it recorded them."""


class ShownFailure(TypedDict):
    """One failing item, with its error and the start of the raw reply."""

    stage: str
    item_id: str
    kind: str
    error: str
    raw: str | None
    """The raw reply, cut to `raw_chars` characters."""
    runs: int
    """In how many run sessions it failed."""
    quarantined: bool
    """Failed in `quarantine_after` sessions: not tried again."""


class FailureSummary(TypedDict):
    """The items still failing, by stage, with the first few shown."""

    total: int
    by_stage: dict[str, int]
    first: list[ShownFailure]
    resolved: int
    """Items that failed before and then succeeded."""
    quarantined: int


#: The usage totals `charter status` and the report show.
USAGE_SHOWN = (
    "calls",
    "cached",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_saved_usd",
)


class UsageSummary(TypedDict):
    """Tokens and cost per (role, model), and their totals."""

    rows: list[UsageRow]
    totals: dict[str, float]
    """calls, cached, retries, prompt_tokens, completion_tokens, cost_usd, cache_read_tokens, cache_write_tokens and
    cache_saved_usd summed over the rows."""
    cache_share: float
    """The share of all prompt tokens the providers read from their prompt caches (0 with no prompt tokens)."""
    price_sources: dict[str, str]
    """Which source priced each model: config, genai-prices or unpriced."""


class RunStatus(TypedDict):
    """Where a run stands (`charter status`, `charter status --json`)."""

    run_dir: str
    run_id: str | None
    created_at: str | None
    constitution: dict[str, Any] | None
    """The constitution's name, hash and principle ids."""
    models: dict[str, str]
    """Model id per role."""
    stages: list[StageProgress]
    counts: dict[str, int]
    """Per-stage counts (labels in charter.runs.counts.COUNT_LABELS)."""
    filters: list[FilterStep]
    failures: FailureSummary
    usage: UsageSummary
    notes: list[str]
    """What a reader should know: a dataset not written, the run's settings (config changes, older items kept)."""
    batches: list[BatchState]
    rewards: list[StepRewards]
    """Online training (charter train grpo|rloo): the judge's reward per step; empty for a run."""
    pairs: list[StepPairs]
    """Online DPO (charter train online-dpo): pairs per step, trained and masked by reason; empty otherwise."""


def run_counts(store: RunStore) -> dict[str, int]:
    """Per-stage counts: the last dataset build's, overridden by live table counts and the written files."""
    manifest = dataset_manifest(store)
    counts: dict[str, int] = {**(store.meta("prompt_counts") or {}), **(manifest.counts if manifest else {})}
    counts.setdefault("prompts_total", store.count("prompts"))
    counts.update(live_counts(store))
    files = RunFiles(store.run_dir)
    for name in ("preferences", "sft"):
        rows = files.dataset_size(name)  # type: ignore[arg-type]
        if rows is not None:
            counts[name] = rows
    return counts


def usage_summary(store: RunStore) -> UsageSummary:
    """Tokens and cost per (role, model) and their totals."""
    rows = store.usage()
    totals = usage_totals(rows)
    prices = normalise_keys({k: Price.model_validate(v) for k, v in (store.run_config().get("prices") or {}).items()})
    recorded = store.meta("price_sources") or {}  # as the run priced its calls; else as they would be priced now
    return UsageSummary(
        rows=rows,
        totals={f: totals[f] for f in USAGE_SHOWN},
        cache_share=totals["cache_read_tokens"] / totals["prompt_tokens"] if totals["prompt_tokens"] else 0.0,
        price_sources={r.model: recorded.get(r.model) or resolve_price(prices, r.model)[1] for r in rows},
    )


def failure_summary(store: RunStore, first: int = 5, raw_chars: int = 400) -> FailureSummary:
    """Items still failing (their latest failure; by stage), how many failed before and then succeeded, those
    quarantined (failed in `quarantine_after` runs: not tried again), and the first few with error and raw text."""
    limit = int(store.run_config().get("quarantine_after") or 3)
    tallies = failure_tallies(store, limit, first)
    shown = []
    for stored, runs in tallies.first:
        raw = stored.failure.raw
        if raw is not None and len(raw) > raw_chars:
            raw = raw[:raw_chars] + f"… ({len(stored.failure.raw or '')} characters)"
        shown.append(
            ShownFailure(
                stage=stored.stage,
                item_id=stored.item_id,
                kind=stored.failure.kind,
                error=stored.failure.message,
                raw=raw,
                runs=runs,
                quarantined=runs >= limit,
            )
        )
    return FailureSummary(
        total=sum(tallies.by_stage.values()),
        by_stage=tallies.by_stage,
        first=shown,
        resolved=tallies.resolved,
        quarantined=tallies.quarantined,
    )


def stage_progress(store: RunStore, now: float | None = None) -> list[StageProgress]:
    """One row per stage recorded in the store: status, elapsed seconds, done/total where known."""
    now = now or time.time()
    fp = store.fingerprints()
    found = holder(store.run_dir)
    gone = found is None or found.alive is False  # no process holds the run: a stage "running" was cut off
    rows = []
    for name, stage in store.stages().items():
        started, finished = stage["started_at"], stage["finished_at"]
        counts = stage["counts"] or {}
        done, total = counts.get("done"), counts.get("total")
        counted = stage_items(store, name, fp) if done is None and fp is not None else None
        if counted is not None:
            done, total = counted
        status = stage["status"]
        if status == "running" and gone:
            status = "interrupted (its process ended without a word: killed?)"
        rows.append(
            StageProgress(
                stage=name,
                status=status,
                started_at=started,
                finished_at=finished,
                elapsed_s=((finished or now) - started) if started else None,
                done=done,
                total=total,
                counts=counts,
            )
        )
    return sorted(rows, key=lambda r: r["started_at"] or float("inf"))


def settings_notes(store: RunStore) -> list[str]:
    """What a reader should know about settings: config changes, older items kept, a dataset of other settings."""
    notes = []
    fp = store.fingerprints()
    history = store.config_history()
    if history:
        last = history[-1]
        shown = "; ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in last.changes[:4])
        more = f" and {len(last.changes) - 4} more" if len(last.changes) > 4 else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(last.changed_at))
        notes.append(f"The config changed {len(history)} time(s); last at {when} UTC: {shown}{more}.")
    if fp is not None:
        older = {k: v for k, v in store.older_items(fp).items() if v}
        if older:
            items = ", ".join(f"{n} {k}" for k, n in older.items())
            notes.append(
                f"Older items made with earlier settings are kept in the store but left out of the dataset: {items}."
            )
    manifest = dataset_manifest(store)
    if manifest is not None and fp is not None and manifest.settings.fingerprints.dataset != fp.dataset:
        notes.append(
            "The dataset files were written with earlier settings (the run has not finished with the "
            "current ones); the report and the card describe the files' settings."
        )
    return notes


def dataset_notes(store: RunStore, stages: list[StageProgress]) -> list[str]:
    """Where the per-prompt stages ended (done, or stopped) but the dataset files are not there: the process ended
    (kill -9, a crash) before it wrote them, or they were removed."""
    ended = [row for row in stages if row["stage"] in ("critique", "judge") and row["status"] != "running"]
    if not ended:
        return []
    files = RunFiles(store.run_dir)
    missing = [name for name in ("preferences", "sft") if not files.has_dataset(name)]  # type: ignore[arg-type]
    if dataset_manifest(store) is not None and not missing:
        return []
    shown = ", ".join(f"data/{name}.*" for name in missing) or "the dataset's manifest"
    return [
        f"The dataset is not written ({shown} missing): the run ended before writing it; the same run command "
        "writes it from the store (no call is made again)."
    ]


def status(run_dir: str | Path) -> RunStatus:
    """Where a run stands, read from its run store alone (safe while the run writes, and after it was cut off).

    Args:
        run_dir: The run directory.

    Returns:
        Its identity, stage progress, counts, filters, failures, tokens and cost, settings notes and provider
        batches.

    Raises:
        RunStoreError: The directory holds no run store, or one this version cannot read.
    """
    with open_store(run_dir, read_only=True) as store:
        counts = run_counts(store)
        settings = current_settings(store)
        stages = stage_progress(store)
        return RunStatus(
            run_dir=str(Path(run_dir)),
            run_id=store.meta("run_id"),
            created_at=store.meta("created_at"),
            constitution=store.meta("constitution"),
            models=settings.models if settings else {},
            stages=stages,
            counts=counts,
            filters=filter_steps(counts),
            failures=failure_summary(store),
            usage=usage_summary(store),
            notes=dataset_notes(store, stages) + settings_notes(store),
            batches=store.batches(),
            rewards=per_step(store),
            pairs=pair_steps(store),
        )


# -- rendering -----------------------------------------------------------------------------------------


def _pairs_table(steps: list[StepPairs]) -> Any:
    """Online DPO's pairs per training step: trained on, masked because the judgment failed or was undecided."""
    from rich.table import Table

    table = Table(title="Online DPO pairs per training step (reward store)")
    for column in ("step", "pairs", "trained", "masked failed", "masked undecided", "from cache"):
        table.add_column(column, justify="right")
    shown = steps if len(steps) <= 12 else [*steps[:6], *steps[-6:]]
    for row in shown:
        table.add_row(*(str(row.get(k)) for k in ("step", "pairs", "trained", "failed", "undecided", "from_store")))
    return table


def _rewards_table(steps: list[StepRewards]) -> Any:
    """The judge's rewards per training step (the reward store of online training)."""
    from rich.table import Table

    table = Table(title="Judge rewards per training step (reward store)")
    for column in ("step", "rewards", "failed", "mean", "std", "from cache"):
        table.add_column(column, justify="right")
    shown = steps if len(steps) <= 12 else [*steps[:6], *steps[-6:]]
    for row in shown:
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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _progress_text(row: StageProgress) -> str:
    done, total = row["done"], row["total"]
    if done is None:
        return ""
    if not total:
        return f"{done}"
    return f"{done}/{total} ({100 * done / total:.0f}%)"


def _stage_table(data: RunStatus):
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
    )
}


def _counts_table(data: RunStatus):
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


def _cache_line(usage: UsageSummary) -> str:
    totals = usage["totals"]
    return (
        f"{usage['cache_share']:.1%} of prompt tokens read from the providers' caches;"
        f" caching saved {totals['cache_saved_usd']:.4f} USD."
    )


def _usage_table(data: RunStatus):
    """Tokens and cost, one table row per (role, model)."""
    from rich.table import Table

    table = Table(title="Tokens and cost", title_justify="left")
    for column in ("role", "model", *(name for name, _ in _USAGE_COLUMNS)):
        table.add_column(column, justify="left" if column in ("role", "model") else "right", overflow="fold")
    usage = data["usage"]
    for r in usage["rows"]:
        table.add_row(r.role, r.model, *_usage_figures(r.model_dump()))
    if usage["rows"]:
        table.add_row("[bold]total[/]", "", *_usage_figures(usage["totals"]))
        priced = "; ".join(f"{model}: {source}" for model, source in usage["price_sources"].items())
        table.caption = f"{_cache_line(usage)} Priced by {priced}"
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


def _usage_narrow(data: RunStatus) -> Any:
    """Tokens and cost for a terminal too narrow for the table: per (role, model) a title line (role, model and
    what priced it) and its figures below, so that no model name or figure is split over lines."""
    from rich.console import Group
    from rich.text import Text

    usage = data["usage"]
    rows = [(r, _usage_figures(r.model_dump())) for r in usage["rows"]]
    totals = _usage_figures(dict(usage["totals"]))
    widths = [max(len(figures[i]) for figures in [totals, *(f for _, f in rows)]) for i in range(len(totals))]
    parts: list[Any] = [Text("Tokens and cost", style="italic")]
    for r, figures in rows:
        title = Text(f"{r.role}  ", style="bold")
        title.append(r.model)
        title.append(f"  {_price_note(usage['price_sources'][r.model])}", style="dim")
        parts.append(_usage_block(title, figures, widths))
    if rows:
        parts += [_usage_block(Text("total", style="bold"), totals, widths), Text(_cache_line(usage))]
    return Group(*parts)


def _usage_view(data: RunStatus, console: Any) -> Any:
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


def _failures_text(data: RunStatus):
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


def _header(data: RunStatus, width: int) -> Any:
    """The run's identity, constitution and models: the models on one line where it fits, else one line a role
    (`role  model`), so that a model string is split only where it alone is wider than the terminal."""
    from rich.text import Text

    header = Text(f"Run {data['run_id'] or '?'}", style="bold")
    header.append(f"  {data['run_dir']}  created {data['created_at'] or '?'}\n", style="dim")
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


def print_status(run_dir: str | Path, console: Any = None) -> RunStatus:
    """Print a run's status with rich (the `charter status` command); returns the status dict."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    data = status(run_dir)
    console.print(_header(data, console.width))
    if data["stages"]:
        console.print(_stage_table(data))
        notes = {
            (row["status"] in ("done", "skipped"), row["stage"], str(row["counts"]["reason"]))
            for row in data["stages"]
            if row["counts"].get("reason")
        }
        for finished, stage, reason in sorted(notes):  # a finished side stage's note says what it did
            console.print(Text(f"{stage}: {reason}") if finished else Text(f"stopped: {reason}", style="red"))
    elif data["rewards"]:
        steps = data["rewards"]
        console.print(
            f"Online training: {len(steps)} step(s) rewarded, {sum(s['n'] for s in steps)} rewards, "
            f"{sum(s['failed'] for s in steps)} failed judgment(s) (the reward store)"
        )
    elif data["pairs"]:
        steps = data["pairs"]
        console.print(
            f"Online DPO: {len(steps)} step(s), {sum(s['pairs'] for s in steps)} pairs, "
            f"{sum(s['trained'] for s in steps)} trained, masked {sum(s['failed'] for s in steps)} failed and "
            f"{sum(s['undecided'] for s in steps)} undecided (the reward store)"
        )
    else:
        console.print("No stage has started yet.")
    if data["stages"] or not (data["rewards"] or data["pairs"]):
        console.print(_counts_table(data))
    if data["rewards"]:
        console.print(_rewards_table(data["rewards"]))
    if data["pairs"]:
        console.print(_pairs_table(data["pairs"]))
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
