"""How the local provider samples: one seed per request (so a request's sample does not depend on its batch), each
row drawn with its own generator (temperature, then top-p), and replies cut at their stop strings."""

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
