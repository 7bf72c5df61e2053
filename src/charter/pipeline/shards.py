"""Runs sharded over a Ray cluster (`execution: {engine: ray, shards: N}` or `charter run --ray ADDRESS`).

The run's prompts split into N shards by a stable hash of their ids. Each shard is a plain run directory under
RUN_DIR/shards/ with its own run store and call cache file, run by the same stage code as a Ray task on any
node; its models' rate limits, concurrency and budget are the run's divided by N. As each shard finishes, its
items (chains, samples, pairs, judgments, failures, usage, batches) and its cache rows are merged into the
run's own store and cache, and the dataset, report and card are built from there as for any run. Items are keyed
by content and settings, and every random choice is seeded per item, so the result is the unsharded run's: the
same pair ids, labels and provenance. A resumed run starts only the shards that are not done (and a shard, being
a run directory, redoes only its unfinished items).

The shard directories must be on storage every node can reach (a local cluster always can).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

from charter.errors import (
    BudgetExceeded,
    CharterError,
    ConfigError,
    MissingExtra,
    RunFailure,
    TooManyFailures,
)
from charter.pipeline.config import RunConfig
from charter.pipeline.executors import RunContext, stop_status
from charter.pipeline.run import Runner
from charter.pipeline.settings import check_credentials
from charter.pipeline.work import Work, too_many_failures
from charter.providers import CallCache
from charter.records import Prompt
from charter.runs.counts import set_stage, stage_states
from charter.runs.items import count_prompts, merge_items, prompt_records, put_prompts
from charter.runs.store import STORE_FILE, RunStore

log = logging.getLogger("charter.run")

#: The stages a shard runs (a run that synthesizes is refused with the Ray engine; the audit runs after merging,
#: in the driver).
SHARD_STAGES = ("critique", "judge")
#: Counts summed over shards for the run's stage record.
SUMMED = ("chains", "samples", "pairs", "judged", "judge_failures", "items", "attempted", "failed", "quarantined")


def shard_of(prompt_id: str, shards: int) -> int:
    """The shard a prompt belongs to: stable across runs, machines and Python versions."""
    return int(hashlib.sha256(prompt_id.encode()).hexdigest()[:12], 16) % shards


def shard_dir(run_dir: Path, index: int, shards: int) -> Path:
    return run_dir / "shards" / f"{index}-of-{shards}"


def shard_config(config: RunConfig, index: int) -> RunConfig:
    """The config a shard runs: the item stages only, its own directory and cache, 1/N of every limit."""
    n = config.execution.shards
    folder = shard_dir(config.run_dir(), index, n)
    data = config.model_dump(mode="json")
    data.update(
        output_dir=str(folder.resolve()),
        report=False,
        synth=None,
        reward_model=None,
        dpo=None,
        eval=None,
        stages=[s for s in config.stages if s in SHARD_STAGES],
        concurrency=math.ceil(config.concurrency / n),
        cache=str((folder / "calls.sqlite").resolve()) if config.cache else None,
        execution={"engine": "local"},
    )
    data["judge"]["audit"] = None
    for role in (data.get("policy"), data.get("critic"), *(data["judge"].get("models") or [data["judge"]])):
        if role:
            role["limits"] = _divided(role["limits"], n)
    budget = data["budget"]
    if budget.get("max_cost_usd") is not None:
        budget["max_cost_usd"] = budget["max_cost_usd"] / n
    if budget.get("max_tokens") is not None:
        budget["max_tokens"] = budget["max_tokens"] // n
    return RunConfig.model_validate(data)


def _divided(limits: dict[str, Any], n: int) -> dict[str, Any]:
    out = dict(limits, concurrency=max(1, math.ceil(limits["concurrency"] / n)))
    for key in ("requests_per_minute", "tokens_per_minute"):
        if out.get(key) is not None:
            out[key] = out[key] / n
    return out


#: In a shard's directory: its prompts, written by the driver from the run's store (JSON Lines of `Prompt`).
SHARD_PROMPTS = "shard-prompts.jsonl"


class ShardRunner(Runner):
    """A run directory holding one shard of a run: its prompts come from the driver's file, not the source."""

    forecasts = False  # the driver forecasts the whole run

    def prepare(self) -> None:  # the driver checked the prompts; a shard checks its credentials on its node
        check_credentials(self.config)

    def sync_prompts(self, store: RunStore, loaded: Any) -> list[str]:
        with (self.run_dir / SHARD_PROMPTS).open(encoding="utf-8") as handle:  # new ones added, streamed
            put_prompts(store, (Prompt.model_validate_json(line) for line in handle))
        return []

    def _build(self, store: RunStore, settings: Any) -> Any:  # the driver builds the dataset from the merge
        return None

    def _prefetch_texts(self, texts: list[str]) -> None:  # nor does a shard measure it: no model loaded here
        return None


def run_shard(config_data: dict[str, Any]) -> dict[str, Any]:
    """Run one shard to its end (a Ray task); returns its status, reason, exit code and peak memory."""
    runner = ShardRunner(RunConfig.model_validate(config_data))
    try:
        asyncio.run(runner.arun())
    except CharterError as exc:
        return {"status": "stopped", "reason": str(exc), "exit_code": exc.exit_code, "peak_rss_mb": _peak_mb()}
    return {"status": "done", "reason": None, "exit_code": 0, "peak_rss_mb": _peak_mb()}


def _peak_mb() -> float | None:
    """This process's peak resident memory in MB (None where the platform has no `resource`)."""
    try:
        import resource
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_shard_prompts(store: RunStore, run_dir: Path, shards: int) -> list[int]:
    """Write each shard's prompts (streamed from the run's store) into its directory; returns their counts."""
    handles, sizes = [], [0] * shards
    try:
        for i in range(shards):
            folder = shard_dir(run_dir, i, shards)
            folder.mkdir(parents=True, exist_ok=True)
            handles.append((folder / SHARD_PROMPTS).open("w", encoding="utf-8"))
        for prompt_id, record in prompt_records(store):  # the stored JSON of a `Prompt`, not decoded again
            index = shard_of(prompt_id, shards)
            handles[index].write(record + "\n")
            sizes[index] += 1
    finally:
        for handle in handles:
            handle.close()
    return sizes


def shard_done(folder: Path, config: RunConfig, prompts: int) -> bool:
    """Whether a shard finished its stages for all its prompts under the settings in effect (then it is not started
    again)."""
    if not (folder / STORE_FILE).exists():
        return False
    with RunStore(folder) as store:
        stages = stage_states(store)
        same = store.meta("config") == config.model_dump(mode="json") and count_prompts(store) == prompts
    return same and all(stages.get(s, {}).get("status") == "done" for s in config.stages)


class RayExecutor:
    """The per-prompt work sharded over a Ray cluster (`execution: {engine: ray}`)."""

    engine = "ray"

    def check(self, config: RunConfig) -> None:
        check_sharding(config)

    async def process(self, run: RunContext, store: RunStore, work: Work) -> CharterError | None:
        return await process_sharded(run, store, work)


async def process_sharded(runner: RunContext, store: RunStore, work: Work) -> CharterError | None:
    """The per-prompt work of a run, over Ray shards; merges each shard into `store` as it finishes.

    Returns the error that stopped a shard (budget, too many failures, a fatal provider error), if any."""
    config = runner.config
    n = config.execution.shards
    ray = _ray(config.execution.address, config.execution.num_cpus)
    sizes = write_shard_prompts(store, runner.run_dir, n)
    stages = [s for s in SHARD_STAGES if s in config.stages]
    for stage in stages:
        set_stage(store, stage, "running")
    configs = [shard_config(config, i) for i in range(n)]
    remote = ray.remote(num_cpus=1, max_retries=0)(run_shard)
    pending, results = {}, {}
    for i, size in enumerate(sizes):
        folder = shard_dir(runner.run_dir, i, n)
        if size and not shard_done(folder, configs[i], size):
            pending[remote.remote(configs[i].model_dump(mode="json"))] = i
        else:
            results[i] = {"status": "done", "reason": None, "exit_code": 0, "skipped": True}
    started = len(pending)
    log.info(f"{n} shards over Ray: {started} started, {n - started} already done")
    asked_to_stop = False
    try:
        while pending:
            ready, _ = await asyncio.to_thread(ray.wait, list(pending), num_returns=1, timeout=0.5)
            if runner.stop.requested and not asked_to_stop:  # each shard stops as a run does on Ctrl-C
                for ref in pending:
                    ray.cancel(ref, force=False)
                asked_to_stop = True
            if not ready:
                continue
            index = pending.pop(ready[0])
            try:
                results[index] = ray.get(ready[0])
            except Exception as exc:  # a shard cancelled by a stop: what it finished is in its store
                if not asked_to_stop:
                    raise
                results[index] = {"status": "interrupted", "reason": type(exc).__name__, "exit_code": 130}
            merge_shard(store, shard_dir(runner.run_dir, index, n), config.cache)
            peak = results[index].get("peak_rss_mb")
            log.info(
                f"shard {index + 1}/{n}: {results[index]['status']}" + (f" (peak RSS {peak:.0f} MB)" if peak else "")
            )
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)  # a shard is a run directory: the next run resumes it
        for stage in stages:
            set_stage(store, stage, "interrupted")
        raise
    for i in range(n):  # merged again: a skipped shard may hold items the driver's store lacks
        if results[i].get("skipped") and (shard_dir(runner.run_dir, i, n) / STORE_FILE).exists():
            merge_shard(store, shard_dir(runner.run_dir, i, n), config.cache)
    counts = {key: 0 for key in SUMMED}
    for i in range(n):
        folder = shard_dir(runner.run_dir, i, n)
        if (folder / STORE_FILE).exists():
            with RunStore(folder) as shard:
                shard_counts = (stage_states(shard).get(stages[0], {}).get("counts") or {}) if stages else {}
                for key, value in shard_counts.items():
                    if key in counts and isinstance(value, int):
                        counts[key] += value
    work.counts.update(counts)
    stop = runner.stop.error() if runner.stop.requested else _first_stop([results[i] for i in range(n)])
    status = "done" if stop is None else stop_status(stop)
    if stop is None and work.past_threshold(final=True):
        stop, status = too_many_failures(work, runner.run_dir), "stopped: too many failures"
    for stage in stages:
        peaks = [r.get("peak_rss_mb") for r in results.values() if r.get("peak_rss_mb")]
        set_stage(
            store,
            stage,
            status,
            {
                **counts,
                "reason": str(stop) if stop else None,
                "shards": n,
                "shard_peak_rss_mb": max(peaks) if peaks else None,
            },
        )
    return stop


def _first_stop(results: list[dict[str, Any]]) -> RunFailure | None:
    for result in results:
        if result["status"] != "done":
            code, reason = result["exit_code"], result["reason"]
            kind = {3: TooManyFailures, 4: BudgetExceeded}.get(code, RunFailure)
            return kind(f"a shard stopped: {reason}")
    return None


def merge_shard(store: RunStore, folder: Path, cache: str | None) -> None:
    """Copy a shard's items, failures and new usage into the run's store, and its cache rows into the cache: the
    two at once, in two threads (SQLite works without the GIL; at a million prompts each took ~20-35 s a shard)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        cache_merge = pool.submit(_merge_cache, folder, cache)
        _merge_items(store, folder)
        cache_merge.result()


def _merge_items(store: RunStore, folder: Path) -> None:
    merged = store.meta("merged_usage") or {}
    last = int(merged.get(folder.name, 0))
    newest = merge_items(store, folder / STORE_FILE, last)
    store.set_meta(merged_usage={**merged, folder.name: max(last, newest)})


def _merge_cache(folder: Path, cache: str | None) -> None:
    if cache and (folder / "calls.sqlite").exists():
        target = CallCache(Path(cache).expanduser())
        try:
            target.merge_from(folder / "calls.sqlite")
        finally:
            target.close()


def _ray(address: str | None, num_cpus: int | None) -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray", "ray") from None
    if not ray.is_initialized():
        if address in (None, "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
    return ray


def check_sharding(config: RunConfig) -> None:
    """What sharding cannot do, before anything is written."""
    if config.execution.engine != "ray":
        return
    if "synth" in config.stages:
        raise ConfigError("execution.engine: ray: run the synth stage without ray first (its prompts then shard)")
    if importlib.util.find_spec("ray") is None:  # before the run directory is written, not after
        raise MissingExtra("ray", "ray")
