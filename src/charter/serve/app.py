"""The ASGI app of `charter serve reward`: OpenRLHF's `/get_reward`, the native `/v1/rewards`, NeMo Gym's `/verify`,
`/health` and `/metrics`, behind a bearer token, a body size cap and a bounded queue."""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from charter.errors import CharterError, ConfigError, DatasetError
from charter.online.inputs import check_batch
from charter.online.scorings import scoring_entry
from charter.serve.metrics import Metrics
from charter.serve.nemo_gym import NeMoGymVerify
from charter.serve.openrlhf import question_of, response_of
from charter.serve.scorer import Scored, Scorer

log = logging.getLogger("charter.serve")
Handler = Callable[[Request], Awaitable[Response]]


class _TooLarge(Exception):
    pass


class RewardApp:
    """The server's state: the scorer, the token, the queue's fill and the metrics."""

    def __init__(self, scorer: Scorer, token: str) -> None:
        self.scorer, self.token = scorer, token
        self.config = scorer.config
        self.pending = 0
        self.metrics = Metrics()

    def asgi(self) -> Starlette:
        routes = [
            Route("/health", self._logged(self.health, auth=False), methods=["GET"]),
            Route("/metrics", self._logged(self.prometheus), methods=["GET"]),
            Route("/get_reward", self._logged(self.get_reward), methods=["POST"]),
            Route("/v1/rewards", self._logged(self.native), methods=["POST"]),
            Route("/verify", self._logged(NeMoGymVerify(self).verify), methods=["POST"]),  # NeMo Gym's protocol
        ]
        return Starlette(routes=routes)

    # -- the wrapper every endpoint goes through -------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            given = header[7:].strip()
        else:  # the query string is parsed only for a client that puts the token there
            given = request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _logged(self, handler: Handler, auth: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            path = request.scope["path"]  # read as is (no URL built); never the query string: it may hold the token
            if auth and not self._authorised(request):
                response: Response = _error(401, "a valid token is required (Authorization: Bearer or ?token=)")
            else:
                try:
                    response = await handler(request)
                except _TooLarge:
                    response = _error(413, f"the body is over {self.config.max_body_bytes} bytes")
                except (ConfigError, DatasetError) as exc:  # a bad request (a bad checklist included)
                    response = _error(400, str(exc))
                except CharterError as exc:  # a reached budget, a fatal provider error
                    log.error("%s %s: %s", request.method, path, exc)
                    response = _error(503, str(exc))
                except Exception:  # a bug: its traceback in the log, and counted like every other answer
                    log.exception("%s %s failed", request.method, path)
                    response = _error(500, "internal error (the server's log has the traceback)")
            elapsed = time.perf_counter() - start
            self.metrics.request(path, response.status_code, elapsed)
            log.info("%s %s %d %.1fms", request.method, path, response.status_code, elapsed * 1000)
            return response

        return endpoint

    async def _body(self, request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.config.max_body_bytes:
            raise _TooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.config.max_body_bytes:
                raise _TooLarge
        data = _json(bytes(body))
        if not isinstance(data, dict):
            raise ConfigError("the body must be a JSON object")
        return data

    async def _scored(
        self, prompts: list[Any], completions: list[Any], labels: list[str | None], checklists: list[Any] | None = None
    ) -> Any:
        """The batch's rewards, or a 413 response when the queue can never take it, 429 when it cannot take it now."""
        n = len(completions)
        if n > self.config.max_queue:  # waiting would not help: no retry can fit it
            return _error(413, f"{n} completions in one request, over max_queue {self.config.max_queue}")
        if self.pending + n > self.config.max_queue:
            self.metrics.rejected += 1
            return _error(429, f"{self.pending} completions are queued (max_queue {self.config.max_queue})", retry=1)
        self.pending += n
        try:
            scored = await self.scorer.score(prompts, completions, labels, checklists)
        finally:
            self.pending -= n
        self.metrics.scored(scored)
        return scored

    # -- endpoints -------------------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "scoring": self.config.scoring, "queued": self.pending})

    async def prometheus(self, request: Request) -> Response:
        text = self.metrics.render(self.scorer.reward, self.pending)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def get_reward(self, request: Request) -> Response:
        data = await self._body(request)
        queries, prompts = _strings(data, "query"), _strings(data, "prompts")
        if len(queries) != len(prompts):
            raise ConfigError(f"{len(queries)} queries but {len(prompts)} prompts")
        labels = data.get("labels") or [None] * len(queries)
        if not isinstance(labels, list) or len(labels) != len(queries):
            raise ConfigError(f"labels: expected a list of {len(queries)} (one per query)")
        completions = [response_of(q, p, i) for i, (q, p) in enumerate(zip(queries, prompts))]
        questions = [question_of(p) for p in prompts]
        refs = [None if x is None or x == "" else str(x) for x in labels]
        checklists = self._checklists(data, "checklists", len(queries))
        scored = await self._scored(questions, completions, refs, checklists)
        if isinstance(scored, Response):
            return scored
        filler = self.config.failed_reward
        rewards = [s.reward if s.reward is not None else filler for s in scored]
        logs: dict[str, list[float]] = {"judge_failed": [float(s.reward is None) for s in scored]}
        if self.config.verify is not None:
            logs["verified"] = [s.verified if s.verified is not None else 0.0 for s in scored]
        if self.config.reward_model:
            logs["reward_model"] = [s.reward_model if s.reward_model is not None else 0.0 for s in scored]
        return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": logs})

    def _checklists(self, data: dict[str, Any], key: str, n: int) -> list[Any] | None:
        """A request's checklists, one per completion (`checklist` scoring), or None."""
        value, reads = data.get(key), scoring_entry(self.config.scoring).reads_checklists
        if value is None:
            return [None] * n if reads else None
        if not reads:
            raise ConfigError(f"{key}: the server's scoring is {self.config.scoring}, not checklist")
        if not isinstance(value, list) or len(value) != n:
            raise ConfigError(f"{key}: expected a list of {n} (one checklist, or null, per query)")
        return value

    async def native(self, request: Request) -> Response:
        data = await self._body(request)
        prompt, completions = data.get("prompt"), data.get("completions")
        if not isinstance(completions, list) or not completions:
            raise ConfigError("completions: expected a non-empty list (strings or lists of {role, content})")
        prompts = [prompt] * len(completions)
        reference = data.get("reference")
        check_batch(prompts, completions, None if reference is None else [reference] * len(completions))
        refs = [None if reference is None else str(reference)] * len(completions)
        checklist = data.get("checklist")
        checklists = None if self.config.scoring != "checklist" else [checklist] * len(completions)
        if checklist is not None and checklists is None:
            raise ConfigError(f"checklist: the server's scoring is {self.config.scoring}, not checklist")
        scored = await self._scored(prompts, completions, refs, checklists)
        if isinstance(scored, Response):
            return scored
        return JSONResponse({"rewards": [s.reward for s in scored], "results": [_native(s) for s in scored]})


def _json(body: bytes) -> Any:
    """The body parsed; anything the parser cannot take (not JSON, too deep, not UTF-8, a lone surrogate, a number of
    thousands of digits) is a `ConfigError`."""
    try:
        data = json.loads(body, parse_constant=_not_finite, parse_float=_finite)
        json.dumps(data, ensure_ascii=False).encode()  # a lone surrogate (\ud800) parses but is not text
    except RecursionError:
        raise ConfigError("the body is not JSON charter can read: nested too deep") from None
    except UnicodeDecodeError:
        raise ConfigError("the body is not JSON charter can read: it is not UTF-8") from None
    except UnicodeEncodeError:
        raise ConfigError("the body is not JSON charter can read: a string is not valid Unicode") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the body is not JSON ({exc})") from None
    except _NotFinite as exc:
        raise ConfigError(f"the body holds {exc}, which is not a finite number (nor JSON)") from None
    except ValueError:  # Python's cap on an integer's digits
        raise ConfigError("the body is not JSON charter can read: a number has too many digits") from None
    return data


class _NotFinite(ValueError):
    pass


def _not_finite(text: str) -> float:
    raise _NotFinite(text)


def _finite(text: str) -> float:
    """A JSON number that is finite as a float (`1e400` is not)."""
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _native(s: Scored) -> dict[str, Any]:
    return dict(vars(s))  # its fields by name, in order (`asdict` would deep-copy what is only serialised)


def _strings(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings")
    return value


def _error(status: int, message: str, retry: int | None = None) -> Response:
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
