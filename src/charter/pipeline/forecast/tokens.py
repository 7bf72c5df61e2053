"""The tokens a call's input costs in the forecast: how many (counted), and how many of them a provider's prompt cache
reads or writes (the caches as the forecast models them, from the calls' layout, `calls`):

- `openai:` caches automatically: a prompt of 1,024 tokens or more is cached in 128-token steps, and a later call
  that starts with a cached prefix reads its longest one at the cached input price.
- `anthropic:` caches only up to the `cache_control` breakpoints charter puts in a request
  (`charter.providers.anthropic_chat.with_breakpoints`; off with the role's `prompt_cache: false`), for prefixes of
  1,024 tokens or more: the longest cached breakpoint prefix is read, the rest up to the last breakpoint written
  (at the cache-write price).
- other providers: no prompt cache is assumed.

A call reads what was cached `before` it: in the forecast's expected figure, by calls answered before it was sent
(as providers cache a prefix once its first request is answered); at the low end, by every call sent before it (a
server that takes requests one at a time in arrival order); at the high end, nothing (the cache is best effort).

Tokens are counted with the model's own tokenizer where one is at hand offline (tiktoken for
`openai:` models where it is installed and has its encoding, a `local:` model's tokenizer where its folder is on
disk), else a stated heuristic (`forecast.counter`: characters or words a token). Nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from charter.pipeline.config import ForecastConfig
from charter.pipeline.forecast.calls import PLACEHOLDER, Call
from charter.providers import parse_model_string
from charter.providers.anthropic_chat import split_system, with_breakpoints

MIN_CACHED = 1024
STEP = 128
#: Anthropic reads a cached prefix that ends at a breakpoint or at one of the content blocks this far before one.
LOOK_BACK = 20

#: Which earlier calls a call can read from: those answered before it was sent, every one sent before it, none.
Seen = Literal["answered", "sent", "none"]

#: A piece of a request as the cache compares it: a text (or `\x01ROLE`, a message's start) and its tokens.
Piece = tuple[str, int]
#: (tokens up to the end of a content block, a digest of the text up to there).
Mark = tuple[int, str]


def cache_rules(spec_model: str, options: dict) -> str | None:
    """Which provider's cache rules apply to a role's model: `openai`, `anthropic`, or None."""
    provider = parse_model_string(spec_model).provider
    if provider == "anthropic" and options.get("prompt_cache", True) is False:
        return None
    return provider if provider in ("openai", "anthropic") else None


def _split(text: str, counter: TokenCounter, lengths: dict[str, int]) -> list[Piece]:
    """A text cut at its placeholders: each known part counted, each placeholder its reply's length."""
    return [
        (part, lengths[part] if part in lengths else counter.count(part)) for part in PLACEHOLDER.split(text) if part
    ]


def pieces(call: Call, counter: TokenCounter, lengths: dict[str, int]) -> list[Piece]:
    """The request as a sequence of pieces: each message's start, then its text."""
    out: list[Piece] = []
    for message in call.request:
        out.append((f"\x01{message.role}", counter.per_message))
        out += _split(message.content, counter, lengths)
    return out


def _common_tokens(left: list[Piece], right: list[Piece], counter: TokenCounter) -> int:
    """Tokens two requests share from their start (where two texts part, their common start is counted)."""
    shared = 0
    for (a, tokens), (b, _) in zip(left, right):
        if a == b:
            shared += tokens
            continue
        if a[:1] not in ("\x00", "\x01") and b[:1] not in ("\x00", "\x01"):
            shared += counter.count(a[: _common_length(a, b)])
        break
    return shared


def _common_length(a: str, b: str) -> int:
    """How many characters two texts share from their start (halving, so that the comparisons run in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _step_floor(tokens: float) -> int:
    """The longest cached prefix within `tokens` (0 under 1,024)."""
    return 0 if tokens < MIN_CACHED else MIN_CACHED + int(tokens - MIN_CACHED) // STEP * STEP


#: Where in a count's error range the provider's count is taken to be: evenly spread points from -1 to +1.
_POINTS = [2 * i / 8 - 1 for i in range(9)]


def _ratios(error: float) -> list[float]:
    """The provider's count over the counter's, across the counter's error range (one point for an exact one)."""
    return [1.0] if error == 0 else [1 + error * point for point in _POINTS]


def openai_read(shared: int, error: float, optimistic: bool) -> float:
    """The tokens (in the counter's units) read of a cached prefix `shared` tokens long, where the provider's count
    may differ by `error` either way: the mean over that range (at the low end: its most), as a prefix near the
    1,024-token minimum is cached for some of the provider's counts and not for others."""
    found = [_step_floor(shared * ratio) / ratio for ratio in _ratios(error)]
    return max(found) if optimistic else sum(found) / len(found)


def cacheable_share(tokens: int, error: float, optimistic: bool) -> float:
    """The share of the counter's error range where a prefix of `tokens` reaches the 1,024-token minimum (at the low
    end: 1 where it can anywhere)."""
    found = [tokens * ratio >= MIN_CACHED for ratio in _ratios(error)]
    return float(any(found)) if optimistic else sum(found) / len(found)


def breakpoints(call: Call, counter: TokenCounter, lengths: dict[str, int]) -> tuple[int, list[Mark], list[int]]:
    """An Anthropic request's tokens, (tokens up to it, a digest of the text up to it) at the end of each content
    block, and the blocks that carry a breakpoint (indices into the marks)."""
    system, turns = split_system(call.request)
    body = with_breakpoints(system, turns)
    digest, marks, marked = hashlib.sha256(), [], []
    total = 0

    def add(blocks: list[dict]) -> None:
        nonlocal total
        for block in blocks:
            for part, tokens in _split(block["text"], counter, lengths):
                total += tokens
                digest.update(part.encode())
            marks.append((total, digest.copy().hexdigest()))
            if block.get("cache_control"):
                marked.append(len(marks) - 1)

    add(body.get("system", []))
    for message in body["messages"]:
        total += counter.per_message
        digest.update(f"\x01{message['role']}".encode())
        add(message["content"])
    return total, marks, marked


@dataclass
class Billed:
    """One call's input as the provider bills it (reads and writes as expected values: fractional where the
    provider's count may fall either side of a cache's minimum)."""

    prompt_tokens: int
    cache_read: float = 0
    cache_write: float = 0


#: When a call was sent and answered: (the walk's prompt number, sent, answered on that prompt's clock).
When = tuple[int, int, int]


@dataclass
class PromptCache:
    """One model's prompt cache over a walk of prompts. A call compares its prefix with the calls of the prompt in
    hand and of the prompt before (the only ones a prompt shares text with are those of its own and the parts every
    prompt shares: the system prompt, the worked examples). `lockstep`: the prompts' calls go out stage by stage
    together (a batch API gathers every prompt's calls of a stage into one batch), so another prompt's call is
    readable only once it was answered on the same clock; otherwise the prompt before is all answered."""

    rules: str | None
    seen: Seen
    counter: TokenCounter
    lockstep: bool = False
    prompt: int = 0
    earlier: list[tuple[Call, list[Piece]]] = field(default_factory=list)
    before: list[tuple[Call, list[Piece]]] = field(default_factory=list)
    digests: dict[str, When] = field(default_factory=dict)

    @property
    def optimistic(self) -> bool:
        """The low end's cache: every call sent before is read, and a prefix is cached wherever the counter's error
        lets it reach the minimum."""
        return self.seen == "sent"

    def next_prompt(self) -> None:
        """The walk moves to another prompt: the last one's calls are all answered by now."""
        self.before, self.earlier = self.earlier, []
        self.prompt += 1

    def _readable(self, call: Call, when: When) -> bool:
        """Whether a call can read what the call sent and answered at `when` cached."""
        prompt, sent, answered = when
        if self.seen == "none":
            return False
        if prompt < self.prompt and not self.lockstep:
            return True
        return (answered if self.seen == "answered" else sent) < call.started

    def bill(self, call: Call, lengths: dict[str, int]) -> Billed:
        """What the call's input is billed as, given the calls before it; then it is one of them."""
        if self.rules == "anthropic":
            return self._anthropic(call, lengths)
        mine = pieces(call, self.counter, lengths)
        total = _sum(mine)
        if self.rules != "openai":
            return Billed(total)
        read = 0.0
        if cacheable_share(total, self.counter.error, self.optimistic):
            readable = [
                p for other, p in self.before if self._readable(call, (self.prompt - 1, other.started, other.answered))
            ]
            readable += [
                p for other, p in self.earlier if self._readable(call, (self.prompt, other.started, other.answered))
            ]
            shared = (min(_common_tokens(mine, other, self.counter), _sum(other)) for other in readable)
            read = openai_read(max(shared, default=0), self.counter.error, self.optimistic)
        self.earlier.append((call, mine))
        return Billed(total, read)

    def _anthropic(self, call: Call, lengths: dict[str, int]) -> Billed:
        """The longest cached prefix that ends at a breakpoint, or at one of the 20 content blocks before one, is
        read (as Anthropic documents); the rest up to the last breakpoint is written."""
        total, marks, marked = breakpoints(call, self.counter, lengths)
        error, optimistic = self.counter.error, self.optimistic
        cached = [marks[i] for i in marked if cacheable_share(marks[i][0], error, optimistic)]
        if not cached:
            return Billed(total)
        readable = {marks[j] for i in marked for j in range(max(0, i - LOOK_BACK), i + 1)}
        found = [at for at, digest in readable if digest in self.digests and self._readable(call, self.digests[digest])]
        read = max(found, default=0)
        last = max(at for at, _ in cached)
        for _, digest in cached:
            self.digests.setdefault(digest, (self.prompt, call.started, call.answered))
        # where the provider's count falls short of the minimum, nothing of that prefix is read or written
        return Billed(
            total,
            read * cacheable_share(read, error, optimistic),
            max(0, last - read) * cacheable_share(last, error, optimistic),
        )


def _sum(found: Sequence[Piece]) -> int:
    return sum(tokens for _, tokens in found)


log = logging.getLogger("charter.forecast")

#: Tokens a chat message adds besides its text (its role and separators) where the tokenizer is OpenAI's (its
#: chat format: 3 a message) or another (a chat template's markers, or charter's usage estimate: 4).
TIKTOKEN_PER_MESSAGE = 3
OTHER_PER_MESSAGE = 4


@dataclass
class TokenCounter:
    """Counts a text's tokens one way, and says which (`name`, shown in the forecast)."""

    name: str
    count_text: Callable[[str], int]
    per_message: int = OTHER_PER_MESSAGE
    """Tokens each message adds besides its text."""
    error: float = 0.0
    """How far its count may be from the provider's, either way, as a share (0: the model's own tokenizer)."""
    _seen: dict[str, int] = field(default_factory=dict, repr=False)

    def count(self, text: str) -> int:
        """The text's tokens (0 for an empty text); a text counted before is not counted again."""
        if not text:
            return 0
        found = self._seen.get(text)
        if found is None:
            found = self._seen[text] = self.count_text(text)
            if len(self._seen) > 100_000:  # a long run's texts are each met a few times, close together
                self._seen.clear()
        return found


def chars_counter(chars_per_token: float, error: float = 0.0) -> TokenCounter:
    """The characters heuristic: `chars_per_token` characters a token, 4 tokens a message."""
    return TokenCounter(
        f"heuristic: {chars_per_token:g} characters a token",
        lambda text: max(1, round(len(text) / chars_per_token)),
        error=error,
    )


def words_counter(tokens_per_word: float, error: float = 0.0) -> TokenCounter:
    """The words heuristic: `tokens_per_word` tokens a whitespace-separated word, and its role a message."""
    return TokenCounter(
        f"heuristic: {tokens_per_word:g} tokens a word",
        lambda text: round(len(text.split()) * tokens_per_word),
        per_message=max(1, round(tokens_per_word)),
        error=error,
    )


def heuristic(forecast: ForecastConfig) -> TokenCounter:
    """The heuristic `forecast.counter` names (`chars` for `auto`)."""
    if forecast.counter == "words":
        return words_counter(forecast.tokens_per_word, forecast.heuristic_error)
    return chars_counter(forecast.chars_per_token, forecast.heuristic_error)


def _tiktoken(name: str) -> TokenCounter | None:
    """tiktoken's encoding of an OpenAI model, where tiktoken is installed and has the encoding without a
    download (its files cached, or a model it does not know: None)."""
    try:
        import tiktoken  # pyright: ignore[reportMissingImports]
    except ImportError:
        return None
    try:
        encoding = tiktoken.encoding_for_model(name)
    except Exception as error:  # an unknown model (KeyError), or the encoding's file not cached and no network
        log.info("tiktoken cannot count for %s (%s); the forecast uses the heuristic", name, error)
        return None
    return TokenCounter(
        f"tiktoken {encoding.name}",
        lambda text: len(encoding.encode(text, disallowed_special=())),
        per_message=TIKTOKEN_PER_MESSAGE,
    )


def _local_folder(name: str) -> Path | None:
    """A `local:` model's folder where it is on disk with its tokenizer (the embedded model once converted)."""
    from charter.providers.local_models import EMBEDDED_ALIASES, EMBEDDED_NAME, models_dir

    folder = models_dir() / EMBEDDED_NAME if name.lower() in EMBEDDED_ALIASES else Path(name).expanduser()
    return folder if (folder / "tokenizer.json").is_file() else None


def _local_tokenizer(name: str) -> TokenCounter | None:
    """The tokenizer of a `local:` model whose folder is on disk (None: not there yet, or unreadable)."""
    folder = _local_folder(name)
    if folder is None:
        return None
    try:
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    except Exception as error:  # transformers missing (the local extra), or a broken tokenizer file
        log.info("cannot read the tokenizer of local:%s (%s); the forecast uses the heuristic", name, error)
        return None
    return TokenCounter(
        f"tokenizer of local:{name}", lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    )


def counter_for(model: str, forecast: ForecastConfig) -> TokenCounter:
    """How the forecast counts a model's tokens: its tokenizer where `auto` finds one offline, else the heuristic."""
    if forecast.counter != "auto":
        return heuristic(forecast)
    spec = parse_model_string(model)
    found = None
    if spec.provider == "openai":
        found = _tiktoken(spec.name)
    elif spec.provider == "local":
        found = _local_tokenizer(spec.name)
    return found or heuristic(forecast)
