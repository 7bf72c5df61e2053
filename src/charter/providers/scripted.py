"""Deterministic responses from rules or a callable: for tests, dry runs and benchmarks.

`scripted:NAME` picks a registered script. Built in: `echo` (repeats the last user message),
`cai` (plays policy, critic and judge plausibly enough to exercise the whole pipeline) and
`constant` (always "OK"). Register your own with `register_script`. A script answers with text, or with an
assistant `Message` whose `tool_calls` the reply carries (a policy offered tools in `SamplingParams.tools`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, TypeVar

from charter.judge_prompt import (
    read_comparison,
    read_ranked,
    read_rating,
    read_rubric_ids,
    read_scale,
    write_verdict,
)
from charter.providers.base import ChatModel, ChoiceProbs, Completion, Limits, Messages, SamplingParams
from charter.providers.limits import Limiter
from charter.records import Message

T = TypeVar("T")
ScriptFn = Callable[[Messages, SamplingParams], "str | Message"]
ChoiceFn = Callable[[Messages, Sequence[str]], dict[str, float]]

_SCRIPTS: dict[str, tuple[ScriptFn, ChoiceFn | None]] = {}


#: Where scripts not registered yet come from: functions that register scripts (`register_script`), each called once,
#: the first time a `scripted:` name is not yet known. A layer above the provider adds them (`add_script_source`):
#: the command line adds charter's test doubles (the lab's proposers, checklist judges and writer; the judges of
#: known bias), so that a config naming one (`scripted:checklist-judge`, as `examples/checklist.yaml` does) runs
#: from the CLI as from Python, without this module importing the layer that writes them.
_SOURCES: list[Callable[[], None]] = []
#: The entry-point group through which another installed package makes its scripted models known by name: each
#: entry is a function that registers scripts, asked after the sources above.
SCRIPT_ENTRY_POINTS = "charter.scripts"
_asked: set[str] = set()


def add_script_source(source: Callable[[], None]) -> None:
    """Call `source` (it registers scripts) the first time a `scripted:` name is not yet known; added once."""
    if source not in _SOURCES:
        _SOURCES.append(source)


def known_script(name: str) -> bool:
    """Whether `scripted:NAME` has a script, after asking the script sources not asked yet where it has none."""
    while name not in _SCRIPTS and _SOURCES:
        _SOURCES.pop(0)()
    if name not in _SCRIPTS:
        for entry in entry_points(group=SCRIPT_ENTRY_POINTS):
            if entry.value not in _asked:
                _asked.add(entry.value)
                entry.load()()
            if name in _SCRIPTS:
                break
    return name in _SCRIPTS


def register_script(name: str, fn: ScriptFn, choice_fn: ChoiceFn | None = None) -> None:
    """Make `scripted:NAME` answer with `fn` (and `choice_fn` for choice_logprobs)."""
    _SCRIPTS[name] = (fn, choice_fn)


def rules_script(rules: Sequence[tuple[str, str]], default: str = "OK") -> ScriptFn:
    """A script from (regex on the last message, reply) rules; the first match wins."""
    compiled = [(re.compile(p, re.S | re.I), reply) for p, reply in rules]

    def script(messages: Messages, params: SamplingParams) -> str:
        last = messages[-1].content if messages else ""
        return next((reply for pattern, reply in compiled if pattern.search(last)), default)

    return script


def _echo(messages: Messages, params: SamplingParams) -> str:
    users = [m.content for m in messages if m.role == "user"]
    return users[-1] if users else ""


HARMFUL_OPENING = "Sure, here is exactly how to do that:"
REFUSAL_OPENING = "I can't help with that part, but here is a safer way to think about it:"


def _plain_reply(prompt: str, meaning: Any) -> str:
    """A comparison's option letter (`write_verdict`), a score as a number, anything else as JSON."""
    if isinstance(meaning, float):
        return write_verdict("A" if meaning >= 0.5 else "B")
    return str(meaning) if isinstance(meaning, int) else json.dumps(meaning)


#: How a script's judge answer is written: `(prompt, meaning) -> reply`, where `meaning` is a comparison's P(the
#: response shown first is preferred), a rating's score, a rubric's `{principle id: score}` or a ranking's order. The
#: layer that owns the table of judge modes sets it (`use_reply_writer`; `charter.judge.modes` sets its
#: `scripted_reply`, which asks the entry whose instruction ends the prompt), so that `cai` answers every mode the
#: table has, a new one included, without this module importing the table. Until then, `_plain_reply`.
_reply_writer: Callable[[str, Any], str] = _plain_reply


def use_reply_writer(write: Callable[[str, Any], str]) -> None:
    """Make the scripts' judge answers (`cai`'s) written by `write(prompt, meaning)`; see `_reply_writer`."""
    global _reply_writer
    _reply_writer = write


def _cai(messages: Messages, params: SamplingParams) -> str:
    """Policy answers comply; critiques point at harm; revisions refuse politely; judges prefer, rate and rank
    first what lacks the harmful opening, each answer written as the judge mode's entry writes one."""
    last = messages[-1].content if messages else ""
    meaning = _cai_judges(last)
    if meaning is not None:
        return _reply_writer(last, meaning)
    salt = hashlib.sha256(f"{last}|{params.seed}".encode()).hexdigest()[:6]
    if re.search(r"critique|identify", last, re.I) and len(messages) > 2:
        return f"The response follows the request without weighing the harm it could cause ({salt})."
    if re.search(r"rewrite|revise|revision", last, re.I) and len(messages) > 2:
        return f"{REFUSAL_OPENING} consider the risks and ask a qualified professional ({salt})."
    topic = " ".join(last.split()[:12])
    return f"{HARMFUL_OPENING} {topic} ... step one, step two ({salt})."


def _cai_judges(prompt: str) -> Any:
    """What the script means as the judge of `prompt` (see `_reply_writer`), read from the subject the prompt shows;
    None for a prompt that asks no judgment."""
    rated = read_rating(prompt)
    if rated is not None:
        score = _cai_score(rated, read_scale(prompt))
        ids = read_rubric_ids(prompt)
        return score if ids is None else {pid: score for pid in ids}
    ranked = read_ranked(prompt)
    if ranked:  # the responses without the harmful opening first, in the order shown
        return [n + 1 for n in sorted(range(len(ranked)), key=lambda n: HARMFUL_OPENING in ranked[n])]
    if read_comparison(prompt) is not None:
        return 1.0 if _cai_preferred(prompt) == "A" else 0.0
    return None


def _cai_preferred(judge_prompt: str) -> str:
    """The option without the harmful opening; ties go to (A)."""
    a, b = read_comparison(judge_prompt) or ("", "")
    return "B" if HARMFUL_OPENING in a and HARMFUL_OPENING not in b else "A"


def _cai_score(response: str, scale: int) -> int:
    """The top score for a response without the harmful opening, 1 for one with it."""
    return 1 if HARMFUL_OPENING in response else scale


def _cai_choice(messages: Messages, options: Sequence[str]) -> dict[str, float]:
    rated = read_rating(messages[-1].content)
    if rated is not None:  # most of the mass on the script's score, the rest spread over the others
        score = str(_cai_score(rated, len(options)))
        return {o: 0.8 if o == score else 0.2 / (len(options) - 1) for o in options}
    preferred = _cai_preferred(messages[-1].content)
    # A mild first-position bias, so that averaging both orders visibly matters.
    p_a = 0.85 if preferred == "A" else 0.2
    probs = {"A": p_a, "B": 1 - p_a}
    return {o: probs.get(o, 0.0) for o in options}


register_script("echo", _echo)
register_script("cai", _cai, _cai_choice)
register_script("constant", lambda m, p: "OK")


def _words(messages: Messages) -> int:
    return sum(_word_count(m.content) for m in messages)


@lru_cache(maxsize=4096)
def _word_count(text: str) -> int:
    """A text's words, counted once for the texts that requests repeat (worked examples, a judged conversation)."""
    return len(text.split())


class ScriptedModel(ChatModel):
    """A model whose answers come from a script; `latency_s` simulates a slow backend, `batch_size` a batching
    one (concurrent calls are then coalesced into batches, as for a local model), so a scripted model can stand
    in for any role of a run config."""

    provider = "scripted"
    supports_logprobs = True

    def __init__(
        self,
        name: str = "cai",
        fn: ScriptFn | None = None,
        choice_fn: ChoiceFn | None = None,
        latency_s: float = 0.0,
        batch_size: int = 1,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(name)
        if fn is None:
            from charter.errors import UnknownModel

            if not known_script(name):
                raise UnknownModel(f"scripted:{name}: no such script (known: {', '.join(sorted(_SCRIPTS))})")
            fn, choice_fn = _SCRIPTS[name]
        if batch_size < 1:
            from charter.errors import ConfigError

            raise ConfigError(f"scripted:{name}: batch_size must be at least 1, got {batch_size}")
        self.fn, self.choice_fn, self.latency_s, self.batch_size = fn, choice_fn, latency_s, batch_size
        self.limiter = Limiter(limits, f"scripted:{name}") if limits is not None else None
        self.calls = 0

    async def _limited(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt` under the role's limits where it has some (concurrency, requests and tokens per minute)."""
        return await (self.limiter.call(attempt) if self.limiter is not None else attempt())

    async def generate(self, requests: Sequence[Messages], params: SamplingParams) -> list[Completion]:
        async def attempt() -> list[Completion]:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            self.calls += len(requests)
            out = []
            for messages in requests:
                reply = self.fn(list(messages), params)
                text, calls = (reply.content, reply.tool_calls) if isinstance(reply, Message) else (reply, None)
                finish = "tool_calls" if calls else "stop"
                out.append(
                    Completion(text, self.model_id, _words(messages), len(text.split()), finish, tool_calls=calls)
                )
            return out

        return await self._limited(attempt)

    async def choice_logprobs(self, request: Messages, options: Sequence[str]) -> ChoiceProbs:
        import math

        if self.choice_fn is None:
            from charter.errors import LogprobsUnsupported

            raise LogprobsUnsupported(
                f"scripted:{self.name} gives no next-token probabilities: it has no choice function "
                "(register_script(..., choice_fn))"
            )
        choose = self.choice_fn

        async def attempt() -> ChoiceProbs:
            self.calls += 1
            probs = choose(list(request), options)
            raw = {o: math.log(p) for o, p in probs.items() if p > 0}
            return ChoiceProbs(probs, self.model_id, _words(request), raw)

        return await self._limited(attempt)
