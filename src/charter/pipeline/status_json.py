"""`charter status RUN --json` and `charter.status(RUN)`: where a run directory or a training output folder stands,
as plain data (the rich view of `charter status`, with nothing left out, for scripts and CI).

A run directory and an online output folder (GRPO, RLOO: its reward store is a run store) are read from their run
store; a reward model or DPO output folder, which has none, from the `metrics.json` its trainer wrote."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from charter.api_args import public
from charter.errors import RunStoreError
from charter.pipeline.status import FailureSummary, StageProgress, dataset_notes
from charter.pipeline.status import status as run_status
from charter.preference.diversity import diversity_status
from charter.preference.manifest import dataset_manifest
from charter.records import UsageRow
from charter.runs.counts import FilterStep
from charter.runs.files import RunFiles
from charter.runs.rewards import StepPairs, StepRewards
from charter.runs.store import STORE_FILE, BatchState, open_store

__all__ = ["DatasetState", "OnlineStatus", "StatusReport", "UsageData", "status"]

#: What a status describes: a pipeline run, an online training output (GRPO/RLOO, or any trainer writing a reward
#: store), or the output folder of an offline trainer.
Kind = Literal["run", "online", "reward_model", "dpo"]

METRICS_FILE = "metrics.json"


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
    diversity: dict[str, Any] | None
    """The diversity of a run's dataset, measured when the run wrote it (`charter.preference.diversity`: per field,
    distinct-n, self-BLEU, Vendi score, mean cosine, compression ratio, lengths, each with its sample size), and
    `current`: whether it describes the dataset files as they are now; None where it was not measured."""


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


def dataset_state(folder: Path, stages: list[StageProgress]) -> DatasetState:
    """Whether a run's dataset files are written, which are missing, and whether the run ended before writing."""
    files = RunFiles(folder)
    missing = [name for name in ("preferences", "sft") if not files.has_dataset(name)]  # type: ignore[arg-type]
    with open_store(folder, read_only=True) as store:
        manifest = dataset_manifest(store) is not None
        ended = bool(dataset_notes(store, stages))
    return DatasetState(written=manifest and not missing, missing=missing, ended_before_writing=ended)


def _store_status(folder: Path, metrics: dict[str, Any] | None) -> StatusReport:
    data = run_status(folder)
    with open_store(folder, read_only=True) as store:
        fp = store.fingerprints()
        diversity = diversity_status(store)
    online = online_status(data["rewards"], data.get("pairs"))
    is_run = online is None and (metrics is None or trainer_kind(metrics) != "online")
    return StatusReport(
        kind="run" if is_run else "online",
        path=str(folder),
        run_id=data["run_id"],
        created_at=data["created_at"],
        constitution=data["constitution"],
        models=data["models"],
        fingerprints=fp.model_dump(mode="json") if fp is not None else None,
        stages=data["stages"],
        counts=data["counts"],
        filters=data["filters"],
        failures=data["failures"],
        usage=usage_data(data["usage"]["rows"], data["usage"]["price_sources"]),
        dataset=dataset_state(folder, data["stages"]) if is_run else None,
        notes=data["notes"],
        batches=data["batches"],
        online=online,
        training=metrics,
        diversity=diversity,
    )


def _trainer_status(folder: Path, metrics: dict[str, Any]) -> StatusReport:
    """A reward model or DPO output folder: no run store; what its trainer wrote."""
    config = metrics.get("config") or {}
    model = config.get("model") if isinstance(config, dict) else None
    return StatusReport(
        kind=trainer_kind(metrics),
        path=str(folder),
        run_id=None,
        created_at=None,
        constitution=None,
        models={"model": str(model)} if model else {},
        fingerprints=None,
        stages=[],
        counts={},
        filters=[],
        failures=FailureSummary(total=0, by_stage={}, first=[], resolved=0, quarantined=0),
        usage=usage_data([]),
        dataset=None,
        notes=[],
        batches=[],
        online=None,
        training=metrics,
        diversity=None,
    )


@public()
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
        return _trainer_status(folder, metrics)
    return _store_status(folder, metrics)


def trainer_folder(folder: str | Path) -> bool:
    """Whether `folder` is the output folder of an offline trainer: a metrics.json and no run store."""
    folder = Path(folder)
    return (folder / METRICS_FILE).is_file() and not (folder / STORE_FILE).exists()


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
