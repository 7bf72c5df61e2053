"""What every judgment does the same way: ask until the reply can be read, gather calls that all run to their end,
and tell an item's failure from one that stops the run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from charter.errors import FatalProviderError, JudgeParseError, ProviderError
from charter.judge.entry import JudgeOptions
from charter.providers.base import ChatModel, Completion, Messages

T = TypeVar("T")


async def ask_until_read(
    model: ChatModel,
    request: Messages,
    settings: JudgeOptions,
    read: Callable[[str], T],
    failed: Callable[[JudgeParseError, list[Completion]], JudgeParseError],
    json_schema: dict[str, Any] | None = None,
) -> tuple[T, list[Completion]]:
    """What `read` finds in the judge's reply to `request`, and every completion asked for it: a reply `read` cannot
    read (`JudgeParseError`) is asked again with the next try's sampling (`settings.attempt`), up to
    `settings.max_reasks` times; then the error `failed` makes of the last one and the completions is raised. Never a
    default."""
    completions: list[Completion] = []
    last = JudgeParseError("no reply")
    for attempt in range(settings.max_reasks + 1):
        params = settings.attempt(attempt)
        if json_schema is not None:
            params = params.model_copy(update={"json_schema": json_schema})
        [completion] = await model.generate([request], params)
        completions.append(completion)
        try:
            return read(completion.text), completions
        except JudgeParseError as exc:
            last = exc
    raise failed(last, completions)


def raise_first(outcomes: Sequence[T | BaseException]) -> list[T]:
    """The outcomes, or the first error among them raised."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if not isinstance(o, BaseException)]


async def gather_all(*calls: Awaitable[T]) -> list[T]:
    """Every call's result; every call runs to its end (its answer is paid for and cached) before the first error, if
    any, is raised."""
    return raise_first(await asyncio.gather(*calls, return_exceptions=True))


def dooms_run(error: BaseException) -> bool:
    """An error that is not one item's failure (auth, budget, a bug): it stops the run."""
    return not isinstance(error, JudgeParseError | ProviderError) or isinstance(error, FatalProviderError)
