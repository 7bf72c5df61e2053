"""Prompt caching and billing as the providers do them, for the loopback servers: the server's own invoice, to
check that the cost charter reports is the bill.

A token here is a word (whitespace-split) of a message's text, and each message's role is one more; `usage` in the
replies is counted the same way, so the client sees the counts the invoice bills.

- `OpenAIBilling`: automatic prefix caching. A prompt of 1,024 tokens or more is cached in 128-token steps; a
  later prompt that starts with a cached prefix reads its longest one (`usage.prompt_tokens_details.cached_tokens`).
  Reads cost `read` times the input price (OpenAI: a half or less); writes cost nothing extra.
- `AnthropicBilling`: caching only up to the request's `cache_control` breakpoints (prefixes of 1,024 tokens or
  more). The longest cached breakpoint prefix is read (`cache_read_input_tokens`, 0.1x), the rest up to the last
  breakpoint written (`cache_creation_input_tokens`, 1.25x); `input_tokens` counts only what is left.

A batch request is billed at half of everything.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

MIN_CACHED = 1024
STEP = 128


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

    def forget(self) -> None:
        """Empty the cache (the invoice stays)."""
        self.cached.clear()


@dataclass
class OpenAIBilling(_Billing):
    """OpenAI's automatic prefix caching and its bill."""

    def usage(self, body: dict[str, Any], output: int, batched: bool = False) -> dict[str, Any]:
        tokens = [t for m in body.get("messages", []) for t in [str(m.get("role")), *_text(m.get("content")).split()]]
        steps = range(MIN_CACHED, len(tokens) + 1, STEP)
        with self._lock:
            read = max((k for k in steps if _digest(tokens[:k]) in self.cached), default=0)
            self.cached.update(_digest(tokens[:k]) for k in steps)
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

    def usage(self, body: dict[str, Any], output: int, batched: bool = False) -> dict[str, Any]:
        tokens: list[str] = []
        breaks: list[int] = []
        system = body.get("system")
        for block in system if isinstance(system, list) else [{"text": system}] if system else []:
            tokens += _text([block]).split()
            if block.get("cache_control"):
                breaks.append(len(tokens))
        for message in body.get("messages", []):
            tokens.append(str(message.get("role")))
            content = message.get("content")
            for block in content if isinstance(content, list) else [{"text": content}]:
                tokens += _text([block]).split()
                if block.get("cache_control"):
                    breaks.append(len(tokens))
        breaks = [b for b in breaks if b >= MIN_CACHED]
        with self._lock:
            read = max((b for b in breaks if _digest(tokens[:b]) in self.cached), default=0)
            written = max(breaks, default=0) - read if breaks else 0
            written = max(0, written)
            self.cached.update(_digest(tokens[:b]) for b in breaks)
            uncached = len(tokens) - read - written
            self._charge(uncached, read, written, output, batched)
        return {
            "input_tokens": uncached,
            "output_tokens": output,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }
