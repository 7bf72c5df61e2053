"""Prompt caching and billing as the providers do them, for the loopback servers (`LoopbackServer(billing=...)`):
the server's own invoice, a test oracle that checks both that the cost charter reports is the bill and that the
forecast made before a run comes near it. It lives with the tests, not in the package it checks.

This module is written apart from charter: it imports nothing of it, and in particular nothing of the forecast's
cache model (`charter.pipeline.forecast_cache`) or its token counts. It tokenizes and caches its own way:

- Tokens (`tokenize`): a GPT-style pre-tokenizer (a word with the space before it, up to 3 digits, a run of
  punctuation, a run of spaces), with a word longer than 8 characters cut into pieces of 6, as a byte-pair
  vocabulary leaves a rare long word in pieces. English prose comes to about 1.3 tokens a word; the forecast's
  heuristics (4 characters a token, or so many tokens a word) only come near it.
- The chat format: each message is framed by a start token, its role and an end token around its text, and the
  reply is primed by three more tokens after the last message (OpenAI's documented 3 a message and 3 a reply), so
  a conversation that goes on shares its earlier messages as a prefix, but not the priming.
- `OpenAIBilling`: automatic prefix caching of the token sequence. Once a reply is sent, every prefix of its
  request of 1,024 tokens or more, in 128-token steps, is cached; a later request reads the longest cached prefix
  it starts with (`usage.prompt_tokens_details.cached_tokens`), at `read` times the input price.
- `AnthropicBilling`: caching only at the request's `cache_control` breakpoints, for prefixes of 1,024 tokens or
  more. The longest cached prefix that ends at a breakpoint, or at one of the 20 content blocks before one (the
  provider's look-back), is read (`cache_read_input_tokens`, 0.1x), the rest up to the last breakpoint written
  (`cache_creation_input_tokens`, 1.25x); `input_tokens` counts only what is left.

As at the providers, a request reads what is cached when it arrives (`usage`), and its own prefixes become readable
only once it has been answered (`fill`, which the server calls when it sends the reply): requests sent together all
miss, and one sent after the first was answered reads the prefix they share. A reply's tokens are counted from its
text, at most the request's `max_tokens` (a provider stops there). A batch request is billed at half of everything.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from typing import Any

MIN_CACHED = 1024
STEP = 128
#: Content blocks before a `cache_control` breakpoint where Anthropic also looks for a cached prefix.
LOOK_BACK = 20
#: A word longer than this is cut into pieces of `_PIECE` characters.
_WHOLE, _PIECE = 8, 6
_PRETOKEN = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+(?!\S)|\s+")
#: The framing of a chat message around its text, and the reply's priming after the last message.
_START, _END, _PRIME = "<|start|>", "<|end|>", ("<|start|>", "assistant", "<|message|>")


def tokenize(text: str) -> list[str]:
    """The text's tokens: its pre-tokens, a long word cut into pieces (their concatenation is the text)."""
    out: list[str] = []
    for piece in _PRETOKEN.findall(text):
        if len(piece) <= _WHOLE or not piece.strip().isalpha():
            out.append(piece)
        else:
            out += [piece[i : i + _PIECE] for i in range(0, len(piece), _PIECE)]
    return out


@dataclass
class Invoice:
    """What the server billed: tokens by kind and the USD total."""

    calls: int = 0
    input_tokens: int = 0
    """Uncached prompt tokens."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content or "")


class _Prefixes:
    """Digests of a token sequence's prefixes, computed in one pass (each prefix's digest extends the last)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self._hash = hashlib.sha256()
        self._at = 0
        self._found: dict[int, str] = {}

    def digest(self, length: int) -> str:
        found = self._found.get(length)
        if found is None:
            if length < self._at:
                return hashlib.sha256("\x1f".join(self.tokens[:length]).encode() + b"\x1f").hexdigest()
            self._hash.update("".join(t + "\x1f" for t in self.tokens[self._at : length]).encode())
            self._at = length
            found = self._found[length] = self._hash.copy().hexdigest()
        return found


@dataclass
class _Billing:
    input: float = 1.0
    """USD per million uncached prompt tokens."""
    output: float = 4.0
    """USD per million completion tokens."""
    read: float = 0.5
    """Cache reads, as a multiple of the input price."""
    write: float = 1.0
    """Cache writes, as a multiple of the input price."""
    invoice: Invoice = field(default_factory=Invoice)
    cached: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _charge(self, uncached: int, read: int, written: int, output: int, batched: bool) -> None:
        usd = (uncached * self.input + read * self.input * self.read + written * self.input * self.write) / 1e6
        usd += output * self.output / 1e6
        bill = self.invoice
        bill.calls += 1
        bill.input_tokens += uncached
        bill.cache_read_tokens += read
        bill.cache_write_tokens += written
        bill.output_tokens += output
        bill.usd += usd * (0.5 if batched else 1.0)

    def prefixes(self, body: dict[str, Any]) -> tuple[list[str], list[int], list[int]]:
        """The request's tokens, the lengths of its prefixes that a reply caches, and those it may read."""
        raise NotImplementedError

    def fill(self, body: dict[str, Any]) -> None:
        """Make the request's cacheable prefixes readable (the server calls this once it has sent the reply)."""
        tokens, cached, _ = self.prefixes(body)
        digests = _Prefixes(tokens)
        found = [digests.digest(k) for k in cached]
        with self._lock:
            self.cached.update(found)

    def _read(self, tokens: list[str], readable: list[int]) -> int:
        """The longest cached prefix (call with the lock held)."""
        digests = _Prefixes(tokens)
        return max((k for k in readable if digests.digest(k) in self.cached), default=0)

    def forget(self) -> None:
        """Empty the cache (the invoice stays)."""
        self.cached.clear()

    @staticmethod
    def completion(body: dict[str, Any], text: str) -> int:
        """The reply's tokens: its text's, at most the request's `max_tokens` (at least 1)."""
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        found = max(1, len(tokenize(text)))
        return min(found, int(cap)) if cap else found


@dataclass
class OpenAIBilling(_Billing):
    wire = "openai"
    """OpenAI's automatic prefix caching and its bill."""

    def prefixes(self, body: dict[str, Any]) -> tuple[list[str], list[int], list[int]]:
        tokens: list[str] = []
        for message in body.get("messages", []):
            tokens += [_START, str(message.get("role")), *tokenize(_text(message.get("content"))), _END]
        tokens += _PRIME
        steps = list(range(MIN_CACHED, len(tokens) + 1, STEP))
        return tokens, steps, steps

    def usage(self, body: dict[str, Any], text: str, batched: bool = False) -> dict[str, Any]:
        """The reply's `usage`, billed: the longest prefix cached now is read (nothing is cached here: `fill`)."""
        tokens, _, readable = self.prefixes(body)
        output = self.completion(body, text)
        with self._lock:
            read = self._read(tokens, readable)
            self._charge(len(tokens) - read, read, 0, output, batched)
        return {
            "prompt_tokens": len(tokens),
            "completion_tokens": output,
            "total_tokens": len(tokens) + output,
            "prompt_tokens_details": {"cached_tokens": read},
        }


@dataclass
class AnthropicBilling(_Billing):
    wire = "anthropic"
    """Anthropic's breakpoint caching and its bill (reads 0.1x, writes 1.25x)."""

    read: float = 0.1
    write: float = 1.25

    def prefixes(self, body: dict[str, Any]) -> tuple[list[str], list[int], list[int]]:
        tokens: list[str] = []
        ends: list[int] = []  # where each content block ends
        marked: list[int] = []  # the blocks with a breakpoint, by index into `ends`
        system = body.get("system")
        turns = [(None, system)] if system else []
        turns += [(str(m.get("role")), m.get("content")) for m in body.get("messages", [])]
        for role, content in turns:
            tokens += [_START, role] if role else []
            for block in content if isinstance(content, list) else [{"text": content}]:
                tokens += tokenize(_text([block]))
                ends.append(len(tokens))
                if block.get("cache_control"):
                    marked.append(len(ends) - 1)
            tokens += [_END] if role else []
        tokens += _PRIME
        cached = [ends[i] for i in marked if ends[i] >= MIN_CACHED]
        readable = {ends[j] for i in marked for j in range(max(0, i - LOOK_BACK), i + 1) if ends[j] >= MIN_CACHED}
        return tokens, cached, sorted(readable)

    def usage(self, body: dict[str, Any], text: str, batched: bool = False) -> dict[str, Any]:
        """The reply's `usage`, billed: the longest cached prefix that ends at a breakpoint or within the look-back
        before one is read, the rest up to the last breakpoint written (it becomes readable once the reply is sent:
        `fill`)."""
        tokens, cached, readable = self.prefixes(body)
        output = self.completion(body, text)
        with self._lock:
            read = self._read(tokens, readable)
            written = max(0, max(cached, default=0) - read)
            uncached = len(tokens) - read - written
            self._charge(uncached, read, written, output, batched)
        return {
            "input_tokens": uncached,
            "output_tokens": output,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }
