"""Where a run directory or a training output folder stands: one record (`StatusReport`), read from the run store
in one pass (or, for the output folder of an offline trainer, from the `metrics.json` its trainer wrote). The text
view of `charter status` (charter.pipeline.status.show) and the JSON view of `charter status --json` and
`charter.status()` (charter.pipeline.status.show) are both over it.

Safe to read while a run is writing (SQLite WAL readers do not block the writer) and on runs that were interrupted
mid-stage. A run directory and an online output folder (GRPO, RLOO: its reward store is a run store) are read from
their run store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from charter.api_args import public
from charter.errors import RunStoreError
from charter.monitor.gold import MonitorStep, read_history
from charter.preference.diversity import diversity_status
from charter.preference.manifest import current_settings, dataset_manifest
from charter.preference.stats import chance_stats, headline
from charter.providers.prices import Price, normalise_keys, resolve_price
from charter.records import UsageRow
from charter.runs.batches import BatchState, stored_batches
from charter.runs.counts import (
    USAGE_FIELDS,
    FilterStep,
    failure_tallies,
    filter_steps,
    live_counts,
    ordered_counts,
    stage_items,
    stage_states,
    usage_totals,
)
from charter.runs.files import RunFiles, holder
from charter.runs.history import config_history, older_items
from charter.runs.rewards import StepPairs, StepRewards, pair_steps, per_step
from charter.runs.store import STORE_FILE, RunStore, open_store
from charter.runs.usage import stored_usage

__all__ = [
    "DatasetState",
    "OnlineStatus",
    "StatusReport",
    "UsageData",
    "filter_steps",
    "ordered_counts",
    "run_counts",
    "status",
]

#: What a status describes: a pipeline run, an online training output (GRPO/RLOO, or any trainer writing a reward
#: store), or the output folder of an offline trainer.
Kind = Literal["run", "online", "reward_model", "dpo"]

METRICS_FILE = "metrics.json"


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
    """Items finished, where known: those that succeeded (a failed item is counted in `failed`, not here)."""
    failed: int
    """Items of the stage still failing (each with its reason in `failures`)."""
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
    by_kind: dict[str, dict[str, int]]
    """The items still failing by stage and by the kind of their latest failure (`unparseable`, `provider`, ...)."""
    first: list[ShownFailure]
    resolved: int
    """Items that failed before and then succeeded."""
    quarantined: int


#: The usage totals `charter status` and the report show.
USAGE_SHOWN = tuple(field for field in USAGE_FIELDS if field != "estimated")


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


class UsageData(TypedDict):
    """Tokens and cost: the total, and one row per (role, model) with every column of the usage table."""

    cost_usd: float
    """The run's total priced cost."""
    totals: dict[str, float]
    """Every numeric column summed over the rows."""
    rows: list[dict[str, Any]]
    """One per (role, model): `role`, `model`, every token count and cost the usage table keeps, and
    `price_source`, what priced the model (`config`, `genai-prices` or `unpriced`), as `charter status` shows."""


class DatasetState(TypedDict):
    """Whether the dataset files are written."""

    written: bool
    """The dataset manifest and data/preferences.* and data/sft.* are there."""
    missing: list[str]
    """The dataset files not there (`preferences`, `sft`)."""
    ended_before_writing: bool
    """The per-prompt stages ended but the process ended (kill -9, a crash) before it wrote the dataset; the same
    run command writes it from the store."""


class OnlineStatus(TypedDict):
    """An online training's rewards: totals and one row per step."""

    steps: int
    """Training steps rewarded."""
    rewards: int
    """Rewards asked for, failures included."""
    failures: int
    """Failed judgments (reward None)."""
    cached: int
    """Rewards answered from the call cache or the reward store."""
    per_step: list[dict[str, Any]]
    """Per step: `step`, `n`, `failed`, `mean`, `std`, `cached`; for online DPO `step`, `pairs`, `trained`,
    `failed`, `undecided`, `from_store`."""
    pairs: NotRequired[int]
    """Online DPO: pairs judged."""
    trained: NotRequired[int]
    """Online DPO: pairs the judge decided, in the loss."""
    masked: NotRequired[dict[str, int]]
    """Online DPO: pairs masked out of the loss, by reason (`failed`, `undecided`)."""


class StatusReport(TypedDict):
    """Where a run or a training output folder stands (`charter status RUN --json`, `charter.status(RUN)`)."""

    kind: Kind
    """run, online, reward_model or dpo."""
    headline: list[str]
    """What to read first, one sentence each (`charter.preference.stats`): a judge whose preferences cannot be
    told from chance, the items that failed, a dataset with no rows or fewer than half its pairs and why."""
    path: str
    """The folder read."""
    run_id: str | None
    created_at: str | None
    constitution: dict[str, Any] | None
    """The constitution's name, hash and principle ids."""
    models: dict[str, str]
    """Model id per role."""
    fingerprints: dict[str, str | None] | None
    """The fingerprints of the settings in effect, per stage (None before the first start)."""
    stages: list[StageProgress]
    counts: dict[str, int]
    """Per-stage counts (labels in charter.runs.counts.COUNT_LABELS)."""
    filters: list[FilterStep]
    """Each preference filter with the rows it dropped and those left."""
    failures: FailureSummary
    usage: UsageData
    dataset: DatasetState | None
    """A run's dataset files; None for a training output folder."""
    notes: list[str]
    """What a reader should know: a dataset not written, config changes, older items kept."""
    batches: list[BatchState]
    """Provider batches the run submitted, with their state."""
    online: OnlineStatus | None
    """Online training's rewards; None for anything else."""
    training: dict[str, Any] | None
    """The trainer's metrics.json, where the folder has one (a training output folder); else None."""
    monitor: list[MonitorStep] | None
    """The gold monitor's evaluations so far (OUTPUT_DIR/monitor/history.json, rewritten after each, so during
    training too): training reward and gold with intervals, the gap, signatures, flags; None without a monitor."""
    diversity: dict[str, Any] | None
    """The diversity of a run's dataset, measured when the run wrote it (`charter.preference.diversity`: per field,
    distinct-n, self-BLEU, Vendi score, mean cosine, compression ratio, lengths, each with its sample size), and
    `current`: whether it describes the dataset files as they are now; None where it was not measured."""


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
    rows = stored_usage(store)
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
        by_kind=tallies.by_kind,
        first=shown,
        resolved=tallies.resolved,
        quarantined=tallies.quarantined,
    )


def run_headline(store: RunStore, counts: Mapping[str, int], failures: FailureSummary) -> list[str]:
    """What to read first about a run's data (`charter.preference.stats`), over the rows of its dataset files'
    settings (else those in effect)."""
    manifest = dataset_manifest(store)
    settings = manifest.settings if manifest else current_settings(store)
    fp = settings.fingerprints if settings else store.fingerprints()
    stats = chance_stats(store, fp) if fp is not None else None
    return headline(stats, counts, failures["by_kind"])


def stage_progress(store: RunStore, now: float | None = None) -> list[StageProgress]:
    """One row per stage recorded in the store: status, elapsed seconds, done/total where known, and the items
    still failing apart from those done."""
    now = now or time.time()
    failing = failure_tallies(store, 1, 0).by_stage
    fp = store.fingerprints()
    found = holder(store.run_dir)
    gone = found is None or found.alive is False  # no process holds the run: a stage "running" was cut off
    rows = []
    for name, stage in stage_states(store).items():
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
                failed=failing.get(name, 0),
                counts=counts,
            )
        )
    return sorted(rows, key=lambda r: r["started_at"] or float("inf"))


def settings_notes(store: RunStore) -> list[str]:
    """What a reader should know about settings: config changes, older items kept, a dataset of other settings."""
    notes = []
    fp = store.fingerprints()
    history = config_history(store)
    if history:
        last = history[-1]
        shown = "; ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in last.changes[:4])
        more = f" and {len(last.changes) - 4} more" if len(last.changes) > 4 else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(last.changed_at))
        notes.append(f"The config changed {len(history)} time(s); last at {when} UTC: {shown}{more}.")
    if fp is not None:
        older = {k: v for k, v in older_items(store, fp).items() if v}
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


def _numeric_columns(rows: list[UsageRow]) -> list[str]:
    """The usage table's counted columns: every int or float field of the rows' record type."""
    kind = type(rows[0]) if rows else UsageRow
    return [name for name, field in kind.model_fields.items() if field.annotation in (int, float)]


def usage_data(rows: list[UsageRow], price_sources: Mapping[str, str] | None = None) -> UsageData:
    """Every column of the usage rows, per row and summed (a column added to `UsageRow` flows through), each row
    with what priced its model (`price_sources`, by model; None for a model it does not name)."""
    sources = price_sources or {}
    dumped = [{**row.model_dump(mode="json"), "price_source": sources.get(row.model)} for row in rows]
    totals: dict[str, float] = {name: sum(row.get(name) or 0 for row in dumped) for name in _numeric_columns(rows)}
    return UsageData(cost_usd=float(totals.get("cost_usd", 0.0)), totals=totals, rows=dumped)


def online_status(steps: list[StepRewards], pairs: list[StepPairs] | None = None) -> OnlineStatus | None:
    """The rewards of online training (or online DPO's judged pairs), totals and per step; None where the store
    holds neither."""
    if pairs:
        failed, undecided = sum(p["failed"] for p in pairs), sum(p["undecided"] for p in pairs)
        return OnlineStatus(
            steps=len(pairs),
            rewards=sum(p["pairs"] for p in pairs),
            failures=failed,
            cached=sum(p["from_store"] for p in pairs),
            per_step=[dict(p) for p in pairs],
            pairs=sum(p["pairs"] for p in pairs),
            trained=sum(p["trained"] for p in pairs),
            masked={"failed": failed, "undecided": undecided},
        )
    if not steps:
        return None
    return OnlineStatus(
        steps=len(steps),
        rewards=sum(s["n"] for s in steps),
        failures=sum(s["failed"] for s in steps),
        cached=sum(s["cached"] for s in steps),
        per_step=[dict(s) for s in steps],
    )


def read_metrics(folder: Path) -> dict[str, Any] | None:
    """A trainer's metrics.json in `folder` (None where there is none); unreadable JSON is a one-line error."""
    path = folder / METRICS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunStoreError(f"{path}: not a readable metrics file ({exc})") from None
    if not isinstance(data, dict):
        raise RunStoreError(f"{path}: not a metrics file (a JSON object was expected)")
    return data


def trainer_kind(metrics: dict[str, Any]) -> Kind:
    """Which trainer wrote a metrics.json: online (GRPO/RLOO name their trainer), DPO (a loss type), else the
    reward model."""
    if "trainer" in metrics:
        return "online"
    return "dpo" if "loss_type" in metrics else "reward_model"


def dataset_state(store: RunStore, stages: list[StageProgress]) -> DatasetState:
    """Whether a run's dataset files are written, which are missing, and whether the run ended before writing."""
    files = RunFiles(store.run_dir)
    missing = [name for name in ("preferences", "sft") if not files.has_dataset(name)]  # type: ignore[arg-type]
    written = dataset_manifest(store) is not None and not missing
    return DatasetState(written=written, missing=missing, ended_before_writing=bool(dataset_notes(store, stages)))


def store_status(store: RunStore, metrics: dict[str, Any] | None = None) -> StatusReport:
    """The status of a run directory or an online output folder, read from its open run store (and the trainer's
    metrics.json, where the folder has one)."""
    counts = run_counts(store)
    settings = current_settings(store)
    stages = stage_progress(store)
    online = online_status(per_step(store), pair_steps(store))
    is_run = online is None and (metrics is None or trainer_kind(metrics) != "online")
    usage = usage_summary(store)
    fp = store.fingerprints()
    failures = failure_summary(store)
    return StatusReport(
        kind="run" if is_run else "online",
        headline=run_headline(store, counts, failures) if is_run else [],
        path=str(store.run_dir),
        run_id=store.meta("run_id"),
        created_at=store.meta("created_at"),
        constitution=store.meta("constitution"),
        models=settings.models if settings else {},
        fingerprints=fp.model_dump(mode="json") if fp is not None else None,
        stages=stages,
        counts=counts,
        filters=filter_steps(counts),
        failures=failures,
        usage=usage_data(usage["rows"], usage["price_sources"]),
        dataset=dataset_state(store, stages) if is_run else None,
        notes=dataset_notes(store, stages) + settings_notes(store),
        batches=stored_batches(store),
        online=online,
        training=metrics,
        monitor=read_history(store.run_dir),
        diversity=diversity_status(store),
    )


def trainer_status(folder: Path, metrics: dict[str, Any]) -> StatusReport:
    """A reward model or DPO output folder: no run store; what its trainer wrote."""
    config = metrics.get("config") or {}
    model = config.get("model") if isinstance(config, dict) else None
    return StatusReport(
        kind=trainer_kind(metrics),
        headline=[],
        path=str(folder),
        run_id=None,
        created_at=None,
        constitution=None,
        models={"model": str(model)} if model else {},
        fingerprints=None,
        stages=[],
        counts={},
        filters=[],
        failures=FailureSummary(total=0, by_stage={}, by_kind={}, first=[], resolved=0, quarantined=0),
        usage=usage_data([]),
        dataset=None,
        notes=[],
        batches=[],
        online=None,
        training=metrics,
        monitor=None,
        diversity=None,
    )


def trainer_folder(folder: str | Path) -> bool:
    """Whether `folder` is the output folder of an offline trainer: a metrics.json and no run store."""
    folder = Path(folder)
    return (folder / METRICS_FILE).is_file() and not (folder / STORE_FILE).exists()


@public
def status(run: str | Path) -> StatusReport:
    """Where a run directory or a training output folder stands, as data (`charter status RUN --json`).

    Safe while a run writes, and after one was cut off: it reads the run store only (or, for a reward model or
    DPO output folder, which has none, the trainer's metrics.json).

    Args:
        run: A run directory, or the output folder of `charter train reward`, `dpo`, `grpo`, `rloo` or `online-dpo`.

    Returns:
        Its kind, identity, fingerprints, stage progress, counts, filters, failures, usage (the total `cost_usd`
        and every token count per role and model), the dataset's state and its diversity (`diversity`), notes,
        provider batches; for online training the rewards (`online`), for a training output folder its metrics
        (`training`).

    Raises:
        RunStoreError: The folder is neither a run directory nor a training output folder, or its store or
            metrics.json cannot be read.
    """
    folder = Path(run)
    metrics = read_metrics(folder) if folder.is_dir() else None
    if metrics is not None and not (folder / STORE_FILE).exists():
        return trainer_status(folder, metrics)
    with open_store(folder, read_only=True) as store:
        return store_status(store, metrics)
