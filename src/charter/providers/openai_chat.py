"""OpenAI and OpenAI-compatible servers (vLLM, llama.cpp server, TGI) through the official SDK.

`openai:<model>` sends OPENAI_API_KEY to api.openai.com and only there; `openai-compatible:<model>@<base_url>`
sends the key in the variable its role names (`api_key_env`), else a placeholder (local servers want none). See
charter.providers.endpoints. Every request runs through the model's `Limiter`; the SDK's own retries are off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Awaitable, Sequence
from typing import Any

from charter.errors import LogprobsUnsupported, MissingExtra
from charter.judge_prompt import shared_prefix
from charter.providers.base import (
    ChoiceProbs,
    Completion,
    Limits,
    MalformedReply,
    Messages,
    SamplingParams,
    SDKChatModel,
    TokenAlternative,
    TokenLogprob,
    bill_unusable,
    normalise,
)
from charter.providers.limits import Limiter, estimate_tokens, gather_or_cancel
from charter.records import ToolCall, as_dicts

TOP_LOGPROBS = 20


def _sdk() -> Any:
    try:
        import openai
    except ImportError:
        raise MissingExtra("openai", "openai") from None
    return openai


def option_token(token: str) -> str:
    """A next token as an option label: " A", "(A" and "A)" all count as "A"."""
    return token.strip().strip("()").strip()


class OpenAIModel(SDKChatModel):
    """A chat model behind OpenAI's chat completions API.

    Options: `base_url` (`openai:` only; default OPENAI_BASE_URL, else OpenAI's API: any other host needs
    `api_key_env`); `extra_body` (merged into each request); `structured_output` (default true: a call whose
    params carry a `json_schema` asks for it as `response_format`; false for servers that reject that);
    `prompt_cache` (default true: `openai:` requests carry a `prompt_cache_key`, a hash of their shared prefix,
    so that calls sharing it are routed to the same cache); `token_logprobs` (default true: a call whose params
    carry `top_logprobs` asks for each token's log-probabilities; false for models and servers that reject
    `logprobs` on a generation)."""

    provider = "openai"
    supports_logprobs = True

    def __init__(
        self,
        name: str,
        limits: Limits | None = None,
        base_url: str | None = None,
        compatible: bool = False,
        api_key_env: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name)
        if compatible:
            self.provider = "openai-compatible"  # type: ignore[misc]
        self.compatible = compatible
        self.limits = limits or Limits()
        self.extra_body: dict[str, Any] = dict(options.get("extra_body") or {})
        self.structured_output = bool(options.get("structured_output", True))
        self.prompt_cache = bool(options.get("prompt_cache", True))
        self.gives_token_logprobs = bool(options.get("token_logprobs", True))
        self._sdk = _sdk()
        key = self.serve_at(base_url, api_key_env)
        self.limiter = Limiter(self.limits, self.model_id, transient=(self._sdk.APIConnectionError,), secrets=[key])

    def new_client(self) -> Any:
        client = self._sdk.AsyncOpenAI(
            api_key=self._key, base_url=self.base_url, max_retries=0, timeout=self.limits.timeout_s
        )
        if self.endpoint is None or not self.endpoint.official:  # OpenAI's organization, project, admin key: not here
            client.organization = client.project = client.admin_api_key = None
        return client

    def _length_cap(self, max_tokens: int) -> dict[str, int]:
        # OpenAI's newer models take only max_completion_tokens; many compatible servers only max_tokens.
        return {"max_tokens" if self.compatible else "max_completion_tokens": max_tokens}

    def _request(self, messages: Messages, params: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": as_dicts(messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            **self._length_cap(params.max_tokens),
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.json_schema is not None and self.structured_output:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": params.json_schema, "strict": True},
            }
        if params.top_logprobs is not None and self.gives_token_logprobs:
            kwargs |= {"logprobs": True, "top_logprobs": params.top_logprobs}
        if params.tools:
            kwargs["tools"] = params.tools
        return {**kwargs, **self._cache_key(messages), **self.extra_body}

    def _cache_key(self, messages: Messages) -> dict[str, str]:
        """`prompt_cache_key` for OpenAI's API (not sent to compatible servers, nor with `prompt_cache: false`)."""
        return {"prompt_cache_key": prompt_cache_key(messages)} if self.prompt_cache and not self.compatible else {}

    #: `_request` under the name the batch runner uses for every backend: one chat request's body.
    batch_body = _request

    def _post(self, body: dict[str, Any]) -> Awaitable[Any]:
        """POST /chat/completions through the SDK's client (auth, base URL, typed errors, timeouts), with
        the body as we built it. `chat.completions.create` would first walk every message through the
        SDK's TypedDict transform: ~90 recursive calls a request, most of the SDK's client CPU for
        multi-turn critique prompts, and throughput where the client CPU is the limit."""
        return self.client().post("/chat/completions", body=body, cast_to=_response_class())

    async def generate(self, requests: Sequence[Messages], params: SamplingParams) -> list[Completion]:
        if len(requests) == 1:
            return [await self._complete(requests[0], params)]
        return await gather_or_cancel([self._complete(r, params) for r in requests])

    async def _complete(self, messages: Messages, params: SamplingParams) -> Completion:
        body = self._request(messages, params)

        async def attempt() -> Completion:  # parsed inside the retried attempt: a bad reply is retried too
            return self.completion_from(await _json(self._post(body)), messages)

        return await self.limiter.call(
            attempt, estimate_tokens(messages, params.max_tokens), lambda c: c.prompt_tokens + c.completion_tokens
        )

    def completion_from(self, reply: dict[str, Any], messages: Messages) -> Completion:
        """A completion from a chat completion reply (synchronous, or one line of a batch's output)."""
        choice = _first_choice(reply)
        message = choice.get("message") or {}
        text, calls = message.get("content"), _tool_calls(message, reply)
        if calls and text is None:
            text = ""  # a turn that only calls tools
        if not isinstance(text, str) or not (text.strip() or calls):
            _bill(reply)
            raise MalformedReply(
                "the reply has no text (no choices, or empty content)", kind="empty_reply", raw=json.dumps(reply)[:400]
            )
        prompt_tokens, completion_tokens, estimated = _usage(reply, messages, text or "x")
        return Completion(
            text=text,
            model=self.model_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=choice.get("finish_reason"),
            usage_estimated=estimated,
            cache_read_tokens=_cached_tokens(reply),
            token_logprobs=_token_logprobs(choice),
            tool_calls=calls,
        )

    def choice_request(self, request: Messages) -> dict[str, Any]:
        """The body of a next-token log-probabilities request: one token, the top 20 alternatives."""
        return {
            "model": self.name,
            "messages": as_dicts(request),
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
            **self._length_cap(1),
            **self._cache_key(request),
            **self.extra_body,
        }

    async def choice_logprobs(self, request: Messages, options: Sequence[str]) -> ChoiceProbs:
        body = self.choice_request(request)

        async def attempt() -> ChoiceProbs:
            return self.choice_from(await _json(self._post(body)), request, options)

        return await self.limiter.call(attempt, estimate_tokens(request, 1), lambda c: c.prompt_tokens + 1)

    def choice_from(self, reply: dict[str, Any], request: Messages, options: Sequence[str]) -> ChoiceProbs:
        """The options' probabilities from a log-probabilities reply (synchronous, or from a batch)."""
        try:
            raw = self._option_logprobs(reply, options)
        except MalformedReply:
            _bill(reply)
            raise
        prompt_tokens, _, estimated = _usage(reply, request, "x")
        return ChoiceProbs(
            normalise(raw, options),
            self.model_id,
            prompt_tokens,
            raw,
            usage_estimated=estimated,
            cache_read_tokens=_cached_tokens(reply),
        )

    def _option_logprobs(self, reply: dict[str, Any], options: Sequence[str]) -> dict[str, float]:
        """Log-probabilities of the options among the first token's top alternatives.

        Tokens that name the same option (" A", "A", "(A") are pooled: their probabilities add. A reply
        without choices is malformed; one whose top tokens name no option says nothing either way.
        """
        if not reply.get("choices"):
            raise MalformedReply("the reply has no choices", kind="empty_reply", raw=json.dumps(reply)[:400])
        content = (_first_choice(reply).get("logprobs") or {}).get("content")
        if not content:
            raise LogprobsUnsupported(f"{self.model_id} returned no logprobs for the next token")
        first = content[0]
        wanted = set(options)
        pooled: dict[str, float] = {}
        alternatives = first.get("top_logprobs") or [first]
        for alt in alternatives:
            label, logprob = option_token(alt["token"]), float(alt["logprob"])
            if label in wanted:
                pooled[label] = _logaddexp(pooled[label], logprob) if label in pooled else logprob
        if not pooled:
            seen = ", ".join(repr(alt.get("token")) for alt in alternatives[:10])
            raise MalformedReply(
                f"the next-token log-probabilities name none of {', '.join(options)}",
                kind="no_option_logprobs",
                raw=f"top tokens: {seen}",
            )
        return pooled

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()


async def _json(raw_call: Awaitable[Any]) -> dict[str, Any]:
    """The reply's JSON. We read the few fields we need from the raw response instead of letting
    the SDK build its pydantic models: that is ~8% of the SDK's CPU per request, and where the client
    CPU is the limit (short replies, high concurrency) it is throughput. Errors are raised as usual; a body
    that is not a JSON object (cut short, a proxy's HTML page) is a malformed reply, retried."""
    raw = await raw_call
    try:
        reply = json.loads(raw.content)
    except ValueError:
        text = raw.content[:200].decode("utf-8", "replace")
        raise MalformedReply("the reply is not JSON (is the base URL an OpenAI-compatible /v1?)", raw=text) from None
    if not isinstance(reply, dict):
        raise MalformedReply("the reply is not a JSON object", raw=str(reply)[:200])
    return reply


def _tool_calls(message: dict[str, Any], reply: dict[str, Any]) -> list[ToolCall] | None:
    """The tool calls of a reply's message (`tool_calls`, each `{id, type: function, function: {name, arguments}}`
    with its arguments as JSON text); None where it calls none. A call whose arguments are not a JSON object is a
    malformed reply (retried, then the item's failure), never a call with made-up arguments."""
    given = message.get("tool_calls")
    if not given:
        return None
    try:
        calls = [ToolCall.model_validate(call) for call in given]
    except (ValueError, TypeError) as exc:
        _bill(reply)
        reason = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        raise MalformedReply(
            f"the reply's tool calls cannot be read: {reason}", kind="bad_tool_call", raw=json.dumps(given)[:400]
        ) from None
    return calls


def _token_logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    """The generated tokens' log-probabilities in a choice (`logprobs.content`), each with its top alternatives;
    None where the reply carries none, or carries them in another shape (never a made-up entry)."""
    content = (choice.get("logprobs") or {}).get("content")
    if not isinstance(content, list) or not content:
        return None
    tokens: list[TokenLogprob] = []
    for entry in content:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None
        try:
            top = [_alternative(alt) for alt in entry.get("top_logprobs") or []]
            tokens.append({**_alternative(entry), "top_logprobs": top})  # type: ignore[typeddict-item]
        except (KeyError, TypeError, ValueError):
            return None
    return tokens


def _alternative(entry: dict[str, Any]) -> TokenAlternative:
    """One token as kept: its bytes only where its text does not spell them (part of a character), so that a reply's
    cache row stays small."""
    token, raw = str(entry["token"]), entry.get("bytes")
    kept = raw if isinstance(raw, list) and raw and bytes(raw) != token.encode() else None
    return {"token": token, "logprob": float(entry["logprob"]), "bytes": kept}


def _bill(reply: dict[str, Any]) -> None:
    """A reply we cannot use is still one the provider answered: count its usage where it has one."""
    usage = reply.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        bill_unusable(usage["prompt_tokens"], int(usage.get("completion_tokens") or 0))


def _usage(reply: dict[str, Any], messages: Messages, text: str) -> tuple[int, int, bool]:
    """(prompt tokens, completion tokens, estimated): the reply's usage, or an estimate from characters when it
    carries none (counted as estimated, never as zero)."""
    usage = reply.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return usage["prompt_tokens"], int(usage.get("completion_tokens") or 0), False
    return estimate_tokens(messages, 0), max(1, len(text) // 4), True


def _cached_tokens(reply: dict[str, Any]) -> int:
    """The prompt tokens the server read from its prompt cache (`usage.prompt_tokens_details.cached_tokens`:
    OpenAI, vLLM, SGLang); 0 where the reply does not say."""
    details = (reply.get("usage") or {}).get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) and cached > 0 else 0


def prompt_cache_key(messages: Messages) -> str:
    """A routing key for OpenAI's prompt cache: a hash of the request's shared part (every message before the
    last, and the last one's shared prefix: a judge prompt up to the principle's question)."""
    head = [f"{m.role}\x00{m.content}" for m in messages[:-1]]
    last = messages[-1].content if messages else ""
    shared = shared_prefix(last)
    if shared != last or not head:
        head.append(f"{messages[-1].role}\x00{shared}" if messages else "")
    return "charter-" + hashlib.sha256("\x01".join(head).encode()).hexdigest()[:32]


def _response_class() -> type:
    """The raw response class of the HTTP library the installed SDK uses (httpx2 or httpx)."""
    try:
        import httpx2 as http
    except ImportError:  # older SDKs use httpx
        import httpx as http  # type: ignore[no-redef]
    return http.Response


def _first_choice(reply: dict[str, Any]) -> dict[str, Any]:
    choices = reply.get("choices") or [{}]
    return choices[0] or {}


def _logaddexp(a: float, b: float) -> float:
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))
