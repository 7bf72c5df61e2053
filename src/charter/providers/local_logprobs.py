"""Each generated token's log-probability and top alternatives for a `local:` model (`SamplingParams.top_logprobs`),
in OpenAI's wire shape (`charter.providers.base.TokenLogprob`), read from the model's own logits at each step (before
any temperature or nucleus sampling, as vLLM gives them).

A token's text is its bytes: byte-level BPE tokenizers (GPT-2's table, as SmolLM2's) spell them exactly; for others a
token is decoded alone, which may not spell the reply (a reader of the probabilities then says so)."""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from charter.providers.base import TokenAlternative, TokenLogprob

if TYPE_CHECKING:
    import torch


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


__all__ = ["StepLogprobs"]
