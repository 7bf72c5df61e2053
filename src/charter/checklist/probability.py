"""P(yes) for each item of a checklist reply, from the judge's token log-probabilities where the provider gives them.

The reply is the one structured call's JSON (`{"item": {"reason": "...", "verdict": "yes"}, ...}`). For each item
answered yes or no, the token where its verdict's value begins is found in the reply's tokens (by byte offset: the
tokens must spell the reply), and that token's top alternatives are read: those that spell the start of `yes` (`y`,
`ye`, `yes`, any case, with the same text before the verdict in the token, such as a quote) add to P(yes), those
that spell `no` to P(no), and `P(yes) = P(yes) / (P(yes) + P(no))` over the alternatives the provider listed (a
spelling that could be either, such as `n`, counts for neither). Where there is no probability to read (the provider
gave no log-probabilities, the tokens do not spell the reply, the verdict cannot be found among them, or its
alternatives name neither yes nor no), the item's verdict stands and the record says why (`p_yes_missing`): never a
made-up 0.5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from charter.checklist.prompt import read_verdict
from charter.providers.base import ChatModel, TokenLogprob, token_bytes
from charter.records import ItemVerdict

#: The top alternatives a checklist call asks for at each token, where the provider gives them.
CHECKLIST_TOP_LOGPROBS = 5
NO_LOGPROBS = "the provider gave no log-probabilities for this reply"
_YES, _NO = {"y", "ye", "yes"}, {"no"}


def logprobs_asked(model: ChatModel | None) -> dict[str, int]:
    """What a checklist call's params add to ask for the tokens' log-probabilities: `top_logprobs` where the model
    gives them, nothing otherwise (so the call, and its cache key, are as before for the others)."""
    return {"top_logprobs": CHECKLIST_TOP_LOGPROBS} if model is not None and model.gives_token_logprobs else {}


def with_probabilities(
    verdicts: Mapping[str, ItemVerdict], text: str, tokens: Sequence[TokenLogprob] | None
) -> dict[str, ItemVerdict]:
    """The verdicts with P(yes) set on each judge verdict yes or no where `tokens` give it, and `p_yes_missing`
    saying why where they do not (n/a, failed and verifier verdicts are returned as they are)."""
    asked = [i for i, v in verdicts.items() if v.by == "judge" and v.verdict in ("yes", "no")]
    found = verdict_probabilities(text, asked, tokens)
    out = dict(verdicts)
    for item_id in asked:
        p = found[item_id]
        update = {"p_yes": p} if isinstance(p, float) else {"p_yes_missing": p}
        out[item_id] = verdicts[item_id].model_copy(update=update)
    return out


def verdict_probabilities(
    text: str, item_ids: Sequence[str], tokens: Sequence[TokenLogprob] | None
) -> dict[str, float | str]:
    """Each item's P(yes), or a line saying why there is none (see the module's rules)."""
    if not tokens:
        return {i: NO_LOGPROBS for i in item_ids}
    spelled = [token_bytes(t) for t in tokens]
    if b"".join(spelled) != text.encode():
        return {i: "the log-probabilities do not spell the reply" for i in item_ids}
    starts = [0]
    for piece in spelled:
        starts.append(starts[-1] + len(piece))
    out: dict[str, float | str] = {}
    for item_id in item_ids:
        at = _verdict_at(text, item_id)
        if at is None:
            out[item_id] = "the verdict was not found in the reply's tokens"
            continue
        offset = len(text[:at].encode())
        index = next(k for k in range(len(tokens)) if starts[k] <= offset < starts[k + 1])
        before = spelled[index][: offset - starts[index]].decode("utf-8", "replace")
        out[item_id] = _p_yes(tokens[index], before)
    return out


def _verdict_at(text: str, item_id: str) -> int | None:
    """Where the item's verdict value begins in the reply (its first character after the quote), or None."""
    key = re.search(r'(?<!\\)"' + re.escape(item_id) + r'"\s*:\s*', text)
    if key is None:
        return None
    at = key.end()
    if text.startswith("{", at):
        inner = re.compile(r'(?<!\\)"verdict"\s*:\s*"').search(text, at)
        at = -1 if inner is None else inner.end()
    elif text.startswith('"', at):
        at += 1
    else:
        return None
    end = text.find('"', at) if at >= 0 else -1
    return at if end > at and read_verdict(text[at:end]) in ("yes", "no") else None


def _p_yes(token: TokenLogprob, before: str) -> float | str:
    alternatives = {a["token"]: a["logprob"] for a in token.get("top_logprobs") or []}
    alternatives.setdefault(token["token"], token["logprob"])
    yes = no = 0.0
    for spelled, logprob in alternatives.items():
        if not spelled.startswith(before):
            continue
        said = spelled[len(before) :].strip().strip('"').lower()
        if said in _YES:
            yes += math.exp(logprob)
        elif said in _NO:
            no += math.exp(logprob)
    if yes + no == 0.0:
        return "the verdict token's alternatives name neither yes nor no"
    return yes / (yes + no)


__all__ = ["CHECKLIST_TOP_LOGPROBS", "NO_LOGPROBS", "logprobs_asked", "verdict_probabilities", "with_probabilities"]
