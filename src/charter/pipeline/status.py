"""`charter status RUN_DIR`: where a run stands, read from its run store alone.

Stage progress, counts per stage, failures, tokens and cost. Safe to call while a run is writing
(SQLite WAL readers do not block the writer) and on runs that were interrupted mid-stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from charter.pipeline.store import RunStore, open_store

PREFERENCES_FILE = Path("data") / "preferences.parquet"
SFT_FILE = Path("data") / "sft.parquet"

#: count keys in the order the report and status show them, with their labels
COUNT_LABELS: dict[str, str] = {
    "prompts_total": "prompts read",
    "prompts_empty": "prompts skipped: empty",
    "prompts_duplicate": "prompts skipped: duplicate",
    "prompts_too_long": "prompts too long",
    "prompts_skipped_too_long": "prompts skipped: too long",
    "prompts_truncated": "prompts truncated: too long",
    "prompts_used": "prompts used",
    "chains": "critique chains",
    "samples": "prompts with policy samples",
    "pairs": "pairs",
    "judged": "pairs judged",
    "judge_failures": "judge failures",
    "failures": "failures (all stages)",
    "preferences_before_filters": "preferences before filters",
    "preferences": "preferences written",
    "sft": "SFT rows written",
}

#: filters in the order the preference builder applies them (charter.preference.dataset.apply_filters);
#: each row is dropped by at most one, so the rows left after each step add up
FILTER_KEYS: dict[str, str] = {
    "dropped_not_best_vs_worst": "not best vs worst sample",
    "dropped_ties": "ties",
    "dropped_low_confidence": "minimum confidence",
    "dropped_inconsistent": "position-inconsistent",
    "dropped_duplicates": "exact duplicates",
    "dropped_principle_cap": "per-principle cap",
}

#: stage -> (SQL counting the finished items, SQL counting all items so far)
_PROGRESS = {
    "critique": ("SELECT COUNT(*) FROM (SELECT prompt_id FROM chains UNION SELECT prompt_id FROM samples)",
                 "SELECT COUNT(*) FROM prompts"),
    "judge": ("SELECT COUNT(*) FROM judgments", "SELECT COUNT(*) FROM pairs"),
}


def parquet_rows(path: Path) -> int | None:
    """Row count of a parquet file from its footer, or None if there is no file."""
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def live_counts(store: RunStore) -> dict[str, int]:
    """Counts read from the tables themselves: current even while a stage is still running."""
    return {
        "chains": store.count("chains"),
        "samples": store.execute("SELECT COUNT(DISTINCT prompt_id) FROM samples")[0][0],
        "pairs": store.count("pairs"),
        "judged": store.count("judgments", "status = 'ok'"),
        "judge_failures": store.count("judgments", "status = 'failed'"),
        "failures": store.count("failures"),
    }


def run_counts(store: RunStore) -> dict[str, int]:
    """Per-stage counts: the stored `counts` meta, overridden by live table counts and the written files."""
    counts: dict[str, int] = {**(store.meta("prompt_counts") or {}), **(store.meta("counts") or {})}
    counts.setdefault("prompts_total", store.count("prompts"))
    counts.update(live_counts(store))
    for key, rel in (("preferences", PREFERENCES_FILE), ("sft", SFT_FILE)):
        rows = parquet_rows(store.run_dir / rel)
        if rows is not None:
            counts[key] = rows
    return counts


def filter_steps(counts: dict[str, int]) -> list[dict[str, Any]]:
    """The preference filters as a waterfall: rows dropped by each filter and the rows left after it."""
    left = counts.get("preferences_before_filters")
    if left is None:
        return []
    steps = [{"step": "before filters", "dropped": None, "remaining": left}]
    others = sorted(k for k in counts if k.startswith("dropped_") and k not in FILTER_KEYS)
    for key in [*FILTER_KEYS, *others]:
        if key in counts:
            left -= counts[key]
            label = FILTER_KEYS.get(key) or key.removeprefix("dropped_").replace("_", " ")
            steps.append({"step": label, "dropped": counts[key], "remaining": left})
    return steps


def ordered_counts(counts: dict[str, int]) -> list[tuple[str, int]]:
    """(label, value) rows: the known counts in pipeline order, then any others by name."""
    known = [(label, counts[key]) for key, label in COUNT_LABELS.items() if key in counts]
    extra = sorted(
        (key.replace("_", " "), value) for key, value in counts.items()
        if key not in COUNT_LABELS and not key.startswith("dropped_") and isinstance(value, (int, float))
        and not isinstance(value, bool)
    )
    return known + extra


def usage_summary(store: RunStore) -> dict[str, Any]:
    """Tokens and cost per (role, model) and their totals."""
    rows = store.usage()
    fields = ("calls", "cached", "prompt_tokens", "completion_tokens", "cost_usd")
    totals = {f: sum(r[f] or 0 for r in rows) for f in fields}
    return {"rows": rows, "totals": totals}


def failure_summary(store: RunStore, first: int = 5, raw_chars: int = 400) -> dict[str, Any]:
    """Failures by stage and the first few with their error and (shortened) raw text."""
    rows = store.execute("SELECT stage, COUNT(*) FROM failures GROUP BY stage ORDER BY stage")
    shown = []
    for failure in store.failures()[:first]:
        raw = failure["raw"]
        if raw is not None and len(raw) > raw_chars:
            raw = raw[:raw_chars] + f"… ({len(failure['raw'])} characters)"
        shown.append({**failure, "raw": raw})
    return {"total": sum(n for _, n in rows), "by_stage": dict(rows), "first": shown}


def stage_progress(store: RunStore, now: float | None = None) -> list[dict[str, Any]]:
    """One row per stage recorded in the store: status, elapsed seconds, done/total where known."""
    now = now or time.time()
    rows = []
    for name, stage in store.stages().items():
        started, finished = stage["started_at"], stage["finished_at"]
        counts = stage["counts"] or {}
        done, total = counts.get("done"), counts.get("total")
        if done is None and name in _PROGRESS:
            done, total = (store.execute(sql)[0][0] for sql in _PROGRESS[name])
        rows.append({
            "stage": name, "status": stage["status"], "started_at": started, "finished_at": finished,
            "elapsed_s": ((finished or now) - started) if started else None,
            "done": done, "total": total, "counts": counts,
        })
    return sorted(rows, key=lambda r: r["started_at"] or float("inf"))


def status(run_dir: str | Path) -> dict[str, Any]:
    """Where a run stands: identity, stage progress, counts, failures, tokens and cost."""
    with open_store(run_dir) as store:
        counts = run_counts(store)
        return {
            "run_dir": str(Path(run_dir)),
            "run_id": store.meta("run_id"),
            "created_at": store.meta("created_at"),
            "constitution": store.meta("constitution"),
            "models": store.meta("models", {}) or {},
            "stages": stage_progress(store),
            "counts": counts,
            "filters": filter_steps(counts),
            "failures": failure_summary(store),
            "usage": usage_summary(store),
        }


# -- rendering -----------------------------------------------------------------------------------------

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _progress_text(row: dict[str, Any]) -> str:
    done, total = row["done"], row["total"]
    if done is None:
        return ""
    if not total:
        return f"{done}"
    return f"{done}/{total} ({100 * done / total:.0f}%)"


def _stage_table(data: dict[str, Any]):
    from rich.table import Table

    colours = {"done": "green", "running": "yellow", "failed": "red", "interrupted": "red"}
    table = Table(title="Stages", title_justify="left")
    for column in ("stage", "status", "progress", "elapsed"):
        table.add_column(column, justify="right" if column in ("progress", "elapsed") else "left")
    for row in data["stages"]:
        colour = colours.get(row["status"], "white")
        table.add_row(row["stage"], f"[{colour}]{row['status']}[/]", _progress_text(row),
                      _duration(row["elapsed_s"]))
    return table


#: count labels the terminal view leaves out while they are zero (the report shows them all)
_ZERO_HIDDEN = {COUNT_LABELS[k] for k in ("prompts_empty", "prompts_duplicate", "prompts_too_long",
                                          "prompts_skipped_too_long", "prompts_truncated", "samples")}


def _counts_table(data: dict[str, Any]):
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


def _usage_table(data: dict[str, Any]):
    from rich.table import Table

    table = Table(title="Tokens and cost", title_justify="left")
    for column in ("role", "model", "calls", "cached", "prompt tok", "compl. tok", "USD"):
        table.add_column(column, justify="left" if column in ("role", "model") else "right", overflow="fold")
    usage = data["usage"]
    for r in usage["rows"]:
        table.add_row(r["role"], r["model"], f"{r['calls']:,}", f"{r['cached']:,}", f"{r['prompt_tokens']:,}",
                      f"{r['completion_tokens']:,}", f"{r['cost_usd']:.4f}")
    t = usage["totals"]
    if usage["rows"]:
        table.add_row("[bold]total[/]", "", f"{t['calls']:,}", f"{t['cached']:,}", f"{t['prompt_tokens']:,}",
                      f"{t['completion_tokens']:,}", f"{t['cost_usd']:.4f}")
    return table


def _failures_text(data: dict[str, Any]):
    from rich.text import Text

    failures = data["failures"]
    text = Text()
    if not failures["total"]:
        return Text("No failures.", style="green")
    by_stage = ", ".join(f"{stage}: {n}" for stage, n in failures["by_stage"].items())
    text.append(f"Failures: {failures['total']} ({by_stage})\n", style="bold red")
    for f in failures["first"]:
        text.append(f"  [{f['stage']}] {f['item_id']}: ", style="red")
        text.append(f"{f['error']}\n")  # Text.append never interprets markup: model text stays literal
        if f["raw"]:
            text.append(f"    raw: {f['raw']!r}\n", style="dim")
    return text


def print_status(run_dir: str | Path, console: Any = None) -> dict[str, Any]:
    """Print a run's status with rich (the `charter status` command); returns the status dict."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    data = status(run_dir)
    models = ", ".join(f"{role}={model}" for role, model in data["models"].items())
    constitution = data["constitution"] or {}
    header = Text(f"Run {data['run_id'] or '?'}", style="bold")
    header.append(f"  {data['run_dir']}  created {data['created_at'] or '?'}\n", style="dim")
    if constitution:
        header.append(f"constitution {constitution.get('name')} {constitution.get('hash', '')[:12]}  ")
    header.append(models)
    console.print(header)
    if data["stages"]:
        console.print(_stage_table(data))
    else:
        console.print("No stage has started yet.")
    console.print(_counts_table(data))
    console.print(_usage_table(data))
    console.print(_failures_text(data))
    return data
