"""The one provider interface: async `generate` for a batch of chat requests, and
`choice_logprobs` where the backend can give next-token probabilities."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from charter.errors import LogprobsUnsupported
from charter.interrupt import StopRequest
from charter.providers.endpoints import Endpoint, resolve_endpoint, served_id
from charter.records import Message, ToolCall
from charter.yamlio import ConfigModel

#: A chat request: a list of `Message` records (the SDK backends turn them into their wire format).
Messages = list[Message]


class SamplingParams(ConfigModel):
    """How to sample. Part of the cache key: change one and the call is made anew."""

    model_config = ConfigDict(frozen=True)
    temperature: float = Field(default=0.7, ge=0)
    """Sampling temperature; 0 means greedy."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass."""
    max_tokens: int = Field(default=256, gt=0)
    """Most tokens to generate per completion."""
    seed: int | None = None
    """Sampling seed, where the backend honours one; also tells k samples of one prompt apart."""
    stop: tuple[str, ...] = ()
    """Strings that end generation."""
    json_schema: dict[str, Any] | None = None
    """A JSON Schema the reply must follow, sent as structured output where the provider has it (OpenAI's
    `response_format` with `strict`, Anthropic's `output_config.format`; a model's `structured_output: false` option
    turns it off for servers that reject it). Local and scripted models are not constrained: a reply is parsed
    and checked either way. The root must be an object (OpenAI's strict mode), closed with
    `additionalProperties: false`."""
    top_logprobs: int | None = Field(default=None, ge=1, le=20)
    """Ask for each generated token's log-probability and this many top alternatives, where the provider gives them
    (`ChatModel.gives_token_logprobs`: OpenAI's `logprobs`/`top_logprobs`, and local models from their logits); the
    others ignore it. Unset: none asked."""
    tools: list[dict[str, Any]] | None = None
    """The tools offered to the model, as JSON schemas in OpenAI's function format (`{type: function, function:
    {name, description, parameters}}`): sent as OpenAI's `tools` and Anthropic's, so that a reply may call them
    (`Completion.tool_calls`). A scripted model's script sees them here; local models are offered none. Unset: no
    tools offered."""

    @field_validator("json_schema")
    @classmethod
    def _object_root(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None and schema.get("type") != "object":
            raise ValueError("the root of a json_schema must be an object (`type: object`)")
        return schema

    @model_serializer(mode="wrap")
    def _unset_schema_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Left out when unset, so that cache keys and run fingerprints from before the fields stay the same.
        data = handler(self)
        for later in ("json_schema", "top_logprobs", "tools"):
            if data.get(later) is None:
                data.pop(later, None)
        return data


class Limits(ConfigModel):
    """Rate limits, retries and timeouts for one model; shared by all remote providers, and applied to a `scripted:`
    model where its role sets any (concurrency, requests and tokens per minute, retries)."""

    concurrency: int = Field(default=16, gt=0)
    """Requests in flight at once."""
    requests_per_minute: float | None = Field(default=None, gt=0)
    """Token-bucket cap on requests per minute (None: no cap)."""
    tokens_per_minute: float | None = Field(default=None, gt=0)
    """Token-bucket cap on prompt+completion tokens per minute (None: no cap)."""
    max_retries: int = Field(default=6, ge=0)
    """Retries for 429, 5xx, timeouts and dropped connections; 400/401/403 are never retried."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Per-request timeout in seconds."""
    backoff_initial_s: float = Field(default=1.0, ge=0)
    """First backoff wait; doubles each retry, with jitter, up to `backoff_max_s`."""
    backoff_max_s: float = Field(default=60.0, ge=0)
    """Longest wait between retries (a Retry-After header is honoured up to this)."""


#: Set by the managed model around each backend call: how to count a reply the provider answered (and bills)
#: but that cannot be used, e.g. `choices: []` with usage. Backends call `bill_unusable` for such replies.
UNUSABLE_USAGE: ContextVar[Callable[[int, int], None] | None] = ContextVar("unusable_usage", default=None)


def bill_unusable(prompt_tokens: int, completion_tokens: int) -> None:
    """Count an answered but unusable reply's tokens against the caller's usage and budget."""
    record = UNUSABLE_USAGE.get()
    if record is not None:
        record(prompt_tokens, completion_tokens)


#: Set by the managed model around each backend call: how to count a request that is sent again (a retry), so that
#: retries are counted per role. The limiter calls `count_retry` before each retry's wait.
RETRIED: ContextVar[Callable[[], None] | None] = ContextVar("retried", default=None)


def count_retry() -> None:
    """Count one retry against the caller's role (nothing outside a managed model's call)."""
    record = RETRIED.get()
    if record is not None:
        record()


class MalformedReply(Exception):
    """A reply that cannot be used: not JSON, cut short, no choices, empty text, or next-token log-probabilities
    naming none of the options. Transient: retried like a 5xx and never cached; once the retries are spent,
    the one item that asked fails (a `ProviderError` of this `kind`), with `raw` kept for the record."""

    def __init__(self, message: str, kind: str = "malformed", raw: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.raw = kind, raw


class TokenAlternative(TypedDict):
    """One of a generated token's top alternatives (OpenAI's `top_logprobs` entry)."""

    token: str
    logprob: float
    bytes: list[int] | None
    """The token's bytes where its text does not spell them (part of a character), else None."""


class TokenLogprob(TokenAlternative):
    """One generated token, its log-probability and its top alternatives (OpenAI's `logprobs.content` entry)."""

    top_logprobs: list[TokenAlternative]


def token_bytes(token: TokenAlternative) -> bytes:
    """A token's bytes: those it keeps, else its text's."""
    raw = token.get("bytes")
    return bytes(raw) if raw else token["token"].encode()


@dataclass
class Completion:
    """One generated completion and what it cost."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    usage_estimated: bool = False
    """The reply carried no usage: the token counts are estimated from characters (and counted as such)."""
    batched: bool = False
    """Answered through the provider's batch API (priced at its batch rate)."""
    cache_read_tokens: int = 0
    """Of the prompt tokens, those the provider read from its prompt cache."""
    cache_write_tokens: int = 0
    """Of the prompt tokens, those the provider wrote to its prompt cache."""
    token_logprobs: list[TokenLogprob] | None = None
    """Each generated token with its log-probability and top alternatives, as OpenAI's wire format gives them
    (`logprobs.content`), where the params asked (`top_logprobs`) and the provider gave them; None otherwise."""
    tool_calls: list[ToolCall] | None = None
    """The tools the reply calls, in order, where the params offered some (`SamplingParams.tools`) and the model
    called them (its `text` may then be empty); None otherwise."""

    @property
    def answered(self) -> bool:
        """Whether the reply says or does something: a text, or a tool call."""
        return bool(self.text.strip() or self.tool_calls)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChoiceProbs:
    """Probabilities of each option as the next token, normalised over the options."""

    probs: dict[str, float]
    model: str
    prompt_tokens: int = 0
    raw_logprobs: dict[str, float] = field(default_factory=dict)
    """Unnormalised log-probabilities as the backend gave them (missing options absent)."""
    cached: bool = False
    usage_estimated: bool = False
    """The reply carried no usage: the prompt tokens are estimated from characters."""
    batched: bool = False
    """Answered through the provider's batch API (priced at its batch rate)."""
    cache_read_tokens: int = 0
    """Of the prompt tokens, those the provider read from its prompt cache."""
    cache_write_tokens: int = 0
    """Of the prompt tokens, those the provider wrote to its prompt cache."""


class ChatModel(ABC):
    """A chat model. `provider` and `name` make its id, `provider:name`."""

    provider: ClassVar[str] = ""
    supports_logprobs: ClassVar[bool] = False
    gives_token_logprobs: bool = False
    """Its `generate` returns each token's log-probability and top alternatives when the params ask
    (`SamplingParams.top_logprobs`)."""
    endpoint: Endpoint | None = None
    """Where a remote model is served (None for a model run in this process)."""
    delivers: ClassVar[bool] = False
    """Its `generate` (and `choice_logprobs_batch`) take `done(index, result)`, called as each request's answer is
    ready, before the call returns (a local model's call runs several batches)."""
    stop_request: StopRequest | None = None
    """A run's stop request (Ctrl-C, SIGTERM). A backend that computes in this process (`local:`) checks it between
    its batches and steps: no batch starts after a stop, and one running ends once the grace period is over."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def model_id(self) -> str:
        return f"{self.provider}:{self.name}"

    @property
    def served_id(self) -> str:
        """The model and, when it is not its provider's own API, the URL that serves it: what the call cache keys
        its calls by and what fingerprints name, so that another server is asked anew."""
        return served_id(self.model_id, self.endpoint)

    @abstractmethod
    async def generate(self, requests: Sequence[Messages], params: SamplingParams) -> list[Completion]:
        """Complete each request; results are in request order."""

    async def choice_logprobs(self, request: Messages, options: Sequence[str]) -> ChoiceProbs:
        """P(option) for each option as the next assistant token (e.g. "A" / "B")."""
        raise LogprobsUnsupported(f"{self.model_id} gives no next-token probabilities")

    async def aclose(self) -> None:  # noqa: B027 - optional: most backends hold nothing to release
        """Release clients and memory."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id}>"


class SDKChatModel(ChatModel):
    """A model behind a vendor SDK client. Connections belong to one event loop, so the client is
    made per running loop (a sync wrapper may call `asyncio.run` more than once)."""

    _client: Any = None
    _client_loop: Any = None
    _key: str = ""

    def serve_at(self, url: str | None, api_key_env: str | None) -> str:
        """Resolve where this model is served and which key goes there (charter.providers.endpoints); returns the
        key, which only that endpoint is sent."""
        self.endpoint = resolve_endpoint(self.provider, url, api_key_env)
        self._key = self.endpoint.key()
        return self._key

    @property
    def base_url(self) -> str:
        return self.endpoint.url if self.endpoint is not None else ""

    @abstractmethod
    def new_client(self) -> Any:
        """A fresh SDK client (retries off: the limiter does them)."""

    def client(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client, self._client_loop = self.new_client(), loop
        return self._client


def normalise(logprobs: dict[str, float], options: Sequence[str]) -> dict[str, float]:
    """Softmax over the options' log-probabilities; an option absent from the top-k gets a floor.

    If none of the options appear, there is no probability to give: `MalformedReply` (never a made-up 0.5).
    """
    import math

    present = [logprobs[o] for o in options if o in logprobs]
    if not present:
        seen = ", ".join(repr(t) for t in list(logprobs)[:10]) or "none"
        raise MalformedReply(
            f"the next-token log-probabilities name none of {', '.join(options)}",
            kind="no_option_logprobs",
            raw=f"top tokens: {seen}",
        )
    floor = min(present) - 10.0  # far below anything seen: absent from the top-k
    values = {o: logprobs.get(o, floor) for o in options}
    top = max(values.values())
    exp = {o: math.exp(v - top) for o, v in values.items()}
    total = sum(exp.values())
    return {o: e / total for o, e in exp.items()}
