"""NeMo Gym's resource-server protocol on `charter serve reward`: `POST /verify`.

A request is NeMo Gym's verify request: `responses_create_params` (the OpenAI Responses request whose `input` is the
prompt, a string or messages) and `response` (the policy's Responses object, whose `output` messages hold the reply
as `output_text` parts). The answer is the request with `reward` added, as NeMo Gym's resource servers answer.

With `group` or `rank` scoring the server compares a prompt's rollouts together, as NeMo Gym's `genrm_compare` does:
requests are gathered by prompt (NeMo Gym's `_ng_task_index` when sent, else `prompt_id`, else the prompt itself)
until `group_size` have arrived, judged as one group, and each is then answered with its own reward.

A failed judgment is answered as NeMo Gym's own judge failsafe answers one: `_ng_failure_class: "judge_failed"` with
the reason in `_ng_failure_judge_error`, which NeMo Gym's rollout collection routes to its failures file (out of
training and metrics); `reward` is then `failed_reward` (null unless the config sets a number).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from charter.errors import ConfigError
from charter.records import fingerprint
from charter.serve.scorer import Scored

GROUP_SCORINGS = ("group", "rank")
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
        if self.app.config.scoring in GROUP_SCORINGS:
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
