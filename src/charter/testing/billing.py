"""Prompt caching and billing as the providers do them, for the loopback servers: the server's own invoice, to
check that the cost charter reports is the bill.

A token here is a word (whitespace-split) of a message's text, and each message's role is one more; `usage` in the
replies is counted the same way, so the client sees the counts the invoice bills.

- `OpenAIBilling`: automatic prefix caching. A prompt of 1,024 tokens or more is cached in 128-token steps; a
  later prompt that starts with a cached prefix reads its longest one (`usage.prompt_tokens_details.cached_tokens`).
  Reads cost `read` times the input price (OpenAI: a half or less); writes cost nothing extra.
- `AnthropicBilling`: caching only up to the request's `cache_control` breakpoints (prefixes of 1,024 tokens or
  more). The longest cached prefix that ends at a breakpoint, or at one of the 20 content blocks before one (the
  provider's look-back), is read (`cache_read_input_tokens`, 0.1x), the rest up to the last breakpoint written
  (`cache_creation_input_tokens`, 1.25x); `input_tokens` counts only what is left.

As at the providers, a request reads what is cached when it arrives (`usage`), and its own prefixes become readable
only once it has been answered (`fill`, which the server calls when it sends the reply): requests sent together all
miss, and a second one sent after the first was answered reads the prefix they share.

A batch request is billed at half of everything.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

MIN_CACHED = 1024
STEP = 128
#: Content blocks before a `cache_control` breakpoint where Anthropic also looks for a cached prefix.
LOOK_BACK = 20


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
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content or "")


def _digest(tokens: list[str]) -> str:
    return hashlib.sha256("\x00".join(tokens).encode()).hexdigest()


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
        with self._lock:
            self.cached.update(_digest(tokens[:k]) for k in cached)

    def _read(self, tokens: list[str], readable: list[int]) -> int:
        """The longest cached prefix (call with the lock held)."""
        return max((k for k in readable if _digest(tokens[:k]) in self.cached), default=0)

    def forget(self) -> None:
        """Empty the cache (the invoice stays)."""
        self.cached.clear()


@dataclass
class OpenAIBilling(_Billing):
    """OpenAI's automatic prefix caching and its bill."""

    def prefixes(self, body: dict[str, Any]) -> tuple[list[str], list[int], list[int]]:
        tokens = [t for m in body.get("messages", []) for t in [str(m.get("role")), *_text(m.get("content")).split()]]
        steps = list(range(MIN_CACHED, len(tokens) + 1, STEP))
        return tokens, steps, steps

    def usage(self, body: dict[str, Any], output: int, batched: bool = False) -> dict[str, Any]:
        """The reply's `usage`, billed: the longest prefix cached now is read (nothing is cached here: `fill`)."""
        tokens, _, readable = self.prefixes(body)
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
            tokens += [role] if role else []
            for block in content if isinstance(content, list) else [{"text": content}]:
                tokens += _text([block]).split()
                ends.append(len(tokens))
                if block.get("cache_control"):
                    marked.append(len(ends) - 1)
        cached = [ends[i] for i in marked if ends[i] >= MIN_CACHED]
        readable = {ends[j] for i in marked for j in range(max(0, i - LOOK_BACK), i + 1) if ends[j] >= MIN_CACHED}
        return tokens, cached, sorted(readable)

    def usage(self, body: dict[str, Any], output: int, batched: bool = False) -> dict[str, Any]:
        """The reply's `usage`, billed: the longest cached prefix that ends at a breakpoint or within the look-back
        before one is read, the rest up to the last breakpoint written (it becomes readable once the reply is sent:
        `fill`)."""
        tokens, cached, readable = self.prefixes(body)
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
