"""Where a run's per-prompt work runs: an `Executor` the run is given. `LocalExecutor` runs it in this process,
`charter.pipeline.shards.RayExecutor` over Ray shards; `charter.pipeline.api` picks one from the run config's
`execution.engine`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from charter.concurrency import bounded_map, drain
from charter.errors import BudgetExceeded, CharterError, Interrupted, TooManyFailures
from charter.interrupt import StopRequest
from charter.pipeline.config import RunConfig
from charter.pipeline.work import Work, too_many_failures
from charter.progress import Stats, progress_bar
from charter.providers.limits import CallOrder, CallTurn
from charter.records import Prompt
from charter.runs.counts import set_stage
from charter.runs.items import count_prompts, iter_prompts
from charter.runs.store import RunStore

#: The per-prompt stages, in the order an item goes through them.
ITEM_STAGES = ("critique", "judge")


class RunContext(Protocol):
    """What an executor reads of the run it serves."""

    config: RunConfig
    run_dir: Path
    stop: StopRequest
    stats: Stats

    @property
    def in_flight(self) -> int: ...


class Executor(Protocol):
    """Runs the critique and judge stages over a run's prompts."""

    engine: str
    """The `execution.engine` it serves."""

    def check(self, config: RunConfig) -> None:
        """What this executor cannot do with `config`, raised before anything is written."""
        ...

    async def process(self, run: RunContext, store: RunStore, work: Work) -> CharterError | None:
        """Critique and judge every prompt in use; returns the error that stopped them early, if one did."""
        ...


def stop_status(exc: CharterError) -> str:
    """A stage's status after a stop."""
    if isinstance(exc, Interrupted):
        return "interrupted"
    if isinstance(exc, BudgetExceeded):
        return "stopped: budget"
    if isinstance(exc, TooManyFailures):
        return "stopped: too many failures"
    return "failed"


async def guarded_stage(
    stop: StopRequest,
    stats: Stats,
    body: Callable[[Any], Awaitable[str]],
    record: Callable[[str, CharterError | None], CharterError | None],
) -> CharterError | None:
    """Run a stage's `body(progress)` under a progress bar, which returns the stage's status, and hand how it ended
    to `record(status, error)` whatever happens (`record` may put another error in its place, which is returned).
    A stop request, the budget or a provider error every later call would share ends the stage and is returned, not
    raised; anything else is recorded as `interrupted` and raised."""
    status, error = "done", None
    progress = progress_bar(stats)
    try:
        with progress:
            status = await body(progress)
        if stop.requested:  # it ended within the grace period; the run stops here all the same
            status, error = "interrupted", stop.error()
    except CharterError as exc:  # the budget, a stop signal, a provider error every later call would share
        status, error = stop_status(exc), exc
    except BaseException:
        status = "interrupted"
        raise
    finally:
        error = record(status, error)
    return error


class LocalExecutor:
    """The per-prompt work in this process: `concurrency` prompts in flight at once, one progress display."""

    engine = "local"

    def check(self, config: RunConfig) -> None:
        return None

    async def process(self, run: RunContext, store: RunStore, work: Work) -> CharterError | None:
        prompts = CallOrder().turns(iter_prompts(store))  # the last items' calls first once all have started
        stages = [s for s in ITEM_STAGES if s in run.config.stages]
        for stage in stages:
            set_stage(store, stage, "running")

        async def in_turn(turned: tuple[CallTurn, Prompt]) -> None:
            turn, prompt = turned
            await turn.run(work.prompt(prompt))

        async def body(progress: Any) -> str:
            work.task = progress.add_task(" + ".join(stages) or "pairs", total=count_prompts(store))
            work.progress = progress
            more = lambda: work.past_threshold() or run.stop.requested  # noqa: E731
            await drain(bounded_map(in_turn, prompts, run.in_flight, stop=more))
            return "done"

        def record(status: str, stop: CharterError | None) -> CharterError | None:
            work.writer.flush()
            counts = dict(work.counts, reason=str(stop) if stop else None)
            if stop is None and work.past_threshold(final=True):
                stop = too_many_failures(work, run.run_dir)
                status = stop_status(stop)
                counts["reason"] = str(stop)
            for stage in stages:
                set_stage(store, stage, status, counts)
            return stop

        return await guarded_stage(run.stop, run.stats, body, record)
