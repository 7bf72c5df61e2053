"""Progress and log output. In a terminal: rich progress bars and spinners, and log records through rich. Outside
one (nohup, Slurm and Kubernetes logs, CI): a timestamped progress line every `interval_s` seconds, and plain
timestamped log lines.

Library code only creates loggers (`logging.getLogger("charter.…")`); the CLI installs the one handler
(`configure_logging`), so a program using charter as a library keeps its own logging setup.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

console = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("charter.progress")

#: Seconds between progress lines outside a terminal (`charter --progress-interval`).
interval_s = 30.0
#: No progress display at all (`charter -q`).
quiet = False

Stats = Callable[[], str]


def configure_logging(
    level: int | str = logging.INFO, progress_interval_s: float | None = None, quiet_progress: bool = False
) -> None:
    """Install the one log handler (the CLI calls this): rich's in a terminal, plain timestamped lines otherwise.
    `level` applies to charter's loggers; other libraries' log at WARNING and above."""
    global interval_s, quiet
    if progress_interval_s is not None:
        interval_s = progress_interval_s
    quiet = quiet_progress
    handler: logging.Handler
    if console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    else:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_charter", False)]:
        root.removeHandler(old)
    handler._charter = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("charter").setLevel(level)


class _Stderr(logging.StreamHandler):
    """A stream handler that writes to whatever `sys.stderr` is when a record comes (a test's capture, a redirect)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class StatsColumn(ProgressColumn):
    """A column that shows the run's calls, failures, retries and cost as the bar redraws."""

    def __init__(self, stats: Stats) -> None:
        super().__init__()
        self.stats = stats

    def render(self, task: Task) -> Text:
        return Text(self.stats(), style="dim")


class LineProgress:
    """Progress for logs: the subset of rich's `Progress` the stages use, printing a timestamped line (through the
    `charter.progress` logger) every `interval_s` seconds while it runs, and one at the end."""

    def __init__(self, stats: Stats | None = None, every_s: float | None = None) -> None:
        self.stats, self.every_s = stats, interval_s if every_s is None else every_s
        self.tasks: dict[TaskID, dict[str, Any]] = {}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_task(self, description: str, total: float | None = None, **_: Any) -> TaskID:
        task_id = TaskID(len(self.tasks))
        self.tasks[task_id] = {"description": description, "total": total, "completed": 0.0}
        return task_id

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.tasks[task_id]["completed"] += advance

    def update(
        self,
        task_id: TaskID,
        *,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
        advance: float | None = None,
        **_: Any,
    ) -> None:
        task = self.tasks[task_id]
        for key, value in (("completed", completed), ("total", total), ("description", description)):
            if value is not None:
                task[key] = value
        if advance is not None:
            task["completed"] += advance

    def line(self) -> str:
        """Each task's done/total, the stats, the time so far."""
        parts = []
        for task in self.tasks.values():
            done, total = int(task["completed"]), task["total"]
            share = f" ({100 * done / total:.0f}%)" if total else ""
            parts.append(f"{task['description']}: {done}/{int(total) if total is not None else '?'}{share}")
        stats = self.stats() if self.stats is not None else ""
        elapsed = int(time.monotonic() - self._started)
        return "; ".join(parts + ([stats] if stats else []) + [f"{elapsed // 60}m{elapsed % 60:02d}s"])

    def _emit(self) -> None:
        if self.tasks:
            log.info("%s", self.line())

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            self._emit()

    def __enter__(self) -> LineProgress:
        self._started = time.monotonic()
        if self.every_s > 0:
            self._thread = threading.Thread(target=self._tick, name="charter-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        self._emit()


def progress_bar(stats: Stats | None = None) -> Progress | LineProgress:
    """A progress display for stages: description, bar, n/total, the run's stats, elapsed, in a terminal; timestamped
    lines every `interval_s` seconds otherwise; nothing with `quiet`."""
    if quiet:
        return Progress(console=console, disable=True)
    if not sys.stderr.isatty():
        return LineProgress(stats)
    columns: list[ProgressColumn | str] = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if stats is not None:
        columns.append(StatsColumn(stats))
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=False)


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner while something opaque runs (loading a model, a single call)."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with console.status(message):
        yield
