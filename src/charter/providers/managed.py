"""A model with the cache and usage meter in front: what every stage talks to; and coalescing, by which single calls
made concurrently become one batched backend call.

Stages are written per item (one prompt, one pair) with many items in flight. A remote API wants
exactly that; a local model wants batches. A `Coalescer` sits in between for batch-capable
backends: callers `submit` their items and the first flush takes everything queued so far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from charter.errors import ProviderError
from charter.providers.base import (
    RETRIED,
    UNUSABLE_USAGE,
    ChatModel,
    ChoiceProbs,
    Completion,
    Messages,
    SamplingParams,
    TokenAlternative,
    TokenLogprob,
)
from charter.providers.cache import CallCache, endpoint_url
from charter.providers.usage import UsageMeter
from charter.records import Message, ToolCall, as_dicts, as_records


class ManagedModel(ChatModel):
    """Wraps a backend: answers from the cache where it can, counts usage by role, checks the budget."""

    def __init__(
        self, inner: ChatModel, cache: CallCache | None = None, meter: UsageMeter | None = None, role: str = "default"
    ) -> None:
        super().__init__(inner.name)
        self.inner, self.cache, self.meter, self.role = inner, cache, meter or UsageMeter(), role
        self.provider = inner.provider  # type: ignore[misc]
        self.supports_logprobs = inner.supports_logprobs  # type: ignore[misc]
        self.gives_token_logprobs = inner.gives_token_logprobs
        self.endpoint = inner.endpoint
        # Batch-capable backends (local models) get concurrent single calls coalesced into batches.
        self.batch_size = int(getattr(inner, "batch_size", 1) or 1)
        self._coalescers: dict[str, Coalescer] = {}
        # Calls with a cache key now being made: an identical call meanwhile waits for that one, as it would read
        # its row from the cache had it come a moment later; it is never made (and paid for) twice.
        self._in_flight: dict[str, asyncio.Future] = {}

    def _coalescer(self, key: str, run_batch) -> Coalescer:  # noqa: ANN001
        if key not in self._coalescers:
            self._coalescers[key] = Coalescer(run_batch, max_batch=self.batch_size * 4)
        return self._coalescers[key]

    def _count_unusable(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.meter.record(self.role, self.model_id, prompt_tokens, completion_tokens, cached=False)

    def _count_answered(self, reply: Completion | ChoiceProbs, completion_tokens: int) -> None:
        """Bill this role for a call the backend answered (a choice's answer is one token)."""
        self.meter.record(
            self.role,
            self.model_id,
            reply.prompt_tokens,
            completion_tokens,
            cached=False,
            estimated=reply.usage_estimated,
            batched=reply.batched,
            cache_read=reply.cache_read_tokens,
            cache_write=reply.cache_write_tokens,
        )

    def _count_retry(self) -> None:
        self.meter.record_retry(self.role, self.model_id)

    def _hooks(self) -> None:
        """In this task's context: the backend's unusable replies bill this role, and its retries count for it."""
        UNUSABLE_USAGE.set(self._count_unusable)
        RETRIED.set(self._count_retry)

    async def _backend_generate(self, requests: list[Messages], params: SamplingParams) -> list[Completion]:
        self._hooks()
        if self.batch_size <= 1:
            return await self.inner.generate(requests, params)
        inner = self.inner

        def run(batch: list[Messages], deliver: Deliver) -> Awaitable[list[Completion]]:
            if inner.delivers:  # each batch's answers go to their callers as it finishes
                return inner.generate(batch, params, done=deliver)  # type: ignore[call-arg]
            return inner.generate(batch, params)

        batcher = self._coalescer("g:" + params.model_dump_json(), run)
        return await batcher.submit(requests)

    async def _backend_choice(self, request: Messages, options: Sequence[str]) -> ChoiceProbs:
        self._hooks()
        batch_fn = getattr(self.inner, "choice_logprobs_batch", None)
        if self.batch_size <= 1 or batch_fn is None:
            return await self.inner.choice_logprobs(request, options)

        def run(batch: list[Messages], deliver: Deliver) -> Awaitable[list[ChoiceProbs]]:
            if self.inner.delivers:
                return batch_fn(batch, list(options), done=deliver)
            return batch_fn(batch, list(options))

        batcher = self._coalescer("c:" + "|".join(options), run)
        [result] = await batcher.submit([request])
        return result

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def served_id(self) -> str:
        return self.inner.served_id

    async def generate(
        self, requests: Sequence[Sequence[Message | Mapping[str, str]]], params: SamplingParams
    ) -> list[Completion]:
        """Complete each request (Message records, or `{role, content}` dicts), from the cache where it can."""
        requests = [as_records(r) for r in requests]
        payload = params.model_dump(mode="json")
        payloads = [[as_dicts(r), payload] for r in requests]  # the wire form: keys as before
        keys, hits = (
            self.cache.lookup("generate", self, payloads)
            if self.cache is not None
            else ([""] * len(requests), [None] * len(requests))
        )
        results: list[Completion | None] = [None] * len(requests)
        for i, hit in enumerate(hits):
            if hit is not None and (str(hit.get("text") or "").strip() or hit.get("tool_calls")):  # never empty
                results[i] = _completion_of(hit)
                self.meter.record(self.role, self.model_id, 0, 0, cached=True)
        todo = [i for i, r in enumerate(results) if r is None]
        todo, waits = self._claim(keys, todo)
        if todo:
            try:
                self.meter.check()
                fresh = await self._backend_generate([requests[i] for i in todo], params)
            except BaseException as exc:
                self._settle([keys[i] for i in todo], exc)
                raise
            rows, empty, url = [], 0, endpoint_url(self)
            for i, completion in zip(todo, fresh):
                self._count_answered(completion, completion.completion_tokens)  # answered: paid for
                if not completion.answered:  # no text and no tool call
                    empty += 1
                    continue
                results[i] = completion
                rows.append((keys[i], "generate", self.model_id, _row(completion), url))
            if self.cache is not None:
                self.cache.put_soon(rows)
            failed = (
                ProviderError(f"{self.model_id}: {empty} of {len(todo)} replies had no text", kind="empty_reply")
                if empty
                else None
            )
            for i in todo:
                self._settle([keys[i]], results[i] if results[i] is not None else failed)
            if failed is not None:
                raise failed
        for i, future in waits.items():
            answer = await self._waited(future)
            if answer is None:  # the call waited for was cancelled: this one is made after all
                [results[i]] = await self.generate([requests[i]], params)
            else:
                results[i] = _completion_of(_row(answer))
        return results  # type: ignore[return-value]

    async def choice_logprobs(
        self, request: Sequence[Message | Mapping[str, str]], options: Sequence[str]
    ) -> ChoiceProbs:
        """P(option) as the next token for a request (Message records, or dicts), from the cache where it can."""
        request = as_records(request)
        keys, hits = (
            self.cache.lookup("choice_logprobs", self, [[as_dicts(request), list(options)]])
            if self.cache is not None
            else ([""], [None])
        )
        if hits[0] is not None:
            self.meter.record(self.role, self.model_id, 0, 0, cached=True)
            return ChoiceProbs(**{**hits[0], "cached": True})
        todo, waits = self._claim(keys, [0])
        if waits:
            answer = await self._waited(waits[0])
            if answer is None:
                return await self.choice_logprobs(request, options)
            return ChoiceProbs(**{**_row(answer), "cached": True})
        try:
            self.meter.check()
            result = await self._backend_choice(request, options)
        except BaseException as exc:
            self._settle(keys, exc)
            raise
        self._settle(keys, result)
        self._count_answered(result, 1)
        if self.cache is not None:
            self.cache.put_soon([(keys[0], "choice_logprobs", self.model_id, _row(result), endpoint_url(self))])
        return result

    def _claim(self, keys: list[str], todo: list[int]) -> tuple[list[int], dict[int, asyncio.Future]]:
        """Split the calls to make into those this caller makes (each now in flight under its key) and those an
        identical call in flight already makes (waited for). Without a cache there are no keys, and no waiting."""
        if self.cache is None:
            return todo, {}
        own, waits = [], {}
        for i in todo:
            if keys[i] in self._in_flight:
                waits[i] = self._in_flight[keys[i]]
            else:
                future = asyncio.get_running_loop().create_future()
                future.add_done_callback(_retrieved)
                self._in_flight[keys[i]] = future
                own.append(i)
        return own, waits

    def _settle(self, keys: list[str], outcome: Any) -> None:
        """The calls under these keys ended: their waiters get the answer, or the error (cancelled: they call)."""
        for key in keys:
            future = self._in_flight.pop(key, None)
            if future is None or future.done():
                continue
            if isinstance(outcome, asyncio.CancelledError):
                future.cancel()
            elif isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _waited(self, future: asyncio.Future) -> Any:
        """The answer of the identical call waited for, counted as a cache hit; None if it was cancelled; its
        error if it failed."""
        await asyncio.wait([future])
        if future.cancelled():
            return None
        answer = future.result()
        self.meter.record(self.role, self.model_id, 0, 0, cached=True)
        return answer

    async def aclose(self) -> None:
        if self.cache is not None:
            self.cache.flush()
        await self.inner.aclose()


def _retrieved(future: asyncio.Future) -> None:
    """Mark a failed in-flight call's error as seen: nobody may have waited for it (asyncio would log it)."""
    if not future.cancelled():
        future.exception()


def _row(result: Completion | ChoiceProbs) -> dict:
    """The cache value: the result's fields but `cached` and the provider's prompt-cache counts (billing only; the
    rows stay readable by earlier releases). A shallow copy; `dataclasses.asdict` deep-copies and was the costliest
    step of a cache miss."""
    row = dict(vars(result))
    for billing_only in ("cached", "cache_read_tokens", "cache_write_tokens"):  # a hit is free: rows as before
        row.pop(billing_only, None)
    calls = row.pop("tool_calls", None)
    if calls is not None:  # only replies that call tools carry them (other rows stay as before)
        row["tool_calls"] = [call.model_dump(exclude_none=True) for call in calls]
    tokens = row.pop("token_logprobs", None)
    if tokens is not None:  # only asked ones carry them (other rows stay as before), as lists: a third of the size
        row["token_logprobs"] = [_packed(t, [_packed(a) for a in t["top_logprobs"]]) for t in tokens]
    return row


def _packed(token: TokenAlternative, *top: list) -> list:
    """A token as a cache row keeps it: [text, logprob, (its top alternatives,) (its bytes where it keeps them)]."""
    return [token["token"], token["logprob"], *top, *([token["bytes"]] if token.get("bytes") else [])]


def _unpacked(packed: list) -> TokenAlternative:
    return {"token": packed[0], "logprob": packed[1], "bytes": packed[2] if len(packed) > 2 else None}


def _completion_of(row: dict) -> Completion:
    """The completion a cache row holds (answered from the cache), its tokens' log-probabilities unpacked."""
    if row.get("tool_calls") is not None:
        row = {**row, "tool_calls": [ToolCall.model_validate(call) for call in row["tool_calls"]]}
    tokens = row.get("token_logprobs")
    if tokens is not None:
        unpacked: list[TokenLogprob] = []
        for packed in tokens:
            top = [_unpacked(a) for a in packed[2]]
            unpacked.append({**_unpacked([packed[0], packed[1], *packed[3:]]), "top_logprobs": top})  # type: ignore[typeddict-item]
        row = {**row, "token_logprobs": unpacked}
    return Completion(**{**row, "cached": True})


#: Hands one item's result over as soon as it is ready (`deliver(position in the batch, result)`; any thread).
Deliver = Callable[[int, Any], None]


class Coalescer:
    """Queue items from concurrent callers; run them through `run_batch` up to `max_batch` at a time.

    `run_batch(items, deliver)` may hand results over as they are ready, before it returns (a local model's call
    runs several batches): their callers go on at once, so a stop keeps what finished and progress counts it. A
    caller that closes its event loop right after its answers came (a synchronous wrapper's
    `run_until_complete`) may leave the drain unfinished on the closed loop: the next caller's loop starts its own,
    and items whose loop is closed are dropped, their callers gone."""

    def __init__(self, run_batch: Callable[[list[Any], Deliver], Awaitable[Sequence[Any]]], max_batch: int) -> None:
        self.run_batch, self.max_batch = run_batch, max_batch
        self.queue: list[tuple[Any, asyncio.Future]] = []
        self.drainer: asyncio.Future | None = None

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self.queue.extend(zip(items, futures))
        if self.drainer is None or self.drainer.done() or self.drainer.get_loop().is_closed():
            self.drainer = asyncio.ensure_future(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let callers started in the same tick enqueue first
        while self.queue:
            batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
            live = [(item, fut) for item, fut in batch if not fut.cancelled() and not fut.get_loop().is_closed()]
            if not live:
                continue
            deliver = _deliverer(asyncio.get_running_loop(), [fut for _, fut in live])

            try:
                results = await self.run_batch([item for item, _ in live], deliver)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results):
                if not fut.done():
                    fut.set_result(result)


def _deliverer(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future]) -> Deliver:
    """`deliver` for one batch: the result of the item at a position settles its caller's future, on the loop."""

    def deliver(position: int, result: Any) -> None:
        loop.call_soon_threadsafe(_settle, futures[position], result)

    return deliver


def _settle(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)
