"""How the local provider samples: one seed per request (so a request's sample does not depend on its batch), each
row drawn with its own generator (temperature, then top-p), and replies cut at their stop strings.

Each generated token's log-probability and top alternatives for a `local:` model (`SamplingParams.top_logprobs`),
in OpenAI's wire shape (`charter.providers.base.TokenLogprob`), read from the model's own logits at each step (before
any temperature or nucleus sampling, as vLLM gives them).

A token's text is its bytes: byte-level BPE tokenizers (GPT-2's table, as SmolLM2's) spell them exactly; for others a
token is decoded alone, which may not spell the reply (a reader of the probabilities then says so).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from charter.providers.base import Messages
from charter.records import as_dicts

if TYPE_CHECKING:
    import torch
import functools
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from charter.providers.base import TokenAlternative, TokenLogprob

if TYPE_CHECKING:
    import torch


def row_seeds(requests: Sequence[Messages], seed: int | None) -> list[int]:
    """One sampling seed per request, from the params seed and the request itself, so that a request's
    sample does not depend on what else shares its batch. Repeats of one request in a call differ."""
    if seed is None:
        rng = random.SystemRandom()
        return [rng.getrandbits(63) for _ in requests]
    seen: dict[str, int] = {}
    seeds = []
    for messages in requests:
        body = json.dumps(as_dicts(messages), sort_keys=True)  # the same seed as for the request's dict form
        repeat = seen[body] = seen.get(body, -1) + 1
        digest = hashlib.sha256(f"{seed}|{repeat}|{body}".encode()).digest()
        seeds.append(int.from_bytes(digest[:8], "big") >> 1)
    return seeds


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class RowSampler:
    """A logits processor that samples each row with its own generator (temperature, then top-p) and
    leaves only the drawn token standing, so that greedy decoding picks it."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: str) -> None:
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.pick(scores, range(len(self.generators)))

    def pick(self, scores: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """`scores` for the batch rows `rows` (in order) with all but each row's drawn token at -inf."""
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probs = top_p_filter(probs, self.top_p)
        # one uniform draw per row from that row's generator, then the inverse CDF for all rows at once
        # (torch.multinomial over a 49k vocabulary took ~1 ms a row)
        draws = torch.cat([torch.rand(1, generator=self.generators[r], device=probs.device) for r in rows])
        cdf = probs.cumsum(-1)
        drawn = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(1), right=True).clamp_(max=probs.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, drawn, 0.0)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set of tokens whose mass reaches `top_p` (the top token always stays)."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level BPE table, reversed: each of the 256 characters a token string is written in, its byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class StepLogprobs:
    """Per row of a batch, each step's chosen token with its log-probability and the `k` most likely tokens."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.steps: dict[int, list[tuple[float, list[int], list[float]]]] = defaultdict(list)

    def add(self, logits: torch.Tensor, rows: list[int], chosen: torch.Tensor) -> None:
        """Record one step: the raw `logits` of the `rows` (one line each) and the tokens `chosen` for them."""
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        top, ids = torch.topk(logp, min(self.k, logp.shape[-1]), dim=-1)
        picked = logp.gather(-1, chosen.view(-1, 1)).view(-1)
        for row, p, values, tokens in zip(rows, picked.tolist(), top.tolist(), ids.tolist()):
            self.steps[row].append((p, tokens, values))

    def entries(self, tokenizer: Any, row: int, tokens: list[int]) -> list[TokenLogprob]:
        """The row's first `len(tokens)` steps, each as OpenAI's `logprobs.content` entry."""
        spell = functools.partial(_spelled, tokenizer)
        out: list[TokenLogprob] = []
        for token, (p, ids, values) in zip(tokens, self.steps[row]):
            alternatives = [_alternative(spell(i), v) for i, v in zip(ids, values)]
            out.append({**_alternative(spell(token), p), "top_logprobs": alternatives})  # type: ignore[typeddict-item]
        return out


def _alternative(raw: bytes, logprob: float) -> TokenAlternative:
    """A token as kept: its bytes only where they are no whole characters (its text cannot spell them)."""
    try:
        return {"token": raw.decode("utf-8"), "logprob": logprob, "bytes": None}
    except UnicodeDecodeError:
        return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}


def _spelled(tokenizer: Any, token_id: int) -> bytes:
    """A token's bytes: through the byte-level table where its string is written in it, else decoded alone."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    table = _byte_of_char()
    if isinstance(piece, str) and piece and all(c in table for c in piece):
        return bytes(table[c] for c in piece)
    return tokenizer.decode([token_id]).encode()
