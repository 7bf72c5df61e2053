"""The one owner of a run directory's files: every read and write of data/*, report/*, config.yaml and
constitution.yaml goes through `RunFiles`, so every part of charter reads them by the same rules.

```
RUN_DIR/
  run.sqlite                        the run store (charter.runs.store)
  config.yaml, constitution.yaml    the run config and constitution in effect
  data/preferences.{parquet,jsonl}  PreferenceRow rows (TRL conversational format)
  data/sft.{parquet,jsonl}          SFTRow rows
  report/report.{md,html}, *.png    the run report (charter.pipeline.report.write)
  report/agreement.md, reliability.png   judge vs humans (charter agreement)
  report/audit.{md,json}            the judge audit (judge.audit, charter judge audit)
  report/winrate.{json,md}          the win-rate evaluation
  synth/prompts.jsonl (+ .synth.md) the synthesized prompt set (the synth stage)
  reward_model/, dpo/               trained models
```

One process per run directory: an advisory lock (filelock's `SoftFileLock`: RUN_DIR/run.lock, holding the
process id and host) held for a run's life. A second `charter run` on the directory is refused with one line naming
the holder; a lock left by a process that is gone from this host (kill -9, a crash), and a lock file that names no
process (empty or unreadable: a full disk, an edit), are taken over with one line saying so. Read-only
commands (`charter status`, the report) and a run's shard directories, each with its own lock, are not held up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from filelock import SoftFileLock, Timeout

from charter.errors import DatasetError, RunStoreError, file_error
from charter.records import PreferenceRow, SFTRow
from charter.records.base import parquet_row, uses_tools
from charter.runs.store import STORE_FILE
from charter.tables import (
    arrow_schema,
    atomic_write,
    keep_rows,
    parquet_rows,
    read_jsonl,
    read_parquet,
    rewrite_parquet,
    write_rows,
)

Dataset = Literal["preferences", "sft"]
ROW_TYPES: dict[str, type[PreferenceRow] | type[SFTRow]] = {"preferences": PreferenceRow, "sft": SFTRow}

REPORT_MD, REPORT_HTML = "report.md", "report.html"
AGREEMENT_MD, RELIABILITY_PNG = "agreement.md", "reliability.png"
WINRATE_JSON = "winrate.json"
AUDIT_MD, AUDIT_JSON = "audit.md", "audit.json"
#: The constitution test (`judge.constitution_test`) beside the report.
CONSTITUTION_TEST_MD, CONSTITUTION_TEST_JSON = "constitution-test.md", "constitution-test.json"


@contextlib.contextmanager
def run_dir_errors(run_dir: str | Path, action: str) -> Iterator[None]:
    """Turn a file-system error met while writing a run directory's files into one line: the directory removed
    under a running run, or the path and what was wanted (create, write, read) and why."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        if not (Path(run_dir) / STORE_FILE).exists():
            raise RunStoreError(
                f"{run_dir}: the run directory was removed (or moved) while the run was writing it; "
                "what it held is gone: start the run again"
            ) from None
        if isinstance(exc, sqlite3.OperationalError):
            raise RunStoreError(f"{Path(run_dir) / STORE_FILE}: cannot {action}: {exc}") from None
        raise file_error(exc, action, run_dir) from None


class RunFiles:
    """The files of one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.data_dir = self.run_dir / "data"
        self.report_dir = self.run_dir / "report"

    @staticmethod
    def is_run_dir(path: str | Path) -> bool:
        return (Path(path) / STORE_FILE).is_file()

    # -- datasets ---------------------------------------------------------------------------------------
    def dataset_path(self, name: Dataset, suffix: str = ".parquet") -> Path:
        return self.data_dir / f"{name}{suffix}"

    def has_dataset(self, name: Dataset) -> bool:
        return self.dataset_path(name).exists() or self.dataset_path(name, ".jsonl").exists()

    def write_dataset(
        self,
        name: Dataset,
        rows: Iterable[PreferenceRow | SFTRow],
        keep: Callable[[], Iterable[int] | None] | None = None,
    ) -> Path:
        """Write NAME.parquet and NAME.jsonl (atomically, typed columns even when all null); returns the parquet.

        With `keep`, the rows are written once to a scratch file, then `keep()` (called after the last row)
        names the positions to keep, ascending, or None for all, and only those are copied into place: rows
        are filtered without being built twice or held."""
        kind = ROW_TYPES[name]
        schema = arrow_schema(kind, kind.columns(), kind.JSON_COLUMNS)
        tools: list[bool] = []

        def plain(rows: Iterable[PreferenceRow | SFTRow]) -> Iterable[dict[str, Any]]:
            """The rows as written; a conversation with tool calls is noted, and left out of the first parquet."""
            for row in rows:
                out = row.to_row()
                if uses_tools(out):
                    tools.append(True)
                yield out

        def widened(stem: Path) -> None:
            """Conversations with tool calls: the parquet written again with the messages' tool fields."""
            if tools:
                rewrite_parquet(stem, arrow_schema(kind, kind.columns(), kind.JSON_COLUMNS, wide=True), parquet_row)

        if keep is None:
            parquet, _ = write_rows(self.data_dir / name, plain(rows), schema)
            widened(self.data_dir / name)
            return parquet
        scratch = self.data_dir / f".{name}.all"
        try:
            write_rows(scratch, plain(rows), schema)
            widened(scratch)
            positions = keep()
            if positions is None:
                for suffix in (".parquet", ".jsonl"):
                    os.replace(scratch.with_name(scratch.name + suffix), self.dataset_path(name, suffix))
                return self.dataset_path(name)
            parquet, _ = keep_rows(scratch, self.data_dir / name, positions)
            return parquet
        finally:
            for suffix in (".parquet", ".jsonl"):
                scratch.with_name(scratch.name + suffix).unlink(missing_ok=True)

    def dataset_file(self, name: Dataset) -> Path | None:
        """The file a dataset is read from: parquet where there is one, else JSONL, else None."""
        for path in (self.dataset_path(name), self.dataset_path(name, ".jsonl")):
            if path.exists():
                return path
        return None

    def dataset_rows(self, name: Dataset) -> list[dict[str, Any]]:
        """The rows of a dataset as they lie in the file (parquet preferred, JSONL otherwise); [] if none."""
        path = self.dataset_file(name)
        if path is None:
            return []
        return read_parquet(path) if path.suffix == ".parquet" else read_jsonl(path)

    def preferences(self) -> list[PreferenceRow]:
        """data/preferences.* as records; a row that is not one is a one-line error naming it."""
        return [
            _typed(PreferenceRow, row, self.dataset_file("preferences"), i)
            for i, row in enumerate(self.dataset_rows("preferences"))
        ]

    def preferences_at(self, indices: list[int]) -> list[PreferenceRow]:
        """Only the preference rows at these positions: only the row groups that hold them are read (a spread over
        a million rows decoded every batch of the file, and the reader kept ~150 MB)."""
        path = self.dataset_path("preferences")
        if not indices or not path.exists():
            return []
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        wanted, found, start = sorted(set(indices)), [], 0
        for group in range(source.num_row_groups):
            end = start + source.metadata.row_group(group).num_rows
            inside = [i for i in wanted if start <= i < end]
            if inside:
                rows = source.read_row_group(group).take([i - start for i in inside]).to_pylist()
                found += [_typed(PreferenceRow, row, path, i) for i, row in zip(inside, rows)]
            start = end
        return found

    def sft(self) -> list[SFTRow]:
        """data/sft.* as records."""
        return [_typed(SFTRow, row, self.dataset_file("sft"), i) for i, row in enumerate(self.dataset_rows("sft"))]

    def column_batches(self, name: Dataset, column: str) -> Iterator[Any]:
        """One column of a dataset's parquet file as Arrow arrays of up to 65,536 rows, in row order (nothing when
        there is no file or no such column): for passes over a column of any length in constant memory."""
        path = self.dataset_path(name)
        if not path.exists():
            return
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        if column not in source.schema_arrow.names:
            return
        for batch in source.iter_batches(batch_size=65536, columns=[column], use_threads=False):
            yield batch.column(0)

    def dataset_size(self, name: Dataset) -> int | None:
        return parquet_rows(self.dataset_path(name))

    # -- config and constitution ---------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        atomic_write(self.run_dir / "config.yaml", lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def config(self) -> dict[str, Any]:
        path = self.run_dir / "config.yaml"
        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}

    def write_constitution(self, constitution: Any) -> None:
        text = yaml.safe_dump(
            constitution.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True
        )
        atomic_write(self.constitution_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @property
    def constitution_path(self) -> Path:
        return self.run_dir / "constitution.yaml"

    def constitution_yaml(self) -> str | None:
        return self.constitution_path.read_text(encoding="utf-8") if self.constitution_path.exists() else None

    # -- report ---------------------------------------------------------------------------------------
    def report_path(self, name: str) -> Path:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        return self.report_dir / name

    def write_report_text(self, name: str, text: str) -> Path:
        path = self.report_path(name)
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return path

    def write_report_json(self, name: str, data: Any) -> Path:
        return self.write_report_text(name, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def report_text(self, name: str) -> str | None:
        path = self.report_dir / name
        return path.read_text(encoding="utf-8") if path.is_file() else None

    @property
    def synth_prompts_path(self) -> Path:
        """The prompt set the synth stage writes (and the run then reads)."""
        return self.run_dir / "synth" / "prompts.jsonl"

    # -- trained models ------------------------------------------------------------------------------------
    @property
    def reward_model_dir(self) -> Path:
        return self.run_dir / "reward_model"

    @property
    def dpo_dir(self) -> Path:
        return self.run_dir / "dpo"


def _typed(kind: type, row: dict[str, Any], path: Path | None, index: int) -> Any:
    from pydantic import ValidationError

    try:
        return kind.from_row(row)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise DatasetError(f"{path}: row {index}: {where}: {err['msg']}") from None


LOCK_FILE = "run.lock"
#: A lock file naming no process is taken over once it is this old (younger, it may be one being written).
UNREADABLE_AFTER_S = 2.0

log = logging.getLogger("charter.run")


class Holder(NamedTuple):
    """The process that holds a run's lock, as its lock file names it."""

    pid: int
    host: str

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def alive(self) -> bool | None:
        """Whether the process still runs (None: on another host, where it cannot be told)."""
        if not self.here:
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            return True
        return True


class RunLocked(RunStoreError):
    """Another process holds the run directory's lock."""


def holder(run_dir: str | Path) -> Holder | None:
    """Who holds the run's lock (None: nobody, or a lock file without a readable record)."""
    try:
        lines = (Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        return Holder(int(lines[0]), lines[1].split("?pidns-")[0])  # filelock marks a PID namespace after "?"
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """The lock of one run directory, held while a process runs it (`with RunLock(run_dir):`)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock = SoftFileLock(self.run_dir / LOCK_FILE, timeout=0, thread_local=False)

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_FILE

    def acquire(self) -> None:
        """Take the lock, or raise `RunLocked` (one line, exit 2) naming the process that holds it. A lock of a
        process gone from this host, or one naming no process, is taken over (a warning says so)."""
        before = holder(self.run_dir)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            if before is not None or not self._unreadable():
                raise RunLocked(self._refusal()) from None
            log.warning("%s names no process (empty or unreadable): taken over as stale", self.path)
            self.path.unlink(missing_ok=True)
            try:
                self._lock.acquire(timeout=0)
            except Timeout:  # another process took it over first
                raise RunLocked(self._refusal()) from None
            return
        if before is not None and before.pid != os.getpid() and before.alive is False:
            log.warning("%s: process %d, which held it, is gone: taken over", self.path, before.pid)

    def _unreadable(self) -> bool:
        """The lock file names no process and has been so long enough not to be one being written."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return False
        return holder(self.run_dir) is None and age >= UNREADABLE_AFTER_S

    def _refusal(self) -> str:
        found = holder(self.run_dir)
        who = f"process {found.pid} on {found.host}" if found else "another process"
        hint = "wait for it to end, or stop it (Ctrl-C or SIGTERM stop it cleanly)"
        if found is None:
            hint += f"; if no run is running on it, remove {self.path}"
        elif found.alive is None:
            hint += f"; if it is gone, remove {self.path}"
        return f"{self.run_dir}: this run is being run by {who}; {hint}"

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
