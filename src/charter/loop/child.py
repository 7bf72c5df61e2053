"""A loop step in a fresh process: what it loads (models, trainers, optimizer state) leaves with the process.

torch and glibc keep freed memory in the process after a model, a trainer or a generation is gone, so one process
that runs round after round grows; a step run here hands every byte back when it ends. The step's result or its
charter error comes back to the loop; a signal to the loop (Ctrl-C, SIGTERM) is passed on to the step, which stops
as it would in the loop's own process, and a step stops when the loop's process dies, however it dies.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from charter.errors import CharterError, Interrupted, RunFailure
from charter.interrupt import SIGNALS, Terminated

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


class StepDied(RunFailure):
    """A step's process ended without a result (killed, e.g. by the kernel when out of memory); the loop resumes
    at that step."""


def run_in_child(work: Callable[[], T], what: str) -> T:
    """Run `work` (picklable) in a spawned process and return its result; its `CharterError` is raised here."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(work, send, _logging_settings()), name=f"charter {what}")
    process.start()
    send.close()
    forwarded: list[int] = []
    kind: str
    payload: Any
    with _forward_signals(process, forwarded):
        try:
            kind, payload = receive.recv()
        except EOFError:
            kind, payload = "died", None
        finally:
            receive.close()
            process.join()
    if kind == "ok":
        return payload
    if kind == "error":
        raise _rebuild(payload)
    if kind == "crash":
        raise RuntimeError(f"{what} failed in its process:\n{payload}")
    code = process.exitcode
    if forwarded:  # stopped by the signal it was sent (a step that does not handle it): what is done is kept
        raise Interrupted(*SIGNALS[signal.Signals(forwarded[0])])
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    raise StepDied(f"{what}: its process ended without a result ({how}); run the same command to resume")


@contextmanager
def _forward_signals(process: Any, forwarded: list[int]) -> Iterator[None]:
    """While the step runs, SIGINT and SIGTERM to the loop go to the step (in its own process group, a terminal's
    Ctrl-C reaches it only this way, once), which stops cleanly and reports `Interrupted`."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)
        if process.pid is not None and process.exitcode is None:
            os.kill(process.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _logging_settings() -> dict[str, Any] | None:
    """The CLI's log handler, to install again in the step's process (None: a library caller's own setup)."""
    from charter import progress

    if not any(getattr(h, "_charter", False) for h in logging.getLogger().handlers):
        return None
    level = logging.getLogger("charter").level or logging.INFO
    return {"level": level, "progress_interval_s": progress.interval_s, "quiet_progress": progress.quiet}


def _child(work: Callable[[], Any], send: Connection, settings: dict[str, Any] | None) -> None:
    os.setpgrp()  # signals come through the loop's process, once
    _die_with_parent()
    signal.signal(signal.SIGTERM, _terminated)  # a step that installs no handler of its own stops as Interrupted
    if settings is not None:
        from charter.progress import configure_logging

        configure_logging(**settings)
    try:
        message: tuple[str, Any] = ("ok", work())
    except CharterError as exc:
        message = ("error", _flatten(exc))
    except KeyboardInterrupt as exc:  # a second signal: stopped at once
        message = ("error", _flatten(Interrupted(getattr(exc, "how", "interrupted"), getattr(exc, "exit_code", 130))))
    except Exception:
        message = ("crash", traceback.format_exc())
    try:
        send.send(message)
    except Exception:  # a result that does not pickle: a bug, shown as one
        send.send(("crash", traceback.format_exc()))
    send.close()


def _terminated(_signum: int, _frame: Any) -> None:
    raise Terminated


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the loop's process dies (kill -9 included), so no step runs on orphaned."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the step ends when it ends
        pass
    if os.getppid() == 1:  # the parent died before prctl
        os._exit(143)


def _flatten(exc: CharterError) -> tuple[type[CharterError], tuple, dict[str, Any]]:
    """An error as class, args and attributes: rebuilt without calling its __init__ (whose signature varies)."""
    state = dict(exc.__dict__)
    try:
        pickle.dumps(state)
    except Exception:
        state = {}
    return type(exc), exc.args, state


def _rebuild(flat: tuple[type[CharterError], tuple, dict[str, Any]]) -> CharterError:
    cls, args, state = flat
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc
