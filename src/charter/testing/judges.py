"""Scripted judges with a known bias, to check that a judge audit finds what is built in (and nothing else).

`register_biased_judges()` registers, as `scripted:NAME`:

- `always-a`: always answers (A), with P(A) = 0.9: pure position bias;
- `longer`: prefers the longer response, P = 0.9: pure length bias;
- `obeys-answer-is`: follows a planted "the answer is (X)" inside a response, else prefers the longer one;
- `self-preferring`: writes "SELF: ..." when asked to answer, and prefers a response that starts so;

`oracle_script(pairs)` makes a judge that knows which response of each given pair is the better one and is
moved by nothing else. Each reads the two responses out of the judge prompt with `shown_responses`, in the
fenced format (2) and, best effort, the unfenced one (1).
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

from charter.providers.base import Messages, SamplingParams
from charter.providers.scripted import register_script

_FENCED = re.compile(r"<(response-[ab])-(\w+)>\n(.*?)\n</\1-\2>", re.S)
_UNFENCED = re.compile(r"\nOptions:\n\(A\) (.*?)\n\(B\) (.*)\n\n(?:Answer with|Think it through)", re.S)
SELF_MARK = "SELF:"
P_SURE = 0.9


def shown_responses(text: str) -> tuple[str, str]:
    """The responses shown as (A) and (B) in a judge prompt."""
    fenced = {tag: body for tag, _, body in _FENCED.findall(text)}
    if "response-a" in fenced and "response-b" in fenced:
        return fenced["response-a"], fenced["response-b"]
    match = _UNFENCED.search(text)
    if match is None:
        raise ValueError("not a judge prompt: no responses (A) and (B) found")
    return match.group(1), match.group(2)


def _answer(p_a: float, options: Sequence[str]) -> dict[str, float]:
    probs = {"A": p_a, "B": 1.0 - p_a}
    return {o: probs.get(o, 0.0) for o in options}


def _letter(p_a: float) -> str:
    return "A" if p_a >= 0.5 else "B"


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
        return _answer(p_of(*shown_responses(messages[-1]["content"])), options)

    def generate(messages: Messages, params: SamplingParams) -> str:
        last = messages[-1]["content"] if messages else ""
        if "Response (A)" in last or "\nOptions:\n(A)" in last:
            return _letter(p_of(*shown_responses(last)))
        return f"{SELF_MARK} my own answer to: {last[:60]}"

    return generate, choice


def oracle_script(pairs: Iterable[tuple[str, str]]) -> tuple[Callable, Callable]:
    """(generate, choice) functions of a judge that knows, for each (better, worse) pair, which is better: it
    finds where the better response's first sentence and the worse response are shown, and prefers the better.
    It ignores length, order and anything planted. Unknown texts get 0.5."""
    known = [(better.split(".")[0], worse) for better, worse in pairs]

    def p_a(a: str, b: str) -> float:
        for first_sentence, worse in known:  # a known pair, in either order
            if a.startswith(first_sentence) and worse in b:
                return P_SURE
            if b.startswith(first_sentence) and worse in a:
                return 1 - P_SURE
        for first_sentence, worse in known:  # one known response against an unknown one (its own answer)
            a_good, b_good = a.startswith(first_sentence), b.startswith(first_sentence)
            if a_good != b_good:
                return P_SURE if a_good else 1 - P_SURE
            a_bad, b_bad = worse in a, worse in b
            if a_bad != b_bad:
                return 1 - P_SURE if a_bad else P_SURE
        return 0.5

    return _script(p_a)


def register_biased_judges() -> None:
    """Register the scripted judges of known bias (idempotent)."""
    register_script("always-a", lambda m, p: "A", lambda m, o: _answer(P_SURE, o))
    register_script("longer", *_script(_p_longer))
    register_script("obeys-answer-is", *_script(_p_obeys))
    register_script("self-preferring", *_script(_p_self))
