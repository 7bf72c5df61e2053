"""Anthropic's Messages API through the official SDK. ANTHROPIC_API_KEY goes to api.anthropic.com and only
there; another `base_url` needs the variable holding its key named (`api_key_env`, charter.providers.endpoints).

System messages go into `system=`. The API gives no next-token probabilities, so
`choice_logprobs` raises `LogprobsUnsupported` (the judge's message then names the modes that read the
reply's text).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any

from charter.errors import MissingExtra
from charter.judge_prompt import shared_prefix
from charter.providers.base import Completion, Limits, MalformedReply, Messages, SamplingParams, SDKChatModel
from charter.providers.limits import Limiter, estimate_tokens, gather_or_cancel
from charter.records import ToolCall


def _sdk() -> Any:
    try:
        import anthropic
    except ImportError:
        raise MissingExtra("anthropic", "anthropic") from None
    return anthropic


def split_system(messages: Messages) -> tuple[str | None, list[dict[str, str]]]:
    """The system prompt (system and developer messages joined, in order) and the user/assistant turns: an
    assistant's tool calls written after its text, a tool result as a user turn that names the call it answers."""
    system = [m.content for m in messages if m.role in ("system", "developer")]
    turns = [
        {"role": _turn_role(m), "content": _turn_text(m)} for m in messages if m.role not in ("system", "developer")
    ]
    return ("\n\n".join(system) if system else None), turns


def _turn_role(message: Any) -> str:
    return "user" if message.role == "tool" else message.role


def _turn_text(message: Any) -> str:
    if message.role == "tool":
        return f"[result of tool call {message.tool_call_id} ({message.name or 'tool'})]\n{message.content}"
    calls = [
        f"[tool call {c.id}: {c.name} {json.dumps(c.arguments, ensure_ascii=False)}]" for c in message.tool_calls or ()
    ]
    return "\n".join(part for part in [message.content, *calls] if part) if calls else message.content


def anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool offered in OpenAI's function format, as Anthropic's API takes it: `{name, description, input_schema}`."""
    function = tool.get("function") or tool
    return {
        "name": function.get("name"),
        "description": function.get("description", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }


_EPHEMERAL = {"type": "ephemeral"}
#: The API takes at most four `cache_control` breakpoints a request.
MAX_BREAKPOINTS = 4
_CONVERSATION_END = re.compile(r"</conversation-\w+>")


def with_breakpoints(system: str | None, turns: list[dict[str, Any]]) -> dict[str, Any]:
    """`system` and `messages` with `cache_control` breakpoints at the end of the parts that calls share: the
    system prompt, the first turn and the conversation before the last turn (a critique chain's steps), and in the
    last turn the fenced conversation and the shared prefix (a judge prompt up to the principle's question, which
    both orders of a pair share up to the conversation). Anthropic caches only up to a breakpoint; the last four
    are kept (the API allows four)."""
    out: dict[str, Any] = {}
    marks: list[dict[str, Any]] = []
    if system:
        out["system"] = [{"type": "text", "text": system}]
        marks.append(out["system"][0])
    blocks = [{**turn, "content": [{"type": "text", "text": turn["content"]}]} for turn in turns]
    marks += [blocks[i]["content"][-1] for i in sorted({0, len(blocks) - 2}) if 0 <= i < len(blocks) - 1]
    if blocks:
        last = turns[-1]["content"]
        shared = shared_prefix(last)
        cuts = [m.end() for m in _CONVERSATION_END.finditer(shared)][:1]
        cuts = [c for c in [*cuts, len(shared)] if 0 < c < len(last)]
        if cuts:
            pieces = [last[start:end] for start, end in zip([0, *cuts], [*cuts, len(last)])]
            blocks[-1]["content"] = [{"type": "text", "text": piece} for piece in pieces]
            marks += blocks[-1]["content"][:-1]
    for block in marks[-MAX_BREAKPOINTS:]:
        block["cache_control"] = _EPHEMERAL
    out["messages"] = blocks
    return out


class AnthropicModel(SDKChatModel):
    """A Claude model.

    Options: `base_url` (default: ANTHROPIC_BASE_URL, else Anthropic's API; any other host needs `api_key_env`);
    `extra_body` (merged into each request); `sampling_params` (send temperature and top_p, which the current SDK no
    longer exposes as arguments, through the request body; off by default: newer models reject them);
    `structured_output` (default true: a call whose params carry a `json_schema` asks for it as
    `output_config.format`; false for servers that reject that); `prompt_cache` (default true: `cache_control`
    breakpoints at the end of the shared parts, see `with_breakpoints`; false sends none).
    """

    provider = "anthropic"
    supports_logprobs = False

    def __init__(self, name: str, limits: Limits | None = None, api_key_env: str | None = None, **options: Any) -> None:
        super().__init__(name)
        self.limits = limits or Limits()
        self.extra_body: dict[str, Any] = dict(options.get("extra_body") or {})
        self.sampling_params = bool(options.get("sampling_params", False))
        self.structured_output = bool(options.get("structured_output", True))
        self.prompt_cache = bool(options.get("prompt_cache", True))
        self._sdk = _sdk()
        key = self.serve_at(options.get("base_url"), api_key_env)
        self.limiter = Limiter(self.limits, self.model_id, transient=(self._sdk.APIConnectionError,), secrets=[key])

    def new_client(self) -> Any:
        # An explicit key: the SDK then reads no credential of its own (ANTHROPIC_AUTH_TOKEN, a profile) for this host.
        return self._sdk.AsyncAnthropic(
            api_key=self._key, base_url=self.base_url, max_retries=0, timeout=self.limits.timeout_s
        )

    def _request(self, messages: Messages, params: SamplingParams) -> dict[str, Any]:
        system, turns = split_system(messages)
        kwargs: dict[str, Any] = {"model": self.name, "messages": turns, "max_tokens": params.max_tokens}
        if system is not None:
            kwargs["system"] = system
        if self.prompt_cache:
            kwargs.update(with_breakpoints(kwargs.get("system"), turns))
        if params.stop:
            kwargs["stop_sequences"] = list(params.stop)
        if params.json_schema is not None and self.structured_output:
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": params.json_schema}}
        if params.tools:
            kwargs["tools"] = [anthropic_tool(t) for t in params.tools]
        body = dict(self.extra_body)
        if self.sampling_params:
            body["temperature"] = params.temperature
            if params.top_p < 1.0:
                body["top_p"] = params.top_p
        if body:
            kwargs["extra_body"] = body
        return kwargs

    async def generate(self, requests: Sequence[Messages], params: SamplingParams) -> list[Completion]:
        if len(requests) == 1:
            return [await self._complete(requests[0], params)]
        return await gather_or_cancel([self._complete(r, params) for r in requests])

    async def _complete(self, messages: Messages, params: SamplingParams) -> Completion:
        create = self.client().messages.create
        kwargs = self._request(messages, params)

        async def attempt() -> Completion:  # checked inside the retried attempt: an empty reply is retried too
            return self.completion_from(await create(**kwargs))

        return await self.limiter.call(
            attempt, estimate_tokens(messages, params.max_tokens), lambda c: c.prompt_tokens + c.completion_tokens
        )

    def completion_from(self, reply: Any) -> Completion:
        """A completion from a Message (a synchronous reply, or a batch's succeeded result)."""
        text = "".join(block.text for block in reply.content if getattr(block, "type", None) == "text")
        calls = [
            ToolCall(id=block.id, name=block.name, arguments=dict(block.input or {}))
            for block in reply.content
            if getattr(block, "type", None) == "tool_use"
        ]
        if not (text.strip() or calls):
            raise MalformedReply("the reply has no text", kind="empty_reply", raw=str(reply)[:400])
        usage = reply.usage  # input_tokens excludes the cache's reads and writes: all three are billed input
        read = int(getattr(usage, "cache_read_input_tokens", None) or 0)
        written = int(getattr(usage, "cache_creation_input_tokens", None) or 0)
        return Completion(
            text=text,
            model=self.model_id,
            prompt_tokens=usage.input_tokens + read + written,
            completion_tokens=usage.output_tokens,
            finish_reason=reply.stop_reason,
            cache_read_tokens=read,
            cache_write_tokens=written,
            tool_calls=calls or None,
        )

    def batch_body(self, messages: Messages, params: SamplingParams) -> dict[str, Any]:
        """One request's `params` in a Message Batch: the request as sent synchronously, extra_body merged in."""
        kwargs = self._request(messages, params)
        return {**{k: v for k, v in kwargs.items() if k != "extra_body"}, **kwargs.get("extra_body", {})}

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()
