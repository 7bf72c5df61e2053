"""Pair construction: initial response vs final revision, and k policy samples."""

from __future__ import annotations

import asyncio
import itertools
import random

from charter.constitutions.schema import Constitution
from charter.critique.chain import policy_messages
from charter.providers.base import ChatModel, Messages, SamplingParams


def _ordered(seed: int, pair_id: str, first: tuple[str, str], second: tuple[str, str]) -> tuple:
    """Put the two (source, text) responses in a seeded random a/b order, so `a` carries no meaning."""
    if random.Random(f"{seed}:{pair_id}:order").random() < 0.5:
        return first, second
    return second, first


def revision_pair(chain: dict, seed: int) -> dict | None:
    """Initial response vs final revision; None when the revision is identical to the response."""
    if chain["initial"].strip() == chain["final"].strip():
        return None
    pair_id = f"{chain['prompt_id']}:rev"
    (a_src, a), (b_src, b) = _ordered(seed, pair_id, ("initial", chain["initial"]), ("revision", chain["final"]))
    models = {"initial": chain["policy_model"], "revision": chain["critic_model"]}
    return {
        "pair_id": pair_id, "prompt_id": chain["prompt_id"], "kind": "revision", "prompt": chain["prompt"],
        "a": a, "b": b, "a_source": a_src, "b_source": b_src, "a_model": models[a_src], "b_model": models[b_src],
        "principle_ids": chain.get("principle_ids", []),
    }


async def policy_samples(policy: ChatModel, constitution: Constitution, prompt_id: str, prompt: Messages,
                         k: int, params: SamplingParams) -> list[dict]:
    """k samples of the policy's answer; the seed tells them apart (and makes them cacheable)."""
    request = policy_messages(constitution, prompt)
    base = params.seed or 0
    calls = [policy.generate([request], params.model_copy(update={"seed": base + i})) for i in range(k)]
    completions = [batch[0] for batch in await asyncio.gather(*calls)]
    return [
        {"prompt_id": prompt_id, "sample_idx": i, "text": c.text.strip(), "model": c.model,
         "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}
        for i, c in enumerate(completions)
    ]


def sample_pairs(prompt_id: str, prompt: Messages, samples: list[dict], seed: int) -> list[dict]:
    """All pairs of distinct samples (identical texts are not compared)."""
    pairs = []
    for left, right in itertools.combinations(samples, 2):
        if left["text"] == right["text"]:
            continue
        pair_id = f"{prompt_id}:s{left['sample_idx']}-s{right['sample_idx']}"
        first = (f"sample:{left['sample_idx']}", left["text"])
        second = (f"sample:{right['sample_idx']}", right["text"])
        (a_src, a), (b_src, b) = _ordered(seed, pair_id, first, second)
        pairs.append({
            "pair_id": pair_id, "prompt_id": prompt_id, "kind": "samples", "prompt": prompt,
            "a": a, "b": b, "a_source": a_src, "b_source": b_src, "a_model": left["model"], "b_model": right["model"],
        })
    return pairs
