"""Torch's CPU thread count: the cores this process may use, less what other processes keep busy.

Torch sizes its OpenMP pool to the machine's physical cores. When another CPU-heavy process shares them
(a second charter run, a test suite), every parallel region ends at a barrier that waits for a thread
the scheduler has put aside, and both processes slow down far more than their share of the cores
(the quickstart took 608 s beside another embedded-model process against 209 s alone).

`ThreadGovernor("auto")` starts from the cores available to the process (CPU affinity, capped by a
cgroup CPU quota) and, before each batch (and, in charter's decoder, each decode step and prefill group), at most
every half second, subtracts the cores other processes kept busy since it last looked (from `/proc/stat`, for the
CPUs this process may run on, less this process's own CPU time). Outputs do not depend on the count (measured: the
embedded model's texts and judge log-probabilities are the same bits on one thread and on two).
A whole number fixes the count; `OMP_NUM_THREADS` in the environment also fixes it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: Re-measure the other processes' load at most this often (seconds)...
MIN_WINDOW_S = 0.5
#: ...but decide the first time from a shorter window: the model's load, which precedes the first batch (a first
#: batch run on every core beside a busy neighbour took minutes).
FIRST_WINDOW_S = 0.1


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 `cpu.max` or v1 `cfs_quota_us`), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def allowed_cpus() -> list[int]:
    """The CPU ids this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup quota (at least 1)."""
    cores = len(allowed_cpus())
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _busy_seconds(cpus: list[int]) -> float | None:
    """CPU-seconds the given CPUs spent busy since boot (`/proc/stat`), or None where that is unreadable."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    found = False
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
            busy += user + nice + system + irq + softirq  # not idle, iowait, or steal (another VM's time)
            found = True
    return busy / ticks if found else None


class ThreadGovernor:
    """Sets torch's intra-op thread count from `setting` ('auto' or a whole number), now and before each batch."""

    def __init__(self, setting: int | str | None = "auto") -> None:
        self.setting = setting
        self.cores = available_cpus()
        self.cpus = allowed_cpus()
        self.fixed: int | None = None
        if isinstance(setting, int):
            self.fixed = setting
        elif os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            self.fixed = max(1, int(os.environ["OMP_NUM_THREADS"]))
        self.threads = self.fixed or self.cores
        self._decided = False
        self._mark = self._sample()
        self._apply(self.threads)

    def _sample(self) -> tuple[float, float, float | None]:
        return time.monotonic(), time.process_time(), _busy_seconds(self.cpus)

    def adjust(self) -> int:
        """Re-measure other processes' load (when enough time has passed) and set the thread count, for the calling
        thread too: torch's count is kept per thread once a thread has run a parallel operation, and batches run on
        whichever worker thread the event loop hands them to."""
        if self.fixed is None:
            self._measure()
        self._apply(self.threads)
        return self.threads

    def _measure(self) -> None:
        if time.monotonic() - self._mark[0] < (MIN_WINDOW_S if self._decided else FIRST_WINDOW_S):
            return  # (before reading /proc/stat: this runs before every decode step)
        now = self._sample()
        wall, own, busy = (b - a if a is not None and b is not None else None for a, b in zip(self._mark, now))
        if busy is None or wall is None:
            return
        self._mark, self._decided = now, True
        others = max(0.0, (busy - (own or 0.0)) / wall)  # cores other processes kept busy
        threads = min(self.cores, max(1, round(self.cores - others)))
        if threads != self.threads:
            log.info(
                "torch threads %d -> %d (other processes kept %.1f of %d cores busy)",
                self.threads,
                threads,
                others,
                self.cores,
            )
            self.threads = threads

    def _apply(self, threads: int) -> None:
        import torch

        self.threads = threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def set_cpu_threads(setting: int | str | None = "auto") -> ThreadGovernor:
    """A governor for `setting`, applied now (see `ThreadGovernor`)."""
    return ThreadGovernor("auto" if setting is None else setting)
