"""The ASGI app of `charter serve reward`: OpenRLHF's `/get_reward`, the native `/v1/rewards`, NeMo Gym's `/verify`,
`/health` and `/metrics`, behind a bearer token, a body size cap and a bounded queue.

- OpenRLHF's remote reward protocol: each templated `query` split into its prompt and response.
- NeMo Gym's resource-server protocol, `POST /verify`: a request is NeMo Gym's verify request,
  `responses_create_params` (the OpenAI Responses request whose `input` is the prompt, a string or messages) and
  `response` (the policy's Responses object, whose `output` messages hold the reply as `output_text` parts); the
  answer is the request with `reward` added. With a group scoring the server compares a prompt's rollouts together,
  as NeMo Gym's `genrm_compare` does: requests are gathered by prompt (NeMo Gym's `_ng_task_index` when sent, else
  `prompt_id`, else the prompt itself) until `group_size` have arrived, judged as one group, and each is then answered
  with its own reward. A failed judgment is answered as NeMo Gym's own judge failsafe answers one: `_ng_failure_class:
  "judge_failed"` with the reason in `_ng_failure_judge_error`; `reward` is then `failed_reward` (null unless set).
- The server's counters in the Prometheus text format (requests, rewards, failures, judge calls, cost, latency).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from charter.errors import CharterError, ConfigError, DatasetError
from charter.records import RewardRecord, fingerprint
from charter.reward.combine import REWARD_MODEL, VERIFY, Outcome, RewardModel, combine
from charter.reward.function import JudgeReward
from charter.reward.session import check_batch
from charter.serve.config import ServeConfig
from charter.verify import check, verifier_name

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
        value = data.get(key)
        if value is None:
            return [None] * n if self.scorer.reward.entry.reads_checklists else None
        if not self.scorer.reward.entry.reads_checklists:
            raise ConfigError(f"{key}: the server's scoring is {self.config.scoring}, which reads no checklist")
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
        checklists = [checklist] * len(completions) if self.scorer.reward.entry.reads_checklists else None
        if checklist is not None and checklists is None:
            raise ConfigError(f"checklist: the server's scoring is {self.config.scoring}, which reads no checklist")
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


#: Latency histogram buckets, in seconds.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """What the server has done since it started."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.rewards = 0
        self.failures = 0
        self.rejected = 0
        self.buckets = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1

    def scored(self, scored: list[Any]) -> None:
        self.rewards += len(scored)
        self.failures += sum(s.reward is None for s in scored)

    def render(self, reward: JudgeReward, queued: int) -> str:
        lines = ["# TYPE charter_requests_total counter"]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'charter_requests_total{{path="{path}",status="{status}"}} {n}')
        lines += _counter("charter_rewards_total", self.rewards, "rewards answered, failures included")
        lines += _counter("charter_reward_failures_total", self.failures, "failed judgments (null rewards)")
        lines += _counter("charter_rejected_total", self.rejected, "requests answered 429 (queue full)")
        calls, cached, cost = _usage(reward)
        lines += _counter("charter_judge_calls_total", calls, "judge calls paid")
        lines += _counter("charter_cache_hits_total", cached, "judge calls answered by the call cache")
        lines += _counter("charter_cost_usd_total", cost, "judge cost in USD")
        lines += ["# TYPE charter_queued gauge", f"charter_queued {queued}"]
        lines.append("# TYPE charter_request_seconds histogram")
        for bound, n in zip(BUCKETS, self.buckets):
            lines.append(f'charter_request_seconds_bucket{{le="{bound}"}} {n}')
        lines.append(f'charter_request_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"charter_request_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"charter_request_seconds_count {self.latency_count}")
        return "\n".join(lines) + "\n"


def _counter(name: str, value: float, help_: str) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} counter", f"{name} {value:g}"]


def _usage(reward: JudgeReward) -> tuple[int, int, float]:
    tallies = list(reward.judge.meter.tallies.values())
    return sum(t.calls for t in tallies), sum(t.cached for t in tallies), sum(t.cost_usd for t in tallies)


#: Assistant headers of common chat templates (ChatML/Qwen, Llama 3, Zephyr/Phi, Gemma, Mistral), stripped from the
#: start of a response when the prompt did not end with them.
_HEADERS = re.compile(
    r"^\s*(<\|im_start\|>assistant\n|<\|start_header_id\|>assistant<\|end_header_id\|>\n*|<\|assistant\|>\n?"
    r"|<start_of_turn>model\n|\[/INST\]\s*)"
)
#: End-of-turn tokens a response may end with.
_ENDS = re.compile(r"(<\|im_end\|>|<\|eot_id\|>|<\|end\|>|<end_of_turn>|</s>|<\|endoftext\|>)\s*$")
#: The user turn of ChatML and Llama 3 prompts, for the judge to read the question without the template.
_USER = re.compile(
    r"(?:<\|im_start\|>user\n|<\|start_header_id\|>user<\|end_header_id\|>\n*)(.*?)(?:<\|im_end\|>|<\|eot_id\|>)", re.S
)


def response_of(query: str, prompt: str, index: int) -> str:
    """The response in `query`: what follows its prompt, less an assistant header and end-of-turn tokens."""
    if not query.startswith(prompt):
        raise ConfigError(f"query[{index}] does not start with prompts[{index}] (the query is prompt + response)")
    text = _HEADERS.sub("", query[len(prompt) :], count=1)
    while _ENDS.search(text):
        text = _ENDS.sub("", text)
    return text.strip()


def question_of(prompt: str) -> str:
    """The prompt as the judge reads it: the last user turn of a ChatML or Llama 3 template, else the prompt."""
    turns = _USER.findall(prompt)
    return turns[-1].strip() if turns else prompt


_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _text(content: Any) -> str:
    """A message's text: a string, or the text of its `input_text`/`output_text`/`text` parts (refusals too)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def prompt_of(data: dict[str, Any]) -> str | list[dict[str, str]]:
    """The prompt of a verify request: `responses_create_params.input` as text or `{role, content}` messages (a
    developer turn read as system, `instructions` as a leading system turn)."""
    params = data.get("responses_create_params")
    if not isinstance(params, dict) or "input" not in params:
        raise ConfigError("responses_create_params.input: expected the prompt (a string or a list of messages)")
    given = params["input"]
    messages = [{"role": "user", "content": given}] if isinstance(given, str) else []
    if not isinstance(given, str):
        if not isinstance(given, list):
            raise ConfigError("responses_create_params.input: expected a string or a list of messages")
        for i, item in enumerate(given):
            role = _ROLES.get(item.get("role", "")) if isinstance(item, dict) else None
            if role is None:
                raise ConfigError(f"responses_create_params.input[{i}]: expected a message with role and content")
            messages.append({"role": role, "content": _text(item.get("content"))})
    if isinstance(params.get("instructions"), str) and params["instructions"]:
        messages.insert(0, {"role": "system", "content": params["instructions"]})
    if not messages or messages[-1]["role"] != "user":
        raise ConfigError("responses_create_params.input: the prompt must end with a user message")
    return messages


def completion_of(data: dict[str, Any]) -> str:
    """The reply in `response.output`: the text of its assistant messages, in order."""
    response = data.get("response")
    output = response.get("output") if isinstance(response, dict) else None
    if not isinstance(output, list):
        raise ConfigError("response.output: expected the policy's Responses object with an output list")
    texts = [_text(item.get("content")) for item in output if isinstance(item, dict) and item.get("type") == "message"]
    return "\n".join(t for t in texts if t)


class NeMoGymVerify:
    """The `/verify` endpoint of a reward app, with the cohorts of group comparison."""

    def __init__(self, app: Any) -> None:  # the `RewardApp` it serves (app.py imports this module)
        self.app = app
        self.cohorts: dict[str, list[tuple[Any, str, str | None, asyncio.Future[Any]]]] = defaultdict(list)

    async def verify(self, request: Request) -> Response:
        data = await self.app._body(request)
        prompt, completion = prompt_of(data), completion_of(data)
        label = data.get("reference", data.get("expected_answer"))
        label = None if label is None or label == "" else str(label)
        if self.app.scorer.reward.entry.grouped:
            scored: Any = await self._in_cohort(data, prompt, completion, label)
        else:
            scored = await self.app._scored([prompt], [completion], [label])
            scored = scored if isinstance(scored, Response) else scored[0]
        return scored if isinstance(scored, Response) else JSONResponse(self._answer(data, scored))

    def _answer(self, data: dict[str, Any], s: Scored) -> dict[str, Any]:
        answer = {**data, "reward": s.reward, "charter": {"judge": s.judge, "verified": s.verified, "scores": s.scores}}
        if s.reward is None:
            answer["reward"] = self.app.config.failed_reward
            answer["_ng_failure_class"] = "judge_failed"
            answer["_ng_failure_judge_error"] = f"{(s.failure or {}).get('kind')}: {(s.failure or {}).get('message')}"
        return answer

    async def _in_cohort(self, data: dict[str, Any], prompt: Any, completion: str, label: str | None) -> Any:
        size = self.app.config.group_size
        if size is None:
            raise ConfigError(
                f"{self.app.config.scoring} scoring over /verify needs group_size (NeMo Gym's rollouts per prompt)"
            )
        key = fingerprint([data.get("_ng_task_index"), data.get("prompt_id"), json.dumps(prompt, sort_keys=True)])
        waiting: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        cohort = self.cohorts[key]
        cohort.append((prompt, completion, label, waiting))
        if len(cohort) >= size:
            del self.cohorts[key]
            await self._judge(cohort)
        return await waiting

    async def _judge(self, cohort: list[tuple[Any, str, str | None, asyncio.Future[Any]]]) -> None:
        """The cohort judged as one group; each waiting request gets its reward, or the answer that refused it."""
        try:
            scored = await self.app._scored([c[0] for c in cohort], [c[1] for c in cohort], [c[2] for c in cohort])
        except Exception as exc:  # noqa: BLE001 - every request of the cohort answers it
            for *_, waiting in cohort:
                waiting.set_exception(exc)
            return
        for i, (*_, waiting) in enumerate(cohort):
            waiting.set_result(scored if isinstance(scored, Response) else scored[i])


@dataclass
class Scored:
    """One completion's reward (None: the judgment failed, `failure` says why) and what it rests on."""

    reward: float | None
    judge: float | None
    verified: float | None
    reward_model: float | None
    scores: dict[str, float] | None
    failure: dict[str, str] | None
    checklist: dict[str, Any] | None = None
    """`checklist` scoring: the checklist's version and fingerprint, each item's verdict, the failed items and their
    share of the weight."""


class Scorer:
    """Scores batches with the reward function of `charter train grpo` in the server's event loop, and with the
    reward model (when configured) in a worker thread beside it."""

    def __init__(self, config: ServeConfig, reward: JudgeReward, model: RewardModel | None = None) -> None:
        self.config, self.reward, self.model = config, reward, model

    async def score(
        self,
        prompts: list[Any],
        completions: list[Any],
        labels: list[str | None],
        checklists: list[Any] | None = None,
    ) -> list[Scored]:
        """The rewards of a batch; `checklists`: each completion's checklist (`checklist` scoring; None: the
        constitution's criteria or the writer's)."""
        references = labels if self.reward.entry.reads_references else None
        judged = self.reward.rewards(prompts, completions, None, references, checklists)
        if self.model is None:
            records, rm = await judged, [None] * len(completions)
        else:
            records, rm = await asyncio.gather(judged, asyncio.to_thread(self.model.scores, prompts, completions))
        await self.reward.session.afinish(records, None)  # no failure limit: the server answers each failure
        return [self._one(*args) for args in zip(records, prompts, labels, rm)]

    def _one(self, record: RewardRecord, prompt: Any, label: str | None, rm: float | None) -> Scored:
        """The weighted sum TRL takes in training (`combine`): judge, verifier (where a check applies to the prompt)
        and reward model, each times its weight."""
        verified = self._verified(record.completion, prompt, label)
        failure = None if record.failure is None else {"kind": record.failure.kind, "message": record.failure.message}
        weights, parts = {"judge": self.config.judge_weight}, {"judge": Outcome.of(record)}
        if verified is not None and self.config.verify is not None:
            weights[VERIFY], parts[VERIFY] = self.config.verify.weight, Outcome(verified)
        if rm is not None:
            weights[REWARD_MODEL], parts[REWARD_MODEL] = self.config.reward_model_weight, Outcome(rm)
        reward = combine(weights, parts)
        checklist = None if record.checklist is None else record.checklist.model_dump(mode="json")
        return Scored(reward, record.reward, verified, rm, record.scores, failure, checklist)

    def _verified(self, text: str, prompt: Any, label: str | None) -> float | None:
        verify = self.config.verify
        if verify is None:
            return None
        name = verifier_name(None, label or None, verify.verifier)
        if name is None:
            return None
        asked = prompt if isinstance(prompt, str) else str(prompt[-1].get("content", ""))
        return float(check(text, name, label, asked))
