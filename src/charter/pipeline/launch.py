"""Starting a run: the runner with the executor its config's `execution.engine` asks for, and the synchronous `run_sync`
that lets Ctrl-C and SIGTERM stop it cleanly (charter.interrupt)."""

from __future__ import annotations

import asyncio

from charter.interrupt import StopRequest
from charter.pipeline.config import RunConfig
from charter.pipeline.executors import Executor, LocalExecutor
from charter.pipeline.run import Runner, RunResult
from charter.pipeline.shards import RayExecutor


def executor_for(config: RunConfig) -> Executor:
    """Where the run's per-prompt work runs: this process, or Ray shards."""
    return RayExecutor() if config.execution.engine == "ray" else LocalExecutor()


def runner_for(config: RunConfig, config_source: str | None = None) -> Runner:
    """The runner of a run config, with its executor."""
    return Runner(config, config_source, executor_for(config))


def run_sync(config: RunConfig, config_source: str | None = None) -> RunResult:
    """Run (or resume) a whole run, synchronously. From the main thread, Ctrl-C and SIGTERM stop it cleanly while it
    runs (`Interrupted`, exit 130 or 143; see charter.interrupt); the handlers before are put back after."""
    runner = runner_for(config, config_source)
    stop = StopRequest(config.stop_grace_s)
    with stop.signals():
        return asyncio.run(runner.arun(stop))
