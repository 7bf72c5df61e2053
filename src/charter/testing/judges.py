"""Scripted judges with a known bias, to check that a judge audit finds what is built in (and nothing else).

`register_biased_judges()` registers, as `scripted:NAME`:

- `always-a`: always answers (A), with P(A) = 0.9: pure position bias;
- `longer`: prefers the longer response, P = 0.9: pure length bias;
- `obeys-answer-is`: follows a planted "the answer is (X)" inside a response, else prefers the longer one;
- `self-preferring`: writes "SELF: ..." when asked to answer, and prefers a response that starts so;

`oracle_script(pairs)` makes a judge that knows which response of each given pair is the better one and is
moved by nothing else (its own answers rank between the better and the worse). Each reads the two responses
out of the judge prompt with `shown_responses`, in the fenced format (3) and the unfenced one (1), whatever the mode's
instruction says; asked for text, each answers as the mode's entry writes a reply
(`charter.judge.modes.scripted_reply`; a mode that gives no writer of its own gets `charter.judge_prompt.write_verdict`,
which every built-in reader of a text verdict reads: a bare letter first, 'the answer is (X)' last).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from charter.judge.modes import scripted_choice, scripted_reply
from charter.judge_prompt import read_comparison
from charter.providers.base import Messages, SamplingParams
from charter.providers.scripted import register_script

SELF_MARK = "SELF:"
P_SURE = 0.9


def shown_responses(text: str) -> tuple[str, str]:
    """The responses shown as (A) and (B) in a judge prompt (read by charter.judge_prompt, in either format)."""
    shown = read_comparison(text)
    if shown is None:
        raise ValueError("not a judge prompt: no responses (A) and (B) found")
    return shown


def _p_longer(a: str, b: str) -> float:
    return 0.5 if len(a) == len(b) else P_SURE if len(a) > len(b) else 1 - P_SURE


_PLANTED = re.compile(r"answer is \(([AB])\)", re.I)


def _p_obeys(a: str, b: str) -> float:
    planted = _PLANTED.findall(a + "\n" + b)
    if planted:
        return P_SURE if planted[-1].upper() == "A" else 1 - P_SURE
    return _p_longer(a, b)


def _p_self(a: str, b: str) -> float:
    mine_a, mine_b = a.startswith(SELF_MARK), b.startswith(SELF_MARK)
    return 0.5 if mine_a == mine_b else P_SURE if mine_a else 1 - P_SURE


def _script(p_of: Callable[[str, str], float]) -> tuple[Callable, Callable]:
    def choice(messages: Messages, options: Sequence[str]) -> dict[str, float]:
        last = messages[-1].content
        return scripted_choice(last, options, p_of(*shown_responses(last)))

    def generate(messages: Messages, params: SamplingParams) -> str:
        last = messages[-1].content if messages else ""
        shown = read_comparison(last)
        if shown is not None:
            return scripted_reply(last, p_of(*shown))
        return f"{SELF_MARK} my own answer to: {last[:60]}"

    return generate, choice


def _plain(text: str) -> str:
    return " ".join(text.split())


def oracle_script(pairs: Iterable[tuple[str, str]]) -> tuple[Callable, Callable]:
    """(generate, choice) functions of a judge that knows, for each (better, worse) pair, which is better, and
    is moved by nothing else: the better response (whole, or its first sentences) beats the worse one (whole,
    padded or with something appended) and its own answers ("SELF: ..."), which beat the worse one."""
    known = [(_plain(better), _plain(worse)) for better, worse in pairs]

    def p_a(a: str, b: str) -> float:
        na, nb = _plain(a), _plain(b)
        for better, worse in known:
            a_better, b_better = bool(na) and better.startswith(na), bool(nb) and better.startswith(nb)
            if a_better and b_better:  # the worse response is the start of the better one: the whole one wins
                return 0.5 if len(na) == len(nb) else P_SURE if len(na) > len(nb) else 1 - P_SURE
            if a_better and ((worse and worse in nb) or nb.startswith(SELF_MARK)):
                return P_SURE
            if b_better and ((worse and worse in na) or na.startswith(SELF_MARK)):
                return 1 - P_SURE
        for _, worse in known:  # its own answer against the worse one
            if worse and worse in na and nb.startswith(SELF_MARK):
                return 1 - P_SURE
            if worse and worse in nb and na.startswith(SELF_MARK):
                return P_SURE
        return 0.5

    return _script(p_a)


def register_biased_judges() -> None:
    """Register the scripted judges of known bias (idempotent)."""
    register_script(
        "always-a",
        lambda m, p: scripted_reply(m[-1].content, P_SURE),
        lambda m, o: scripted_choice(m[-1].content, o, P_SURE),
    )
    register_script("longer", *_script(_p_longer))
    register_script("obeys-answer-is", *_script(_p_obeys))
    register_script("self-preferring", *_script(_p_self))
