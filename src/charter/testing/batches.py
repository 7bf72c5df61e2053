"""A loopback server that also speaks OpenAI's Files + Batches and Anthropic's Message Batches wire formats.

For tests: the real `openai` and `anthropic` SDKs submit batches to it over 127.0.0.1 and poll them.

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

import asyncio
import collections
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from charter.testing.loopback import Connection, LoopbackServer, Recorded, echo_reply, error_body

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
