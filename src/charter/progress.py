"""Rich progress bars and spinners for anything that takes more than a second."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True, soft_wrap=True)


def progress_bar() -> Progress:
    """A progress display for stages: description, bar, n/total, elapsed. Quiet when not a TTY."""
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not sys.stderr.isatty(), transient=False,
    )


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner while something opaque runs (loading a model, a single call)."""
    if not sys.stderr.isatty():
        yield
        return
    with console.status(message):
        yield
