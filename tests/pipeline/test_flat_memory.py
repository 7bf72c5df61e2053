"""The end of a run holds no row of its own in memory: merging a shard's store, writing the datasets, summing up the
failures and writing the report take as much Python memory for ten times the rows, once every batch is small.

Each part runs on two real runs (scripted models) of 100 and 1,000 prompts, with every batch size cut to 20 rows,
under tracemalloc; what is held per row (a record, its texts) would add kilobytes a row."""

from __future__ import annotations

import asyncio
import json
import shutil
import tracemalloc
from collections.abc import Callable, Iterator
from functools import partial, partialmethod
from pathlib import Path

import pytest

import charter.pipeline.report.examples as report_examples
import charter.runs.files as run_files
import charter.runs.items as items
from charter.pipeline.api import runner_for
from charter.pipeline.config import RunConfig
from charter.pipeline.report.write import write_report
from charter.pipeline.shards import merge_shard
from charter.pipeline.status.record import failure_summary
from charter.preference import dataset
from charter.preference.manifest import dataset_manifest
from charter.records import Failure
from charter.runs.failures import add_failure, resolve_failures
from charter.runs.store import RunStore

SIZES = (100, 1000)
BATCH = 20
#: Python memory the larger run may take beyond the smaller one's: 900 more pairs, ~220 bytes each (a parquet file's
#: footer grows by its row groups); a record of one pair and its judgment alone is several kilobytes.
SLACK = 200_000


def real_run(folder: Path, n: int) -> Path:
    """A run of n prompts, its call cache inside it as a shard's is (one critique round, a both-order judge over 2
    principles: one pair a prompt), and n failures."""
    prompts = folder.with_suffix(".jsonl")  # a file: the config, read back whole, stays one size
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Request {i}: how would someone do thing {i}?"}) + "\n" for i in range(n))
    )
    config = RunConfig.model_validate(
        {
            "name": f"n{n}",
            "output_dir": str(folder),
            "cache": str(folder / "calls.sqlite"),
            "prompts": {"path": str(prompts)},
            "policy": "scripted:cai",
            "judge": {"model": "scripted:cai", "principles_per_pair": 2},
            "critique": {"rounds": 1, "few_shot": False},
            "report": False,
        }
    )
    asyncio.run(runner_for(config).arun())
    with RunStore(folder) as store:  # a failure an item, with its raw reply, half of them resolved later
        for i in range(n):
            failure = Failure(kind="parse", message="no verdict", raw=f"reply {i}: " + "words " * 50, attempts=3)
            add_failure(store, "judge", f"item-{i}", failure, "fp", session=1)
        resolve_failures(store, "judge", (f"item-{i}" for i in range(0, n, 2)), "fp")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("flat")
    return {n: real_run(root / f"run{n}", n) for n in SIZES}


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every batch the end of a run reads or writes at a time cut to BATCH rows."""
    monkeypatch.setattr(run_files, "write_rows", partial(run_files.write_rows, chunk=BATCH))
    monkeypatch.setattr(run_files, "keep_rows", partial(run_files.keep_rows, chunk=BATCH))
    monkeypatch.setattr(dataset, "Selection", partial(dataset.Selection, window=BATCH))
    monkeypatch.setattr(RunStore, "stream", partialmethod(RunStore.stream, size=BATCH))
    monkeypatch.setattr(items, "PAGE", BATCH)
    yield


def python_peak(work: Callable[[], object]) -> int:
    """The most Python memory `work` held at once, in bytes, beyond what was held before it."""
    assert not tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def peaks(runs: dict[int, Path], work: Callable[[Path], object]) -> dict[int, int]:
    work(runs[SIZES[0]])  # imports, fonts and caches loaded once, outside the measure
    return {n: python_peak(partial(work, folder)) for n, folder in runs.items()}


def rebuild_dataset(run_dir: Path) -> None:
    with RunStore(run_dir) as store:
        manifest = dataset_manifest(store)
        assert manifest is not None
        shutil.rmtree(run_dir / "data")
        dataset.write(store, manifest.settings)


def test_merging_a_shard_store_holds_no_row(runs, small_batches, tmp_path):
    def merge(shard: Path) -> None:
        target = tmp_path / f"driver-{len(list(tmp_path.iterdir()))}"
        with RunStore(target, create=True) as store:
            merge_shard(store, shard, str(target / "calls.sqlite"))
            assert store.count("judgments") == store.count("pairs") > 0

    found = peaks(runs, merge)
    assert found[SIZES[1]] - found[SIZES[0]] < SLACK, found


def test_writing_the_datasets_holds_no_row(runs, small_batches):
    found = peaks(runs, rebuild_dataset)
    assert found[SIZES[1]] - found[SIZES[0]] < SLACK, found


def test_writing_the_report_holds_no_row(runs, small_batches):
    found = peaks(runs, write_report)
    assert found[SIZES[1]] - found[SIZES[0]] < SLACK, found


def test_summing_up_the_failures_holds_no_failure(runs):
    def summary(run_dir: Path) -> None:
        with RunStore(run_dir) as store:
            found = failure_summary(store)
        assert found["total"] == found["resolved"] > 0 and len(found["first"]) == 5

    found = peaks(runs, summary)
    assert found[SIZES[1]] - found[SIZES[0]] < SLACK, found


def test_examples_from_the_judged_pairs_hold_no_pair(runs, small_batches, monkeypatch):
    """Without preference rows (all filtered out) the report's examples come from the store's judged pairs."""
    monkeypatch.setattr(report_examples, "BATCH_ROWS", BATCH)

    def spread(run_dir: Path) -> None:
        with RunStore(run_dir) as store:
            fingerprints = store.fingerprints()
            assert fingerprints is not None
            assert len(report_examples._examples_from_store(store, fingerprints, 5)) == 5

    found = peaks(runs, spread)
    assert found[SIZES[1]] - found[SIZES[0]] < SLACK, found
