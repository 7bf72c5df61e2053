"""Stores and call caches written by an older release (`tests/fixtures/schema_*`), as the resume tests use them: a
copy whose run configs point at the copy, and the calls a run's model and cache answered."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import yaml

from charter.runs.store import RunStore
from charter.runs.usage import stored_usage


def copy_fixture(source: Path, tmp_path: Path, runs: tuple[str, ...]) -> Path:
    """A copy of the fixture folder `source` under `tmp_path`, each run's config (`NAME.yaml`) pointed at the copy's
    run folder and call cache."""
    folder = tmp_path / source.name
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("make_fixture.py"))
    for name in runs:
        path = folder / f"{name}.yaml"
        config = yaml.safe_load(path.read_text())
        config.update(output_dir=str(folder / name), cache=str(folder / "calls.sqlite"))
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def calls(run_dir: Path) -> tuple[int, int]:
    """The calls a model answered and those the call cache answered, over every start of the run."""
    with RunStore(run_dir) as store:
        usage = stored_usage(store)
    return sum(u.calls for u in usage), sum(u.cached for u in usage)


def lose_items(run_dir: Path, tables: tuple[str, ...]) -> int:
    """Delete every row of `tables` from the run's store, as a kill can lose the last items; the rows deleted."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        lost = sum(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables)
        for table in tables:
            db.execute(f"DELETE FROM {table}")
    return lost
