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
        reply: Callable[[dict[str, Any]], str] = echo_reply,
        logprobs: dict[str, float] | None = None,
        record: bool = True,
        billing: Billing | None = None,
        alternatives: Callable[[dict[str, Any], str, str], dict[str, float]] | None = None,
    ) -> None:
        self.delay_s, self.reply, self.record = delay_s, reply, record
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

    def logprobs_for(self, body: dict[str, Any]) -> dict[str, float]:
        """The next-token log-probabilities a logprobs request gets."""
        return self.logprobs

    def _openai(
        self, body: dict[str, Any], behaviour: Behaviour = Behaviour(), batched: bool = False
    ) -> dict[str, Any]:
        logprobs = None
        table = {" The": -0.3, " It": -1.2, " C": -2.0} if behaviour.foreign_logprobs else self.logprobs_for(body)
        if asks_next_token(body) and table:  # an empty table plays a server without logprobs
            top = sorted(table.items(), key=lambda kv: -kv[1])[: int(body.get("top_logprobs") or 0) or 1]
            entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
            logprobs = {"content": [{**entries[0], "top_logprobs": entries}], "refusal": None}
            text = top[0][0]
        else:
            text = self.reply(body)
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
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
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
        text = self.reply(body)
        usage: dict[str, Any] = {"input_tokens": _words(body), "output_tokens": max(1, len(text.split()))}
        if self.billing is not None and self.billing.wire == "anthropic":
            usage = self.billing.usage(body, text, batched)
        return {
            "id": f"msg_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
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
