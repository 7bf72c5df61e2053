"""A loopback HTTP server that speaks OpenAI's and Anthropic's chat wire formats.

For tests and benchmarks: the real SDKs talk to it over 127.0.0.1. It answers
`POST /v1/chat/completions` (non-streaming JSON, with `logprobs`/`top_logprobs` when asked: for a one-token request
the next-token table, for a longer one each token of the reply with its top alternatives) and
`POST /v1/messages`, and can be told how to misbehave, one request at a time:

    server = LoopbackServer(delay_s=0.05).start()
    server.script(status(429, retry_after="1"), drop(), ok())  # then the default: ok after delay_s
    ... point the SDK at server.openai_url / server.url ...
    server.hits, server.requests[0].headers["authorization"]
    server.stop()

It is a plain asyncio protocol (HTTP/1.1 with keep-alive), fast enough to keep a client busy
from another process: `python -m charter.testing.loopback --delay 0.1` prints its port.

`BatchServer` is a `LoopbackServer` that also speaks OpenAI's Files + Batches and Anthropic's Message Batches wire
formats: the real `openai` and `anthropic` SDKs submit batches to it and poll them.

    server = BatchServer(complete_after_s=0.2, fail=lambda body: 500 if "boom" in str(body) else None).start()
    client = openai.OpenAI(base_url=server.openai_url, api_key="x")   # or anthropic.Anthropic(base_url=server.url)
    ... files.create / batches.create / batches.retrieve / files.content ...
    server.batches_created, server.retrievals, server.cancelled
    server.stop()

A batch is in progress until `complete_after_s` after its creation; the next retrieve then runs every request
through the parent's reply builders (`_openai`, logprobs included, and `_anthropic`) and ends the batch. While
`server.hold` is True no batch ends (a cancelled one still does). `fail(body)` returns an HTTP status to fail
one request with (None: succeed); `expire_after=N` ends batches as expired after their first N requests.
Other paths (`/v1/chat/completions`, `/v1/messages`) are answered by `LoopbackServer` as before. Batch
endpoints take scripted error statuses and drops from `script()` too, but not the server's default delay.
State is only touched on the server's loop thread; read the records once the client is done.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

#: The default next-token distribution for logprobs requests: option-like tokens in several spellings.
DEFAULT_LOGPROBS = {"A": -0.2, " B": -1.9, "(A": -3.0, "B": -3.5, " C": -6.0, "The": -7.0}

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request."""

    status: int = 200
    delay_s: float | None = None
    """Seconds before answering (None: the server's default delay)."""
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    """Close the connection without answering."""
    body: bytes | None = None
    """Send these bytes instead of the wire-format reply."""
    kind: str = "ok"
    """A name for the log (which fault, or ok)."""
    empty_choices: bool = False
    """A 200 whose `choices` is empty (usage included)."""
    foreign_logprobs: bool = False
    """For a logprobs request: top tokens that name no option."""
    truncate: bool = False
    """Cut the JSON reply in half, as a dropped stream would."""


def ok(delay_s: float | None = None) -> Behaviour:
    """A normal reply, after `delay_s` (default: the server's delay)."""
    return Behaviour(delay_s=delay_s)


def slow(delay_s: float) -> Behaviour:
    """A normal reply that takes `delay_s`, e.g. longer than the client's timeout."""
    return Behaviour(delay_s=delay_s)


def status(code: int, retry_after: str | None = None, retry_after_ms: str | None = None) -> Behaviour:
    """An error reply with that status (and Retry-After headers if given), at once."""
    headers = []
    if retry_after is not None:
        headers.append(("retry-after", retry_after))
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", retry_after_ms))
    return Behaviour(status=code, delay_s=0.0, headers=tuple(headers))


def garbage(body: bytes = b"<html><body>502 Bad Gateway</body></html>") -> Behaviour:
    """A 200 whose body is not JSON, like a misconfigured proxy's."""
    return Behaviour(delay_s=0.0, body=body)


def drop(delay_s: float = 0.0) -> Behaviour:
    """Read the request, then close the connection without a word."""
    return Behaviour(delay_s=delay_s, drop=True)


@dataclass
class Recorded:
    """A request as the server saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


def echo_reply(body: dict[str, Any]) -> str:
    """The default reply: "echo: " and the last user message."""
    users = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
    last = users[-1] if users else ""
    if isinstance(last, list):  # content blocks
        last = " ".join(b.get("text", "") for b in last if isinstance(b, dict))
    return f"echo: {last}"


def asks_next_token(body: dict[str, Any]) -> bool:
    """Whether a chat completions body asks for the next token's log-probabilities alone (`logprobs` with a
    one-token cap), as `choice_logprobs` does; a longer generation that asks `logprobs` is answered with its text."""
    return bool(body.get("logprobs")) and (body.get("max_tokens") or body.get("max_completion_tokens")) == 1


_TOKEN = re.compile(r"\s*\w+|\s*[^\s\w]|\s+")


def tokens(text: str) -> list[str]:
    """A reply cut into tokens as a GPT tokenizer roughly cuts it: a word or one other character, with the spaces
    before it (their concatenation is the text)."""
    return _TOKEN.findall(text)


def _words(body: dict[str, Any]) -> int:
    text = json.dumps(body.get("messages", [])) + str(body.get("system", ""))
    return max(1, len(text.split()))


class Billing(Protocol):
    """How a server caches and bills prompts as a provider does (the tests' `tests/support/billing.py`, written apart
    from charter): `usage` is the usage block of a reply in its `wire` format ("openai" or "anthropic"), `fill`
    caches a request's prefixes once it has been answered, `invoice` is the bill."""

    wire: str
    invoice: Any

    def usage(self, body: dict[str, Any], text: str, batched: bool = False) -> dict[str, Any]: ...
    def fill(self, body: dict[str, Any]) -> None: ...


class LoopbackServer:
    """The server; `start()` runs it on its own event loop in a background thread."""

    def __init__(
        self,
        delay_s: float = 0.0,
        reply: Callable[[dict[str, Any]], str | dict[str, Any]] = echo_reply,
        logprobs: dict[str, float] | None = None,
        record: bool = True,
        billing: Billing | None = None,
        alternatives: Callable[[dict[str, Any], str, str], dict[str, float]] | None = None,
    ) -> None:
        self.delay_s, self.reply, self.record = delay_s, reply, record
        """`reply(body)`: the reply's text, or an assistant message that calls tools (`{content, tool_calls}`, the
        calls in OpenAI's wire format), sent as OpenAI's `tool_calls` and as Anthropic's `tool_use` blocks."""
        self.alternatives = alternatives
        """For a generation that asks `logprobs`: `(body, text before the token, token)` -> the token's top
        alternatives as log-probabilities (the token among them); None, or an empty answer: the token alone, certain.
        An empty table (`logprobs={}`) plays a server that gives no log-probabilities at all."""
        self.billing = billing
        """Cache and bill prompts as the provider does (a `Billing`); its `invoice` is the bill. A
        request reads the prefixes cached when it arrives; its own become readable once its reply is sent."""
        self.logprobs = dict(DEFAULT_LOGPROBS if logprobs is None else logprobs)
        self.requests: list[Recorded] = []
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.host, self.port = "127.0.0.1", 0
        self._plan: collections.deque[Behaviour] = collections.deque()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # -- control (from any thread) -------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> LoopbackServer:
        """Answer the next requests with these behaviours, in arrival order; then the default."""
        self._plan.extend(behaviours)
        return self

    def reset(self) -> None:
        """Forget recorded requests and any unused script."""
        self._plan.clear()
        self.requests.clear()
        self.count = 0
        self.max_in_flight = 0

    @property
    def hits(self) -> int:
        """Requests received so far."""
        return self.count

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> LoopbackServer:
        """Serve from a background thread; returns once the port is bound (any free one unless `port` is given;
        another loopback address such as 127.0.0.77 gives a fixed URL that nothing else on the machine uses)."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.listen(host, port))
            except OSError as exc:  # the address is taken, or not a loopback address here
                failed.append(exc)
                ready.set()
                self._loop.close()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="loopback-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            self._loop = self._thread = None
            raise failed[0]
        return self

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.AbstractServer:
        """Bind on the running loop (for in-process use or `serve`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), host, port, backlog=1024)
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        return self._server

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop, server = self._loop, self._server

        def shutdown() -> None:
            if server is not None:
                server.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self if self._thread is not None else self.start()  # `with LoopbackServer().start(host, port):`

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ----------------------------------------------------------------------------------
    def choose(self, path: str, body: Any) -> Behaviour:
        """How to answer this request: the next scripted behaviour, else a normal reply."""
        return self._plan.popleft() if self._plan else Behaviour()

    def sent(self, behaviour: Behaviour, body: Any, code: int, written: bool) -> None:
        """Called once a reply was written (or could not be: the client had gone)."""

    def respond(self, conn: Connection, method: str, path: str, headers: dict[str, str], raw: bytes) -> None:
        self.count += 1
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if self.record:
            self.requests.append(Recorded(method, path, headers, body))
        behaviour = self.choose(path, body)
        delay = self.delay_s if behaviour.delay_s is None else behaviour.delay_s
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if behaviour.drop:

            def reply() -> None:
                conn.abort()
                self.sent(behaviour, body, 0, False)
        else:
            code, extra, payload = self._answer(behaviour, path, headers, body)
            billing = self.billing_for(path) if code == 200 and behaviour.body is None else None
            billed = body if isinstance(body, dict) else {}

            def reply() -> None:
                written = conn.send(code, extra, payload, keep_alive=headers.get("connection") != "close")
                if billing is not None:  # as at a provider, the prompt is cached once it has been answered
                    billing.fill(billed)
                self.sent(behaviour, body, code, written)

        def answer() -> None:
            self.in_flight -= 1
            reply()

        if delay > 0:
            asyncio.get_running_loop().call_later(delay, answer)
        else:
            answer()

    def billing_for(self, path: str) -> Billing | None:
        """The billing that caches and bills requests to `path` (the server's own, where it bills that format)."""
        wire = "anthropic" if path.split("?", 1)[0].rstrip("/").endswith("/messages") else "openai"
        return self.billing if self.billing is not None and self.billing.wire == wire else None

    def _answer(
        self, behaviour: Behaviour, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        anthropic = path.rstrip("/").endswith("/messages")
        if not isinstance(body, dict):
            return 400, (), error_body(anthropic, 400, "request body is not JSON")
        if behaviour.body is not None:
            return behaviour.status, behaviour.headers, behaviour.body
        if behaviour.status != 200:
            return (
                behaviour.status,
                behaviour.headers,
                error_body(anthropic, behaviour.status, _message(behaviour, headers)),
            )
        if anthropic:
            payload = json.dumps(self._anthropic(body)).encode()
        elif path.rstrip("/").endswith("/chat/completions"):
            payload = json.dumps(self._openai(body, behaviour)).encode()
        else:
            return 404, (), error_body(anthropic, 404, f"no route for {path}")
        return 200, behaviour.headers, payload[: len(payload) // 2] if behaviour.truncate else payload

    def reply_text(self, body: dict[str, Any]) -> str:
        """The text of the reply to `body` (of a reply that calls tools, its content)."""
        said = self.reply(body)
        return said if isinstance(said, str) else str(said.get("content") or "")

    def logprobs_for(self, body: dict[str, Any]) -> dict[str, float]:
        """The next-token log-probabilities a logprobs request gets."""
        return self.logprobs

    def _openai(
        self, body: dict[str, Any], behaviour: Behaviour = Behaviour(), batched: bool = False
    ) -> dict[str, Any]:
        logprobs, message = None, None
        table = {" The": -0.3, " It": -1.2, " C": -2.0} if behaviour.foreign_logprobs else self.logprobs_for(body)
        if asks_next_token(body) and table:  # an empty table plays a server without logprobs
            top = sorted(table.items(), key=lambda kv: -kv[1])[: int(body.get("top_logprobs") or 0) or 1]
            entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
            logprobs = {"content": [{**entries[0], "top_logprobs": entries}], "refusal": None}
            text = top[0][0]
        else:
            text = self.reply(body)
            if isinstance(text, dict):  # an assistant message that calls tools: {content, tool_calls}
                message = {"role": "assistant", "content": text.get("content"), "tool_calls": text["tool_calls"]}
                text = text.get("content") or ""
            if body.get("logprobs") and table:
                logprobs = {"content": self._token_logprobs(body, text), "refusal": None}
        prompt, completion = _words(body), max(1, len(text.split()))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if self.billing is not None and self.billing.wire == "openai":
            usage = self.billing.usage(body, text, batched)
        choices = (
            []
            if behaviour.empty_choices
            else [
                {
                    "index": 0,
                    "message": message or {"role": "assistant", "content": text},
                    "finish_reason": "tool_calls" if message else "stop",
                    "logprobs": logprobs,
                }
            ]
        )
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "system_fingerprint": "loopback",
            "choices": choices,
            "usage": usage,
        }

    def _token_logprobs(self, body: dict[str, Any], text: str) -> list[dict[str, Any]]:
        """Each token of a reply (`tokens`) with its log-probability and its `top_logprobs` best alternatives."""
        content, before = [], ""
        for token in tokens(text):
            found = (self.alternatives(body, before, token) if self.alternatives else None) or {token: 0.0}
            top = sorted(found.items(), key=lambda kv: -kv[1])[: int(body.get("top_logprobs") or 0)]
            alts = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
            content.append({"token": token, "logprob": found.get(token, 0.0), "bytes": list(token.encode()),
                            "top_logprobs": alts})  # fmt: skip
            before += token
        return content

    def _anthropic(self, body: dict[str, Any], batched: bool = False) -> dict[str, Any]:
        said = self.reply(body)
        blocks: list[dict[str, Any]] = []
        if isinstance(said, dict):  # an assistant message that calls tools: each call a tool_use block
            blocks = [
                {"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                 "input": json.loads(c["function"]["arguments"] or "{}")}
                for c in said["tool_calls"]
            ]  # fmt: skip
            said = said.get("content") or ""
        text = said
        usage: dict[str, Any] = {"input_tokens": _words(body), "output_tokens": max(1, len(text.split()))}
        if self.billing is not None and self.billing.wire == "anthropic":
            usage = self.billing.usage(body, text, batched)
        return {
            "id": f"msg_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [*([{"type": "text", "text": text}] if text or not blocks else []), *blocks],
            "stop_reason": "tool_use" if blocks else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }


def _message(behaviour: Behaviour, headers: dict[str, str]) -> str:
    if behaviour.status == 401:  # like some servers do, echo the key back: clients must not repeat it
        key = headers.get("authorization", "").removeprefix("Bearer ") or headers.get("x-api-key", "")
        return f"Incorrect API key provided: {key}"
    if behaviour.status == 429:
        return "Rate limit reached for requests"
    return f"loopback error {behaviour.status}"


def error_body(anthropic: bool, code: int, message: str) -> bytes:
    """An error response's body as OpenAI's (or, with `anthropic`, Anthropic's) API writes it."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(code, "api_error")
    if anthropic:
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    return json.dumps({"error": {"message": message, "type": kind, "code": None, "param": None}}).encode()


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: parse requests with a Content-Length body, answer in order."""

    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            raw = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.server.respond(self, method, path, headers, raw)

    def send(
        self,
        code: int,
        headers: tuple[tuple[str, str], ...],
        payload: bytes,
        keep_alive: bool = True,
        content_type: str = "application/json",
    ) -> bool:
        """Write a reply; False when the client had gone (a timeout) or the connection was dropped."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        head = [
            f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}",
            f"content-type: {content_type}",
            f"content-length: {len(payload)}",
            "connection: " + ("keep-alive" if keep_alive else "close"),
        ]
        head += [f"{name}: {value}" for name, value in headers]
        transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        if not keep_alive:
            transport.close()
        return True

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


async def serve(host: str, port: int, delay_s: float) -> None:
    """Serve until killed, printing the bound port on stdout first (for benchmarks)."""
    server = LoopbackServer(delay_s=delay_s, record=False)
    listening = await server.listen(host, port)
    print(server.port, flush=True)
    async with listening:
        await listening.serve_forever()


# The batch APIs: OpenAI's Files + Batches, Anthropic's Message Batches.

_BATCH_PATH = re.compile(r"/v1/(files|batches|messages/batches)(/.*)?")
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_EXPIRED = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}
_DAY = 24 * 3600
_JSON, _BINARY = "application/json", "application/octet-stream"

Reply = tuple[int, str, bytes]  # status, content type, body


@dataclass
class _Batch:
    """One submitted batch; `results` holds (custom_id, outcome, status, payload) once it has ended."""

    provider: str
    id: str
    requests: list[tuple[str, dict[str, Any]]]
    created: float
    fields: dict[str, Any] = field(default_factory=dict)
    cancel_at: float | None = None
    ended_at: float | None = None
    results: list[tuple[str, str, int, Any]] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _int(t: float | None) -> int | None:
    return None if t is None else int(t)


def _json(obj: Any, code: int = 200) -> Reply:
    return code, _JSON, json.dumps(obj).encode()


def _err(anthropic: bool, code: int, message: str) -> Reply:
    return code, _JSON, error_body(anthropic, code, message)


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename, bytes)."""
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if not found:
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + found.group(1).encode())[1:]:
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue  # the closing "--"
        disposition = head.decode("latin-1")
        name, filename = re.search(r'\bname="([^"]*)"', disposition), re.search(r'filename="([^"]*)"', disposition)
        if name:
            fields[name.group(1)] = (filename.group(1) if filename else None, data.removesuffix(b"\r\n"))
    return fields


def _send(
    conn: Connection,
    code: int,
    content_type: str,
    payload: bytes,
    keep_alive: bool,
    headers: tuple[tuple[str, str], ...] = (),
) -> bool:
    """`Connection.send` with a content type of our choosing."""
    return conn.send(code, headers, payload, keep_alive, content_type)


class BatchServer(LoopbackServer):
    """`LoopbackServer` plus the OpenAI Files/Batches and Anthropic Message Batches endpoints."""

    def __init__(
        self,
        complete_after_s: float = 0.0,
        fail: Callable[[dict[str, Any]], int | None] | None = None,
        expire_after: int | None = None,
        hold: bool = False,
        split_errors: bool = False,
        reply: Callable[[dict[str, Any]], str] = echo_reply,
        logprobs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """`split_errors`: put requests failed with a status in the error file (as OpenAI does), not the output."""
        super().__init__(reply=reply, logprobs=logprobs, **kwargs)
        self.complete_after_s, self.fail, self.expire_after = complete_after_s, fail, expire_after
        self.hold, self.split_errors = hold, split_errors
        self.batches_created: list[dict[str, Any]] = []
        self.retrievals = 0
        self.cancelled: list[str] = []
        self.batches: dict[str, _Batch] = {}
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._serial = itertools.count(1)

    # -- serving ----------------------------------------------------------------------------------
    def respond(self, conn: Connection, method: str, path: str, headers: dict[str, str], raw: bytes) -> None:
        route = path.split("?", 1)[0].rstrip("/")
        if not _BATCH_PATH.fullmatch(route):
            return super().respond(conn, method, path, headers, raw)
        self.count += 1
        try:
            body = json.loads(raw) if raw and "json" in headers.get("content-type", "") else None
        except ValueError:
            body = None
        if self.record:
            self.requests.append(Recorded(method, path, headers, body))
        behaviour = self.choose(path, body)
        anthropic = route.startswith("/v1/messages/")
        if behaviour.drop:
            code, content_type, payload = 0, _JSON, b""
        elif behaviour.status != 200:
            code, content_type, payload = _err(anthropic, behaviour.status, f"loopback error {behaviour.status}")
        else:
            code, content_type, payload = self._route(method, route, headers, raw, body)

        def answer() -> None:
            if behaviour.drop:
                conn.abort()
                return self.sent(behaviour, body, 0, False)
            keep = headers.get("connection") != "close"
            self.sent(behaviour, body, code, _send(conn, code, content_type, payload, keep, behaviour.headers))

        if behaviour.delay_s:
            asyncio.get_running_loop().call_later(behaviour.delay_s, answer)
        else:
            answer()

    def _route(self, method: str, route: str, headers: dict[str, str], raw: bytes, body: Any) -> Reply:
        parts = route.split("/")[2:]  # e.g. ["messages", "batches", id, "results"]
        if parts[0] == "messages":
            return self._anthropic_route(method, parts[2:], body)
        if parts == ["files"] and method == "POST":
            return self._upload(headers, raw)
        if parts[0] == "files" and len(parts) in (2, 3) and method == "GET" and parts[1] in self.files:
            meta, content = self.files[parts[1]]
            return (200, _BINARY, content) if parts[2:] == ["content"] else _json(meta)
        if parts == ["batches"] and method == "POST":
            return self._openai_create(body)
        batch = self.batches.get(parts[1]) if parts[0] == "batches" and len(parts) > 1 else None
        if batch is None or batch.provider != "openai":
            return _err(False, 404, f"no route for {method} {route}")
        return self._batch_route(method, parts[2:], batch, self._openai_batch) or _err(
            False, 404, f"no route for {method} {route}"
        )

    def _anthropic_route(self, method: str, parts: list[str], body: Any) -> Reply:
        if not parts and method == "POST":
            return self._anthropic_create(body)
        batch = self.batches.get(parts[0]) if parts else None
        if batch is None or batch.provider != "anthropic":
            return _err(True, 404, "message batch not found")
        shown = self._batch_route(method, parts[1:], batch, self._anthropic_batch)
        if shown is not None:
            return shown
        if parts[1:] == ["results"] and method == "GET":
            if batch.ended_at is None:
                return _err(True, 404, f"message batch {batch.id} has not ended yet")
            return 200, "application/binary", _jsonl([self._anthropic_result(r) for r in batch.results])
        return _err(True, 404, "no such route")

    def _batch_route(
        self, method: str, rest: list[str], batch: _Batch, view: Callable[[_Batch], dict[str, Any]]
    ) -> Reply | None:
        """Retrieve a batch (settled first, and counted) or cancel it, shown as `view` shows one; None for another
        route."""
        if rest == [] and method == "GET":
            self.retrievals += 1
            self._settle(batch)
            return _json(view(batch))
        if rest == ["cancel"] and method == "POST":
            return _json(view(self._cancel(batch)))
        return None

    # -- creation ---------------------------------------------------------------------------------
    def _upload(self, headers: dict[str, str], raw: bytes) -> Reply:
        form = _multipart(headers.get("content-type", ""), raw)
        if "file" not in form or "purpose" not in form:
            return _err(False, 400, "expected multipart fields 'file' and 'purpose'")
        filename, content = form["file"]
        return _json(self._store(content, filename or "upload.jsonl", form["purpose"][1].decode()))

    def _store(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        meta = {
            "id": f"file-{next(self._serial)}",
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[meta["id"]] = (meta, content)
        return meta

    def _openai_create(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return _err(False, 400, "request body is not JSON")
        if body.get("input_file_id") not in self.files:
            return _err(False, 404, f"No such File object: {body.get('input_file_id')}")
        endpoint = body.get("endpoint")
        if endpoint != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return _err(False, 400, "only endpoint /v1/chat/completions and completion_window 24h are served")
        requests: list[tuple[str, dict[str, Any]]] = []
        for n, line in enumerate(self.files[body["input_file_id"]][1].decode().splitlines(), 1):
            try:
                item = json.loads(line) if line.strip() else None
            except ValueError:
                return _err(False, 400, f"line {n} of the input file is not JSON")
            if item is None:
                continue
            if not (
                isinstance(item, dict)
                and isinstance(item.get("custom_id"), str)
                and item.get("method") == "POST"
                and item.get("url") == endpoint
                and isinstance(item.get("body"), dict)
            ):
                return _err(False, 400, f"line {n}: expected custom_id, method POST, url {endpoint} and a body")
            requests.append((item["custom_id"], item["body"]))
        error = self._check_ids([cid for cid, _ in requests])
        if error:
            return _err(False, 400, error)
        fields = {k: body.get(k) for k in ("input_file_id", "endpoint", "completion_window", "metadata")}
        return _json(self._openai_batch(self._new("openai", f"batch_{next(self._serial)}", requests, fields), True))

    def _anthropic_create(self, body: Any) -> Reply:
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(
            isinstance(r, dict) and isinstance(r.get("params"), dict) for r in items
        ):
            return _err(True, 400, "requests: expected a list of {custom_id, params}")
        ids = [r.get("custom_id") for r in items]
        bad = [i for i in ids if not isinstance(i, str) or not _CUSTOM_ID.fullmatch(i)]
        error = f"custom_id {bad[0]!r} does not match ^[a-zA-Z0-9_-]{{1,64}}$" if bad else self._check_ids(ids)
        if error:
            return _err(True, 400, error)
        requests = [(r["custom_id"], r["params"]) for r in items]
        return _json(self._anthropic_batch(self._new("anthropic", f"msgbatch_{next(self._serial)}", requests, {})))

    @staticmethod
    def _check_ids(ids: list[Any]) -> str | None:
        if not ids:
            return "a batch needs at least one request"
        duplicates = [ident for ident, n in collections.Counter(ids).items() if n > 1]
        return f"duplicate custom_id {duplicates[0]!r}" if duplicates else None

    def _new(
        self, provider: str, ident: str, requests: list[tuple[str, dict[str, Any]]], fields: dict[str, Any]
    ) -> _Batch:
        batch = self.batches[ident] = _Batch(provider, ident, requests, time.time(), fields)
        self.batches_created.append(
            {"provider": provider, "id": ident, "requests": len(requests), "custom_ids": [cid for cid, _ in requests]}
        )
        return batch

    # -- processing -------------------------------------------------------------------------------
    def _cancel(self, batch: _Batch) -> _Batch:
        if batch.ended_at is None and batch.cancel_at is None:
            batch.cancel_at = time.time()
            self.cancelled.append(batch.id)
        return batch

    def _settle(self, batch: _Batch) -> None:
        """End the batch if it was cancelled or its time has come (and the server does not hold it)."""
        if batch.ended_at is not None:
            return
        if batch.cancel_at is not None:
            batch.results = [(cid, "canceled", 0, None) for cid, _ in batch.requests]
        elif self.hold or time.time() < batch.created + self.complete_after_s:
            return
        else:
            answered = []
            for n, (cid, body) in enumerate(batch.requests):
                if self.expire_after is not None and n >= self.expire_after:
                    batch.results.append((cid, "expired", 0, None))
                    continue
                code = self.fail(body) if self.fail else None
                if code is None or code == 200:
                    if batch.provider == "openai":
                        reply = self._openai(body, batched=True)
                    else:
                        reply = self._anthropic(body, batched=True)
                    batch.results.append((cid, "succeeded", 200, reply))
                    answered.append(body)
                else:
                    batch.results.append((cid, "errored", code, None))
            self._fill(batch.provider, answered)
        batch.ended_at = time.time()
        if batch.provider == "openai":
            self._write_files(batch)

    def _fill(self, provider: str, bodies: list[dict[str, Any]]) -> None:
        """Cache the prompts of a batch's answered requests: they become readable when the batch ends, as its
        results do (requests within one batch do not read each other's prefixes)."""
        billing = self.billing_for("/v1/messages" if provider == "anthropic" else "/v1/chat/completions")
        if billing is None:
            return
        for body in bodies:
            billing.fill(body)

    def _write_files(self, batch: _Batch) -> None:
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for cid, outcome, code, reply in batch.results:
            n = next(self._serial)
            line: dict[str, Any] = {"id": f"batch_req_{n}", "custom_id": cid, "response": None, "error": None}
            if outcome == "expired":
                errors.append({**line, "error": dict(_EXPIRED)})
            elif outcome != "canceled":
                body = reply if code == 200 else json.loads(error_body(False, code, f"loopback error {code}"))
                line["response"] = {"status_code": code, "request_id": f"req_{n}", "body": body}
                (errors if code != 200 and self.split_errors else output).append(line)
        for kind, lines in (("output", output), ("error", errors)):
            meta = self._store(_jsonl(lines), f"{batch.id}_{kind}.jsonl", "batch_output") if lines else None
            batch.files[kind] = meta["id"] if meta else None

    # -- wire objects -----------------------------------------------------------------------------
    def _counts(self, batch: _Batch) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(("succeeded", "errored", "expired", "canceled"), 0)
        for _, outcome, _, _ in batch.results:
            counts[outcome] += 1
        return counts

    def _openai_batch(self, batch: _Batch, validating: bool = False) -> dict[str, Any]:
        counts, ended, created = self._counts(batch), batch.ended_at, batch.created
        if ended is None:
            status = "cancelling" if batch.cancel_at else "validating" if validating else "in_progress"
        else:
            status = "cancelled" if batch.cancel_at else "expired" if counts["expired"] else "completed"
        done = ended if status == "completed" else None
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.fields["endpoint"],
            "errors": None,
            "input_file_id": batch.fields["input_file_id"],
            "completion_window": batch.fields["completion_window"],
            "status": status,
            "output_file_id": batch.files.get("output"),
            "error_file_id": batch.files.get("error"),
            "created_at": int(created),
            "in_progress_at": None if validating else int(created),
            "expires_at": int(created) + _DAY,
            "finalizing_at": _int(done),
            "completed_at": _int(done),
            "failed_at": None,
            "expired_at": _int(ended) if status == "expired" else None,
            "cancelling_at": _int(batch.cancel_at),
            "cancelled_at": _int(ended) if status == "cancelled" else None,
            "request_counts": {
                "total": len(batch.requests),
                "completed": counts["succeeded"],
                "failed": counts["errored"] + counts["expired"],
            },
            "metadata": batch.fields.get("metadata"),
        }

    def _anthropic_batch(self, batch: _Batch) -> dict[str, Any]:
        counts, ended = self._counts(batch), batch.ended_at
        status = "ended" if ended is not None else "canceling" if batch.cancel_at else "in_progress"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {"processing": len(batch.requests) if ended is None else 0, **counts},
            "ended_at": _iso(ended),
            "created_at": _iso(batch.created),
            "expires_at": _iso(batch.created + _DAY),
            "cancel_initiated_at": _iso(batch.cancel_at),
            "archived_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    @staticmethod
    def _anthropic_result(result: tuple[str, str, int, Any]) -> dict[str, Any]:
        cid, outcome, code, message = result
        if outcome == "succeeded":
            return {"custom_id": cid, "result": {"type": outcome, "message": message}}
        if outcome == "errored":
            error = json.loads(error_body(True, code, f"loopback error {code}"))
            return {"custom_id": cid, "result": {"type": outcome, "error": error}}
        return {"custom_id": cid, "result": {"type": outcome}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback OpenAI/Anthropic wire-format server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.delay))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
