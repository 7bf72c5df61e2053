"""A scripted judge that fails some comparisons, as a real judge does now and then: `scripted:garbled-pairs` plays
`scripted:cai`, but answers a comparison of two responses that both hold the word "garbled" with no verdict (a parse
failure, in every order and on every retry). Registered on import."""

from charter.judge_prompt import read_comparison
from charter.providers.base import Messages, SamplingParams
from charter.providers.scripted import REFUSAL_OPENING, _cai, _cai_choice, register_script

MARK = "garbled"
#: Three safe completions whose comparisons with one another fail: any two of them are one failed comparison.
GARBLED = [f"{REFUSAL_OPENING} a {MARK} answer number {n}" for n in (1, 2, 3)]


def _garbled_pairs(messages: Messages, params: SamplingParams) -> str:
    shown = read_comparison(messages[-1].content)
    if shown is not None and all(MARK in response for response in shown):
        return "I would rather not say."
    return _cai(messages, params)


register_script("garbled-pairs", _garbled_pairs, _cai_choice)
