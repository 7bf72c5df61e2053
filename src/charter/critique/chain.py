"""SL-CAI chains: an initial response from the policy, then rounds of critique and revision by
the critic, each round against one principle, with the constitution's worked examples in front."""

from __future__ import annotations

import random
import re
import weakref
from typing import Any

from charter.constitutions.schema import Constitution, Principle
from charter.critique.config import CritiqueConfig
from charter.judge_prompt import render_conversation, with_actions
from charter.providers.base import ChatModel, Messages, SamplingParams
from charter.records import Chain, CritiqueRound, Message, fingerprint
from charter.records.base import assistant, plain_roles, user, with_system

_LABEL = re.compile(r"^\s*(critique|revision|revised response|rewrite)\s*:\s*", re.I)


def clean(text: str) -> str:
    """Model text without a leading 'Critique:'/'Revision:' label and outer whitespace."""
    return _LABEL.sub("", text.strip(), count=1).strip()


def fill(template: str, prompt: list[Message], response: str, critique: str, principle: Principle) -> str:
    """A principle template with its variables filled in (unused ones are simply ignored)."""
    return template.format(
        prompt=render_conversation(prompt), response=response, critique=critique, principle=principle.description
    )


#: Each constitution's worked examples as turns, made once, by id: (the constitution, what they were made from, turns).
_SHOTS: dict[int, tuple[weakref.ref, tuple, tuple[Message, ...]]] = {}


def shared_shots(constitution: Constitution) -> tuple[Message, ...]:
    """`few_shot_messages`, made once a constitution and shared by every chain: the same records in every request,
    so that what a run does per call (its cache key above all) can tell them from the rest of the request cheaply.
    Made again if the constitution's examples or principles were replaced."""
    made_from = (*constitution.examples, *constitution.principles)
    kept = _SHOTS.get(id(constitution))
    if (
        kept is None
        or kept[0]() is not constitution
        or len(kept[1]) != len(made_from)
        or any(a is not b for a, b in zip(kept[1], made_from))
    ):
        if len(_SHOTS) >= 64:  # constitutions come and go (tests, the lab): keep the memo small
            _SHOTS.clear()
        kept = _SHOTS[id(constitution)] = (weakref.ref(constitution), made_from, tuple(few_shot_messages(constitution)))
    return kept[2]


def few_shot_messages(constitution: Constitution) -> Messages:
    """The worked examples as prior turns: conversation, critique request, critique, revision request, revision."""
    out: Messages = []
    for example in constitution.examples:
        principle = constitution.principle(example.principle) if example.principle else constitution.principles[0]
        conversation = example.conversation
        response = conversation[-1].content
        out += conversation
        out += [
            user(fill(principle.critique_request, conversation[:-1], response, "", principle)),
            assistant(example.critique),
            user(fill(principle.revision_request, conversation[:-1], response, example.critique, principle)),
            assistant(example.revision),
        ]
    return out


def spec_shots(principle: Principle, prompt: list[Message], limit: int) -> Messages:
    """Up to `limit` of the principle's own spec examples as worked critiques (`CritiqueConfig.spec_examples`): the
    conversation, the bad reply, the critique request, the spec's reason it is bad, the revision request, the good
    reply; never the prompt's own conversation."""
    out: Messages = []
    for example, good, bad in principle.shown_examples(prompt, limit) if limit else []:
        conversation = plain_roles([Message(role=m.role, content=m.content) for m in example.conversation])
        critique = (
            bad.why or f"The spec this principle comes from calls this reply bad: it falls short of {principle.id}."
        )
        out += [
            *conversation,
            assistant(bad.content),
            user(fill(principle.critique_request, conversation, bad.content, "", principle)),
            assistant(critique),
            user(fill(principle.revision_request, conversation, bad.content, critique, principle)),
            assistant(good.content),
        ]
    return out


def round_principles(constitution: Constitution, config: CritiqueConfig, prompt_id: str, seed: int) -> list[str]:
    """One principle id per round: the fixed list cycled, or sampled by weight with a per-prompt seed."""
    if config.principles:
        return [config.principles[i % len(config.principles)] for i in range(config.rounds)]
    rng = random.Random(f"{seed}:{prompt_id}:critique")
    weights = [p.weight for p in constitution.principles]
    return [rng.choices(constitution.principles, weights=weights)[0].id for _ in range(config.rounds)]


def chain_fingerprint(
    config: CritiqueConfig,
    constitution: Constitution,
    policy: str,
    policy_params: SamplingParams,
    critic: str,
    critic_params: SamplingParams,
    seed: int,
) -> str:
    """The fingerprint of everything that shapes a chain: models, params, rounds, principles, examples, seed."""
    return fingerprint(
        {
            "stage": "critique",
            "constitution": constitution.hash,
            "seed": seed,
            **config.model_dump(mode="json"),
            "policy": policy,
            "policy_params": policy_params.model_dump(mode="json"),
            "critic": critic,
            "critic_params": critic_params.model_dump(mode="json"),
        }
    )


async def run_chain(
    policy: ChatModel,
    critic: ChatModel,
    constitution: Constitution,
    prompt_id: str,
    prompt: list[Message],
    config: CritiqueConfig,
    policy_params: SamplingParams,
    critic_params: SamplingParams,
    seed: int,
    chain_fp: str,
    tools: list[dict[str, Any]] | None = None,
) -> Chain:
    """One prompt's chain: initial response, every round's critique and revision, the final text. With `tools` (the
    prompt's), the policy is offered them: the calls of its first response are kept, and the critic reads them as
    the actions the response proposes (written after its text); its revisions are text."""
    params = policy_params.model_copy(update={"tools": tools}) if tools else policy_params
    [first] = await policy.generate([with_system(prompt, constitution.system_prompt)], params)
    response = initial = first.text.strip()
    shown_first = with_actions(initial, first.tool_calls)
    prompt_tokens, completion_tokens = first.prompt_tokens, first.completion_tokens
    shots = shared_shots(constitution) if config.few_shot else ()
    # a conversation with developer or tool messages reaches the critic laid out with its roles, as the judge sees it
    roles = any(m.role in ("developer", "tool") or m.tool_calls for m in prompt)
    conversation = [user(render_conversation(prompt))] if roles else [m for m in prompt if m.role != "system"]
    shown = list(prompt) if roles else conversation
    rounds = []
    for principle_id in round_principles(constitution, config, prompt_id, seed):
        principle = constitution.principle(principle_id)
        said = shown_first if not rounds else response  # the first response with the actions it proposes
        history = [
            *shots,
            *spec_shots(principle, list(prompt), config.spec_examples),
            *conversation,
            assistant(said),
        ]
        ask_critique = [*history, user(fill(principle.critique_request, shown, said, "", principle))]
        [critique] = await critic.generate([ask_critique], critic_params)
        ask_revision = [
            *ask_critique,
            assistant(critique.text),
            user(fill(principle.revision_request, shown, said, clean(critique.text), principle)),
        ]
        [revision] = await critic.generate([ask_revision], critic_params)
        revised = clean(revision.text) or response  # an empty revision keeps the response (recorded below)
        rounds.append(
            CritiqueRound(
                principle_id=principle_id,
                critique=clean(critique.text),
                revision=revised,
                empty_revision=not clean(revision.text),
            )
        )
        prompt_tokens += critique.prompt_tokens + revision.prompt_tokens
        completion_tokens += critique.completion_tokens + revision.completion_tokens
        response = revised
    return Chain(
        prompt_id=prompt_id,
        prompt=list(prompt),
        initial=initial,
        initial_tool_calls=first.tool_calls,
        rounds=rounds,
        final=response,
        policy_model=policy.model_id,
        critic_model=critic.model_id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        fingerprint=chain_fp,
    )
