"""Pair construction: initial response vs final revision, and k policy samples.

A pair's id is its prompt, kind and a hash of its two texts: the same two responses are the same pair
(and keep their human labels) whatever settings produced them; different texts are a different pair.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
from typing import Any, Literal

from charter.constitutions.schema import Constitution
from charter.providers.base import ChatModel, SamplingParams
from charter.records import Chain, Message, Pair, Sample, ToolCall, fingerprint
from charter.records.base import with_system


def pair_id_for(prompt_id: str, kind: str, first: str, second: str) -> str:
    """`PROMPT:KIND:HASH` where HASH depends on the two texts only (not on their order)."""
    digest = hashlib.sha256("\x00".join(sorted((first, second))).encode()).hexdigest()[:10]
    return f"{prompt_id}:{kind}:{digest}"


def step_identity(text: str, calls: list[ToolCall] | None) -> str:
    """What tells a response apart: its text, and the tools it calls where it calls any (two replies that say the
    same and call different tools are different responses; a reply without calls is its text, as always)."""
    if not calls:
        return text
    return text + "\x00" + json.dumps([c.model_dump() for c in calls], sort_keys=True, ensure_ascii=False)


#: One response of a pair: where it came from (`initial`, `revision`, `sample:3`), its text, its model, and the tools
#: it calls (None: none).
Response = tuple[str, str, str, list[ToolCall] | None]


def _ordered(pair_id: str, first: Response, second: Response) -> tuple[Response, Response]:
    """Put the two responses in a pseudo-random a/b order seeded by the pair id, so `a` carries no meaning and a
    pair id always means the same a and b (human labels are in a/b terms)."""
    if random.Random(f"{pair_id}:order").random() < 0.5:
        return first, second
    return second, first


def _pair(
    pair_id: str,
    prompt_id: str,
    kind: Literal["revision", "samples"],
    prompt: list[Message],
    first: Response,
    second: Response,
    **provenance: Any,
) -> Pair:
    """The pair of two responses, in `_ordered`'s a/b order."""
    (a_src, a, a_model, a_calls), (b_src, b, b_model, b_calls) = _ordered(pair_id, first, second)
    return Pair(
        a_tool_calls=a_calls,
        b_tool_calls=b_calls,
        pair_id=pair_id,
        prompt_id=prompt_id,
        kind=kind,
        prompt=prompt,
        a=a,
        b=b,
        a_source=a_src,
        b_source=b_src,
        a_model=a_model,
        b_model=b_model,
        **provenance,
    )


def revision_pair(chain: Chain) -> Pair | None:
    """Initial response vs final revision; None when the revision is identical to the response."""
    if chain.initial.strip() == chain.final.strip():
        return None
    initial_id = step_identity(chain.initial, chain.initial_tool_calls)
    pair_id = pair_id_for(chain.prompt_id, "rev", initial_id, chain.final)
    initial = ("initial", chain.initial, chain.policy_model, chain.initial_tool_calls)
    revision = ("revision", chain.final, chain.critic_model, None)
    return _pair(
        pair_id,
        chain.prompt_id,
        "revision",
        chain.prompt,
        initial,
        revision,
        principle_ids=chain.principle_ids,
        source_fingerprint=chain.fingerprint,
    )


def samples_fingerprint(constitution: Constitution, policy: str, params: SamplingParams, k: int) -> str:
    """The fingerprint of k policy samples: model, sampling (with the samples' temperature), k."""
    return fingerprint(
        {
            "stage": "samples",
            "constitution": constitution.hash,
            "policy": policy,
            "k": k,
            "params": params.model_dump(mode="json"),
        }
    )


async def policy_samples(
    policy: ChatModel,
    constitution: Constitution,
    prompt_id: str,
    prompt: list[Message],
    k: int,
    params: SamplingParams,
    samples_fp: str,
    tools: list[dict[str, Any]] | None = None,
) -> list[Sample]:
    """k samples of the policy's answer; the seed tells them apart (and makes them cacheable). With `tools` (the
    prompt's), the policy is offered them, and a sample keeps the calls it makes."""
    request = with_system(prompt, constitution.system_prompt)
    params = params.model_copy(update={"tools": tools}) if tools else params
    base = params.seed or 0
    calls = [policy.generate([request], params.model_copy(update={"seed": base + i})) for i in range(k)]
    completions = [batch[0] for batch in await asyncio.gather(*calls)]
    return [
        Sample(
            prompt_id=prompt_id,
            sample_idx=i,
            text=c.text.strip(),
            tool_calls=c.tool_calls,
            model=c.model,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            fingerprint=samples_fp,
        )
        for i, c in enumerate(completions)
    ]


def sample_pair(prompt_id: str, prompt: list[Message], left: Sample, right: Sample) -> Pair:
    """The pair of two samples (the one with the lower index first in the id)."""
    left, right = sorted((left, right), key=lambda s: s.sample_idx)
    kind = f"s{left.sample_idx}-s{right.sample_idx}"
    pair_id = pair_id_for(
        prompt_id, kind, step_identity(left.text, left.tool_calls), step_identity(right.text, right.tool_calls)
    )
    first = (f"sample:{left.sample_idx}", left.text, left.model, left.tool_calls)
    second = (f"sample:{right.sample_idx}", right.text, right.model, right.tool_calls)
    return _pair(pair_id, prompt_id, "samples", prompt, first, second, source_fingerprint=left.fingerprint)


def sample_pairs(prompt_id: str, prompt: list[Message], samples: list[Sample]) -> list[Pair]:
    """All pairs of distinct samples (identical texts, calling the same tools, are not compared)."""
    return [
        sample_pair(prompt_id, prompt, left, right)
        for left, right in itertools.combinations(samples, 2)
        if step_identity(left.text, left.tool_calls) != step_identity(right.text, right.tool_calls)
    ]
