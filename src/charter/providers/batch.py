"""Provider batch APIs at half price: OpenAI's Files + Batches API and Anthropic's Message Batches.

A `BatchModel` stands where an `OpenAIModel` or `AnthropicModel` would, behind the cache and the usage meter,
so the stages do not change. Its calls are not sent one by one: they wait in a queue until no new call has come
for `gather_s`, then go out together, split at the provider's size limits. A stage step asks for every item at
about the same moment, so each step (initial answers, critiques, revisions, judgments) becomes one batch round.

Each batch's id and the cache keys of its requests (its `custom_id`s) are written to a `BatchJournal` (the run
store) as soon as the provider has accepted it, before anything waits on it: a killed process, run again, finds
its requests in the journal and polls the batch it already paid for instead of submitting them again. A reply
goes through the same parsing as a synchronous one and then, through the managed model, into the call cache. A
request that failed inside a batch for a reason worth another try (5xx, 429, expiry, a malformed reply) goes into
the next batch round, up to `limits.max_retries` times; one the provider rejected (4xx) fails its item.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field

from charter.errors import ConfigError, ProviderError
from charter.providers.base import (
    RETRIED,
    ChatModel,
    ChoiceProbs,
    Completion,
    MalformedReply,
    Messages,
    SamplingParams,
)
from charter.providers.cache import cache_key
from charter.providers.limits import gather_or_cancel
from charter.records import as_dicts
from charter.yamlio import ConfigModel

log = logging.getLogger("charter.providers")

#: Providers with a batch API.
BATCH_PROVIDERS = ("openai", "anthropic")
#: States after which a batch changes no more.
ENDED = ("completed", "failed", "expired", "cancelled", "ended")


class BatchSettings(ConfigModel):
    """How calls go through a provider's batch API."""

    poll_s: float = Field(default=30.0, gt=0)
    """Seconds between status checks of a running batch."""
    gather_s: float = Field(default=2.0, ge=0)
    """Quiet time after the last queued call before the queue is submitted as a batch."""
    completion_window: str = "24h"
    """OpenAI's completion window (the only one it offers is 24h)."""
    max_requests: int | None = Field(default=None, gt=0)
    """Most requests per batch (default: the provider's limit, 50,000 for OpenAI and 100,000 for Anthropic)."""
    max_bytes: int | None = Field(default=None, gt=0)
    """Most bytes per batch (default: the provider's limit, 200 MB for OpenAI and 256 MB for Anthropic)."""
    in_flight: int = Field(default=100_000, gt=0)
    """Items (prompts) a run keeps in flight at once when it uses a batch API: the most one batch round holds."""


class BatchJournal(Protocol):
    """Where submitted batches are remembered across processes (the run store implements it)."""

    def record_batch(self, batch_id: str, model_id: str, keys: Sequence[str]) -> None:
        """A batch the provider accepted, with the custom ids (cache keys) of its requests."""

    def set_batch_state(self, batch_id: str, state: str) -> None:
        """The batch's latest state (`validating`, `in_progress`, `completed`, `expired`, `cancelled`, ...)."""

    def batch_of(self, key: str) -> str | None:
        """The batch that last carried this request, if any."""


class MemoryJournal:
    """A journal for one process (outside a run): nothing survives it."""

    def __init__(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}

    def record_batch(self, batch_id: str, model_id: str, keys: Sequence[str]) -> None:
        self.batches[batch_id] = {"model": model_id, "state": "submitted", "requests": len(keys)}
        self.keys.update((key, batch_id) for key in keys)

    def set_batch_state(self, batch_id: str, state: str) -> None:
        self.batches.setdefault(batch_id, {})["state"] = state

    def batch_of(self, key: str) -> str | None:
        return self.keys.get(key)


class BatchRequestError(Exception):
    """One request's failure inside a batch, with the HTTP status the provider gave it."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BatchExpired(MalformedReply):
    """A request the provider did not run before the batch ended (expired or cancelled): no reply, worth another
    round, like a malformed one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="batch_expired")


@dataclass
class _Call:
    """One queued request: its custom id, body, how to read its reply, and the rounds it has had."""

    key: str
    body: dict[str, Any]
    parse: Callable[[Any], Any]
    future: asyncio.Future
    rounds: int = 0
    retried: Callable[[], None] | None = None
    """Counts a round for the role that asked (the managed model's hook, taken where the call was made)."""


@dataclass
class _Outcome:
    """What a batch says about one request: a reply, or an error."""

    reply: Any = None
    error: Exception | None = None


@dataclass
class _Batch:
    batch_id: str
    members: set[str] = field(default_factory=set)
    outcomes: dict[str, _Outcome] | None = None
    task: asyncio.Task | None = None


class _OpenAIBatches:
    """OpenAI's Files + Batches API: a JSONL file of /v1/chat/completions requests, one batch per file."""

    max_requests, max_bytes = 50_000, 200 * 1024 * 1024

    def __init__(self, model: Any, settings: BatchSettings) -> None:
        self.model, self.settings = model, settings

    def line(self, call: _Call) -> bytes:
        entry = {"custom_id": call.key, "method": "POST", "url": "/v1/chat/completions", "body": call.body}
        return json.dumps(entry, ensure_ascii=False).encode() + b"\n"

    async def submit(self, lines: list[bytes]) -> str:
        client = self.model.client()
        upload = await client.files.create(file=("charter-batch.jsonl", b"".join(lines)), purpose="batch")
        batch = await client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window=self.settings.completion_window,
            metadata={"source": "charter"},
        )
        return batch.id

    async def status(self, batch_id: str) -> tuple[str, bool, str]:
        batch = await self.model.client().batches.retrieve(batch_id)
        counts = batch.request_counts
        done = f"{counts.completed + counts.failed}/{counts.total}" if counts is not None else "?"
        return batch.status, batch.status in ENDED, done

    async def outcomes(self, batch_id: str) -> dict[str, _Outcome]:
        client = self.model.client()
        batch = await client.batches.retrieve(batch_id)
        found: dict[str, _Outcome] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            text = (await client.files.content(file_id)).text
            for raw in text.splitlines():
                if raw.strip():
                    entry = json.loads(raw)
                    found[entry["custom_id"]] = self._outcome(entry)
        return found

    @staticmethod
    def _outcome(entry: dict[str, Any]) -> _Outcome:
        response, error = entry.get("response"), entry.get("error")
        if response and response.get("status_code") == 200 and isinstance(response.get("body"), dict):
            return _Outcome(reply=response["body"])
        if response:
            body = response.get("body") or {}
            message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
            return _Outcome(error=BatchRequestError(message or "failed in the batch", response.get("status_code")))
        code = (error or {}).get("code") or "failed"
        message = (error or {}).get("message") or code
        if code in ("batch_expired", "batch_cancelled"):
            return _Outcome(error=BatchExpired(message))
        return _Outcome(error=BatchRequestError(f"{code}: {message}", 400))

    async def cancel(self, batch_id: str) -> str:
        return (await self.model.client().batches.cancel(batch_id)).status


class _AnthropicBatches:
    """Anthropic's Message Batches: requests with `custom_id` and `params`, results as JSONL."""

    max_requests, max_bytes = 100_000, 256 * 1024 * 1024

    def __init__(self, model: Any, settings: BatchSettings) -> None:
        self.model, self.settings = model, settings

    def line(self, call: _Call) -> bytes:
        return json.dumps({"custom_id": call.key, "params": call.body}, ensure_ascii=False).encode() + b"\n"

    async def submit(self, lines: list[bytes]) -> str:
        requests = [json.loads(line) for line in lines]
        return (await self.model.client().messages.batches.create(requests=requests)).id

    async def status(self, batch_id: str) -> tuple[str, bool, str]:
        batch = await self.model.client().messages.batches.retrieve(batch_id)
        c = batch.request_counts
        total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
        return batch.processing_status, batch.processing_status == "ended", f"{total - c.processing}/{total}"

    async def outcomes(self, batch_id: str) -> dict[str, _Outcome]:
        found: dict[str, _Outcome] = {}
        async for entry in await self.model.client().messages.batches.results(batch_id):
            result = entry.result
            if result.type == "succeeded":
                found[entry.custom_id] = _Outcome(reply=result.message)
            elif result.type == "errored":
                inner = getattr(result.error, "error", None)
                kind, message = getattr(inner, "type", "api_error"), getattr(inner, "message", "errored")
                status = 400 if kind == "invalid_request_error" else 500
                found[entry.custom_id] = _Outcome(error=BatchRequestError(f"{kind}: {message}", status))
            else:  # expired, canceled
                found[entry.custom_id] = _Outcome(error=BatchExpired(f"{result.type} before it ran"))
        return found

    async def cancel(self, batch_id: str) -> str:
        return (await self.model.client().messages.batches.cancel(batch_id)).processing_status


def batch_api(model: ChatModel, settings: BatchSettings) -> _OpenAIBatches | _AnthropicBatches:
    """The batch API of an OpenAI or Anthropic backend."""
    if model.provider == "openai":
        return _OpenAIBatches(model, settings)
    if model.provider == "anthropic":
        return _AnthropicBatches(model, settings)
    raise ConfigError(f"{model.model_id}: batch: only the {' and '.join(BATCH_PROVIDERS)} providers have a batch API")


class BatchModel(ChatModel):
    """An OpenAI or Anthropic model whose calls go through the provider's batch API (see the module docstring)."""

    def __init__(
        self,
        inner: ChatModel,
        settings: BatchSettings | None = None,
        journal: BatchJournal | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(inner.name)
        self.inner, self.settings = inner, settings or BatchSettings()
        self._sdk_model: Any = inner  # an OpenAI or Anthropic backend: its batch_body, completion_from, choice_from
        self.api = batch_api(inner, self.settings)
        self.journal: BatchJournal = journal if journal is not None else MemoryJournal()
        self.report = report or log.info
        self.provider = inner.provider  # type: ignore[misc]
        self.supports_logprobs = inner.supports_logprobs  # type: ignore[misc]
        self.gives_token_logprobs = inner.gives_token_logprobs
        self.limiter = inner.limiter  # type: ignore[attr-defined]
        self._calls: dict[str, _Call] = {}
        self._queue: dict[str, _Call] = {}
        self._batches: dict[str, _Batch] = {}
        self._flusher: asyncio.Task | None = None
        self._last_queued = 0.0
        self.submitted = 0
        """Batches this process submitted (a resumed process polls earlier ones without submitting them)."""

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def endpoint(self) -> Any:  # type: ignore[override]
        return self.inner.endpoint

    # -- the chat interface ---------------------------------------------------------------------
    async def generate(self, requests: Sequence[Messages], params: SamplingParams) -> list[Completion]:
        payload = params.model_dump(mode="json")
        waits = []
        for messages in requests:
            key = cache_key("generate", self.served_id, [as_dicts(messages), payload])
            parse = self._generate_parser(messages)
            waits.append(self._ask(key, lambda m=messages: self._sdk_model.batch_body(m, params), parse))
        return await gather_or_cancel(waits)

    async def choice_logprobs(self, request: Messages, options: Sequence[str]) -> ChoiceProbs:
        if self.provider != "openai":
            return await self.inner.choice_logprobs(request, options)  # raises LogprobsUnsupported

        def parse(reply: Any) -> ChoiceProbs:
            result = self._sdk_model.choice_from(reply, request, options)
            result.batched = True
            return result

        key = cache_key("choice_logprobs", self.served_id, [as_dicts(request), list(options)])
        return await self._ask(key, lambda: self._sdk_model.choice_request(request), parse)

    def _generate_parser(self, messages: Messages) -> Callable[[Any], Completion]:
        def parse(reply: Any) -> Completion:
            if self.provider == "openai":
                completion = self._sdk_model.completion_from(reply, messages)
            else:
                completion = self._sdk_model.completion_from(reply)
            completion.batched = True
            return completion

        return parse

    async def aclose(self) -> None:
        """Stop waiting (the batches go on at the provider; a new process collects them) and close the client."""
        tasks = [b.task for b in self._batches.values() if b.task is not None] + [self._flusher]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        await self.inner.aclose()

    # -- queueing --------------------------------------------------------------------------------
    async def _ask(self, key: str, body: Callable[[], dict[str, Any]], parse: Callable[[Any], Any]) -> Any:
        """The reply to one request: from a batch that already carries it (a resumed run), else the next one."""
        call = self._calls.get(key)
        if call is None:
            future = asyncio.get_running_loop().create_future()
            call = self._calls[key] = _Call(key, body(), parse, future, retried=RETRIED.get())
            known = self.journal.batch_of(key)
            if known is not None:
                self._follow(known, call)
            else:
                self._enqueue(call)
        return await asyncio.shield(call.future)  # a cancelled waiter leaves the request to the others

    def _enqueue(self, call: _Call) -> None:
        self._queue[call.key] = call
        self._last_queued = time.monotonic()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_when_quiet())

    async def _flush_when_quiet(self) -> None:
        limit = self.settings.max_requests or self.api.max_requests
        while self._queue:
            wait = self._last_queued + self.settings.gather_s - time.monotonic()
            if wait > 0 and len(self._queue) < limit:
                await asyncio.sleep(wait)
                continue
            calls, self._queue = list(self._queue.values()), {}
            for chunk in self._split(calls):
                await self._submit(chunk)

    def _split(self, calls: list[_Call]) -> list[list[tuple[_Call, bytes]]]:
        """Chunks within the provider's request and byte limits."""
        max_requests = self.settings.max_requests or self.api.max_requests
        max_bytes = self.settings.max_bytes or self.api.max_bytes
        chunks: list[list[tuple[_Call, bytes]]] = [[]]
        size = 0
        for call in calls:
            line = self.api.line(call)
            if chunks[-1] and (len(chunks[-1]) >= max_requests or size + len(line) > max_bytes):
                chunks.append([])
                size = 0
            chunks[-1].append((call, line))
            size += len(line)
        return [c for c in chunks if c]

    async def _submit(self, chunk: list[tuple[_Call, bytes]]) -> None:
        calls = [call for call, _ in chunk]
        try:
            batch_id = await self.limiter.call(lambda: self.api.submit([line for _, line in chunk]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the limiter's one-line error fails these items
            for call in calls:
                self._fail(call, exc)
            return
        self.journal.record_batch(batch_id, self.model_id, [call.key for call in calls])  # before any wait
        self.submitted += 1
        self.report(f"batch {batch_id}: {len(calls)} {self.model_id} requests submitted")
        for call in calls:
            self._follow(batch_id, call)

    # -- following batches -----------------------------------------------------------------------
    def _follow(self, batch_id: str, call: _Call) -> None:
        batch = self._batches.setdefault(batch_id, _Batch(batch_id))
        if batch.outcomes is not None:  # already collected in this process
            self._deliver(call, batch.outcomes.get(call.key))
            return
        batch.members.add(call.key)
        if batch.task is None:
            batch.task = asyncio.ensure_future(self._poll(batch))

    async def _poll(self, batch: _Batch) -> None:
        last = None
        try:
            while True:
                state, ended, done = await self.limiter.call(lambda: self.api.status(batch.batch_id))
                if state != last:
                    self.journal.set_batch_state(batch.batch_id, state)
                    self.report(f"batch {batch.batch_id}: {state} ({done} requests done)")
                    last = state
                if ended:
                    break
                await asyncio.sleep(self.settings.poll_s)
            batch.outcomes = await self.limiter.call(lambda: self.api.outcomes(batch.batch_id))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - polling failed for good: the items fail, the batch stays journaled
            members, batch.members, batch.task = batch.members, set(), None
            gone = isinstance(exc, ProviderError) and exc.status == 404
            if gone:  # the provider no longer has it (results are kept for a limited time): ask again
                self.report(f"batch {batch.batch_id}: not found at the provider; its requests go in a new batch")
            for key in members:
                self._enqueue(self._calls[key]) if gone else self._fail(self._calls[key], exc)
            return
        members, batch.members = batch.members, set()
        outcomes = batch.outcomes or {}
        for key in members:
            self._deliver(self._calls[key], outcomes.get(key))

    def _deliver(self, call: _Call, outcome: _Outcome | None) -> None:
        if call.future.done():
            return
        if outcome is None:
            outcome = _Outcome(error=BatchExpired("no result in the batch"))
        if outcome.error is None:
            try:
                result = call.parse(outcome.reply)
            except MalformedReply as exc:
                outcome = _Outcome(error=exc)
            else:
                call.future.set_result(result)
                self._calls.pop(call.key, None)
                return
        error = outcome.error
        if self.limiter.retryable(error) and call.rounds < self.limiter.limits.max_retries:
            call.rounds += 1
            if call.retried is not None:
                call.retried()
            log.warning(
                "%s: %s; into the next batch round (%d of %d)",
                self.model_id,
                self.limiter.describe(error),
                call.rounds,
                self.limiter.limits.max_retries,
            )
            self._enqueue(call)
            return
        self._fail(call, error or BatchExpired("no result in the batch"))

    def _fail(self, call: _Call, error: Exception) -> None:
        if not call.future.done():
            failure = (
                error
                if not isinstance(error, (BatchRequestError, BatchExpired, MalformedReply))
                else self.limiter.failure(error, call.rounds + 1)
            )
            call.future.set_exception(failure)
            call.future.exception()  # retrieved: a waiter that was cancelled leaves no "never retrieved" warning
        self._calls.pop(call.key, None)


async def cancel_batches(model: ChatModel, batch_ids: Sequence[str]) -> dict[str, str]:
    """Ask the provider to cancel these batches; returns each one's state after the request."""
    api = batch_api(model, BatchSettings())
    states = {}
    try:
        for batch_id in batch_ids:
            states[batch_id] = await model.limiter.call(lambda b=batch_id: api.cancel(b))  # type: ignore[attr-defined]
    finally:
        await model.aclose()
    return states
