"""The table of judge modes: one entry a mode, and every behaviour that depends on the mode read from it (never from
an `if mode == ...` elsewhere, nor from a mode's name written anywhere else in the package: a test scans for one).
An entry (`Mode`, see `charter.judge.judgment`) holds:

- `kind`: what kind of judgment it is (`Kind`): its subject (a pair, each response alone, a group), its criteria (the
  constitution's principles, or the prompt's checklist) and the callables that judge: `COMPARES` (pairwise: the two
  responses in one prompt, in both orders where set), `RATES_EACH_PRINCIPLE` or `RATES_ALL_PRINCIPLES` (rating: each
  response rated alone on the constitution's rubric, one call a principle or one structured-output call for all of
  them, and the scores compared), `CHECKS_ITEMS` (checklist: each response checked alone against its prompt's
  checklist, which the caller passes as `ChecklistCriteria`) or `ORDERS` (ranking: a group ordered in one call);
- `reply`: how its reply is asked for and read (`Reply`): the instruction that ends the prompt, the reader of a text
  reply or log-probabilities instead, its options and what each says, whether each vote is clamped, the reply
  budget, and how a scripted judge writes it; or `replies`, the ways it may reply by name, of which the setting
  `rating` chooses one (mode `score`).

A new mode is one `register_mode(Mode(...))`, here for the package's own (`JudgeSettings.mode` accepts any name in
`MODES` whose kind judges pairs, and its schema lists them); the prompt around the instruction is the wire format's
(`charter.judge_prompt`), the same for every mode. The scripted provider's `cai` and the scripted, fault-injecting
and lab judges of `charter.testing` write their replies with `scripted_reply`, which asks the entry whose instruction
ends the prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from charter.checklist.prompt import CHECKLIST_INSTRUCTION, read_checklist_reply
from charter.judge.compare import COMPARES, ORDERS
from charter.judge.judgment import LETTERS, ChecklistCriteria, Kind, Mode, Reply
from charter.judge.score import CHECKS_ITEMS, RATES_ALL_PRINCIPLES, RATES_EACH_PRINCIPLE
from charter.judge.steps import JUDGES_STEPS, STEP_REPLY
from charter.judge_prompt import (
    RANKING_INSTRUCTION,
    read_letter,
    read_number,
    read_ranking,
    read_reasoned_letter,
    read_reasoned_score,
    read_rubric,
    write_verdict,
)
from charter.providers.scripted import use_reply_writer

__all__ = [
    "CHECKLIST_MODE",
    "CHECKS_ITEMS",
    "COMPARES",
    "DEFAULT_MODE",
    "DEFAULT_RATING",
    "DEFAULT_RATING_MODE",
    "MODES",
    "ORDERS",
    "RANKING_MODE",
    "RATES_ALL_PRINCIPLES",
    "RATES_EACH_PRINCIPLE",
    "STEPWISE_MODE",
    "JUDGES_STEPS",
    "ChecklistCriteria",
    "Kind",
    "Mode",
    "Reply",
    "answer_modes",
    "context_modes",
    "described",
    "mode",
    "pair_modes",
    "pairwise_modes",
    "rating_modes",
    "rating_readers",
    "register_mode",
    "reply_asked",
    "scripted_choice",
    "scripted_reply",
    "text_modes",
    "text_reading_advice",
]

MODES: dict[str, Mode] = {}


def _check_reply(mode: Mode, name: str, reply: Reply) -> None:
    if not reply.logprobs and reply.read is None:
        raise ValueError(f"mode {mode.name!r} ({name}) answers in text: give its Reply a read")
    if "\n\n" in reply.instruction.strip():
        raise ValueError(f"mode {mode.name!r} ({name}): the instruction is one paragraph (no blank line)")
    if not reply.options:
        raise ValueError(f"mode {mode.name!r} ({name}): give its Reply at least one option")


def register_mode(mode: Mode) -> Mode:
    """Add `mode` to the table (or replace the entry of that name); returns it. ValueError for an entry with no way to
    reply, or one both ways; for a text reply without a reader; for an instruction of more than one paragraph."""
    if (mode.reply is None) == (not mode.replies):
        raise ValueError(f"mode {mode.name!r}: give it one reply, or replies by name (not both)")
    for name, reply in mode.all_replies().items():
        _check_reply(mode, name, reply)
    MODES[mode.name] = mode
    return mode


def mode(name: str) -> Mode:
    """The table's entry for `name`; ValueError naming the modes there are for an unknown one."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown judge mode {name!r}: one of {', '.join(MODES)}") from None


def pair_modes() -> list[str]:
    """The modes that judge a pair (every kind but one that orders a group): what `JudgeSettings.mode` accepts."""
    return [name for name, entry in MODES.items() if entry.kind.subject != "group"]


def pairwise_modes() -> list[str]:
    """The modes that compare two responses in one prompt."""
    return [name for name, entry in MODES.items() if entry.kind.subject == "pair"]


def answer_modes() -> list[str]:
    """The modes that judge two answers to one prompt: those that compare them, and those that judge each as the
    next step of the prompt's conversation."""
    return [name for name, entry in MODES.items() if entry.kind.subject in ("pair", "step")]


def rating_modes() -> list[str]:
    """The modes that judge each response alone."""
    return [name for name, entry in MODES.items() if entry.kind.rates_alone]


def rating_readers() -> list[str]:
    """The names `JudgeSettings.rating` may give: the ways a mode with several replies may be read."""
    return list(dict.fromkeys(name for entry in MODES.values() for name in entry.replies))


def context_modes() -> list[str]:
    """The modes whose judgments need each prompt's checklist besides the pair."""
    return [name for name, entry in MODES.items() if entry.needs_context]


def text_modes() -> list[str]:
    """The modes that compare two responses in one prompt and read the verdict from the reply's text: what a judge
    whose backend gives no next-token probabilities can answer."""
    return [
        name
        for name, entry in MODES.items()
        if entry.kind.subject == "pair" and entry.reply is not None and not entry.reply.logprobs
    ]


def text_reading_advice(entry: Mode) -> str:
    """What to use instead of `entry` with a backend that gives no next-token probabilities: for a mode with several
    replies, those that read the reply's text (`JudgeSettings.rating`); else the modes that do (`text_modes`)."""
    if entry.replies:
        readers = [name for name, reply in entry.replies.items() if not reply.logprobs]
        return f"rate from the reply's text instead (judge rating: {' or '.join(readers)})"
    return f"use a judge mode that reads its verdict from the reply's text ({' or '.join(text_modes())})"


def described(names: list[str]) -> str:
    """`name`: description for each of `names`, as settings and commands list the modes."""
    return "; ".join(f"`{name}`: {MODES[name].description}" for name in names)


def _asks(reply: Reply, last_paragraph: str) -> bool:
    """Whether a prompt's last paragraph starts with the reply's instruction (a rating's with its scale filled in)."""
    pattern = re.escape(reply.instruction).replace(re.escape("{scale}"), r"\d+")
    return re.match(pattern, last_paragraph) is not None


def reply_asked(prompt: str) -> Reply | None:
    """The reply in the table that `prompt` asks for: the one whose instruction starts its last paragraph (the
    longest such instruction), or None for a prompt no mode wrote."""
    last = prompt.rstrip().rsplit("\n\n", 1)[-1]
    asked = [r for entry in MODES.values() for r in entry.all_replies().values() if _asks(r, last)]
    return max(asked, key=lambda r: len(r.instruction), default=None)


def scripted_reply(prompt: str, meaning: Any) -> str:
    """The reply a scripted judge writes to `prompt` to say `meaning` (a comparison's P(first shown preferred), a
    rating's score, a checklist's answers, a ranking's order), as the entry that wrote the prompt says
    (`Reply.answer`); a comparison's option letter (`write_verdict`) where the reply gives no answer of its own, or
    no mode wrote the prompt."""
    reply = reply_asked(prompt)
    if reply is not None and reply.answer is not None:
        return reply.answer(meaning)
    options = reply.options if reply is not None else LETTERS
    return write_verdict(min(options, key=lambda option: abs(options[option] - float(meaning))))


def scripted_choice(prompt: str, tokens: Sequence[str], p_first: float) -> dict[str, float]:
    """The probabilities a scripted judge gives `tokens` asked as the next token of `prompt` to say P(first shown
    preferred) = `p_first`: its mass on the two options of the reply asked (`reply_asked`; A and B where no mode
    wrote the prompt) whose values bracket `p_first`, so that their expected value is `p_first`."""
    reply = reply_asked(prompt)
    says = dict(reply.options) if reply is not None else dict(LETTERS)
    below = max((o for o in says if says[o] <= p_first), key=says.__getitem__, default=None)
    above = min((o for o in says if says[o] >= p_first), key=says.__getitem__, default=None)
    if below is None or above is None or below == above:
        mass = {below or above: 1.0}
    else:
        share = (p_first - says[below]) / (says[above] - says[below])
        mass = {above: share, below: 1.0 - share}
    return {token: mass.get(token, 0.0) for token in tokens}


use_reply_writer(scripted_reply)  # the scripted provider's `cai` answers a judge as the entry asked writes a reply


def _verdict(p_first: float) -> str:
    return write_verdict("A" if p_first >= 0.5 else "B")


def _reasoned_score(score: int) -> str:
    return f"It weighs the response against the principle. Therefore, the score is {score}"


#: The mode a judge uses when a config names none.
DEFAULT_MODE = "logprobs"
#: The rating mode a scoring that rates each completion takes when a config names none.
DEFAULT_RATING_MODE = "score"
#: How a rating is read when a config says nothing (`JudgeSettings.rating`).
DEFAULT_RATING = "logprobs"
#: How a rating is read where the judge writes its reasons first (a score after a chain of thought).
REASONED_RATING = "cot"

register_mode(
    Mode(
        "logprobs",
        "option-token probabilities: P('A') against P('B') as the next token",
        COMPARES,
        Reply("Answer with a single letter, A or B.", logprobs=True, max_tokens=1),
    )
)
register_mode(
    Mode(
        "cot",
        "reasoning, then 'Therefore, the answer is (A)'; each vote clamped into `clamp`",
        COMPARES,
        Reply(
            "Think it through step by step, then end with exactly 'Therefore, the answer is (A)' "
            "or 'Therefore, the answer is (B)'.",
            read_reasoned_letter,
            clamped=True,
            max_tokens=512,
            answer=_verdict,
        ),
    )
)
register_mode(
    Mode(
        "verdict",
        "one letter, A or B",
        COMPARES,
        Reply("Answer with a single letter, A or B, and nothing else.", read_letter, answer=_verdict),
    )
)
register_mode(
    Mode(
        "score",
        "each response rated alone on the constitution's rubric, 1 to `scale`, read as `rating` says",
        RATES_EACH_PRINCIPLE,
        replies={
            "logprobs": Reply("Answer with a single digit from 1 to {scale}.", logprobs=True, max_tokens=1),
            "cot": Reply(
                "Think it through step by step, then end with exactly 'Therefore, the score is N' with N from 1 to "
                "{scale}.",
                read_reasoned_score,
                max_tokens=512,
                answer=_reasoned_score,
            ),
            "verdict": Reply(
                "Answer with a single number from 1 to {scale}, and nothing else.", read_number, answer=str
            ),
        },
    )
)
register_mode(
    Mode(
        "rubric",
        "each response rated alone on all of the pair's principles in one structured-output call (a JSON object "
        "of scores, 1 to `scale`)",
        RATES_ALL_PRINCIPLES,
        Reply(
            "Answer with a JSON object that maps each principle's id to its score, an integer from 1 to {scale}, and "
            "nothing else.",
            read_rubric,
            max_tokens=256,
            answer=json.dumps,
        ),
    )
)
#: The checklist mode: each response checked against its prompt's checklist (evaluations' `scoring: checklist`).
CHECKLIST_MODE = register_mode(
    Mode(
        "checklist",
        "each response checked alone against its prompt's checklist (a run config's `checklist:` section) in one "
        "structured-output call, a reason before each item's verdict; verifier items checked by code",
        CHECKS_ITEMS,
        Reply(CHECKLIST_INSTRUCTION, read=read_checklist_reply, max_tokens=1024, answer=json.dumps),
    )
)
#: The ranking mode: a group of completions ordered in one call (the online scoring `rank` asks it).
RANKING_MODE = register_mode(
    Mode(
        "rank",
        "a group of responses ordered best first in one structured-output call (listwise; the online scoring "
        "`rank`); it judges no pair",
        ORDERS,
        Reply(
            RANKING_INSTRUCTION,
            read_ranking,
            max_tokens=32,
            answer=lambda order: json.dumps({"ranking": list(order)}),
        ),
    )
)
#: The step mode: each assistant step of a trajectory judged in the context of the turns before it, the first
#: violating step found (`charter.judge.steps.judge_steps`); a pair is judged as two candidate next steps.
STEPWISE_MODE = register_mode(
    Mode(
        "stepwise",
        "each assistant step of a trajectory judged in the context of the turns before it, in one structured-output "
        "call that names the first principle it violates and why; a pair is judged as two candidate next steps",
        JUDGES_STEPS,
        STEP_REPLY,
    )
)
