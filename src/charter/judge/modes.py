"""The table of judge modes: one entry a mode, and every behaviour that depends on the mode read from it (never from
an `if mode == ...` elsewhere). An entry (`Mode`, see `charter.judge.judgment`) holds:

- `kind`: what kind of judgment it is: `COMPARES` (pairwise: the two responses in one prompt, an option letter or the
  option tokens' probabilities, in both orders where set), `RATES_EACH_PRINCIPLE` or `RATES_ALL_PRINCIPLES` (rating:
  each response rated alone on the constitution's rubric, one call a principle or one structured-output call for all
  of them, and the scores compared);
- `reply`: how its reply is asked for and read (`Reply`): the instruction that ends the prompt, the reader of a text
  reply or log-probabilities instead, whether each vote is clamped, the reply budget; or `replies`, the ways it may
  reply by name, of which the setting `rating` chooses one (mode `score`).

A new mode is one `register_mode(Mode(...))`, here for the package's own (`JudgeSettings.mode` accepts any name in
`MODES`); the prompt around the instruction is the wire format's (`charter.judge_prompt`), the same for every mode.
A mode whose reply is a JSON object (as `rubric`) reads it with its `Reply.read` and asks for it with the kind's
structured output.
"""

from __future__ import annotations

from charter.checklist.prompt import CHECKLIST_INSTRUCTION, read_checklist_reply
from charter.errors import ConfigError
from charter.judge.compare import COMPARES
from charter.judge.judgment import Kind, Mode, Reply
from charter.judge.score import RATES_ALL_PRINCIPLES, RATES_EACH_PRINCIPLE
from charter.judge_prompt import (
    read_letter,
    read_number,
    read_reasoned_letter,
    read_reasoned_score,
    read_rubric,
)

__all__ = [
    "COMPARES",
    "MODES",
    "RATES_ALL_PRINCIPLES",
    "RATES_EACH_PRINCIPLE",
    "Kind",
    "Mode",
    "Reply",
    "mode",
    "pairwise_modes",
    "rating_modes",
    "rating_readers",
    "register_mode",
]

MODES: dict[str, Mode] = {}


def _check_reply(mode: Mode, name: str, reply: Reply) -> None:
    if not reply.logprobs and reply.read is None:
        raise ValueError(f"mode {mode.name!r} ({name}) answers in text: give its Reply a read")
    if "\n\n" in reply.instruction.strip():
        raise ValueError(f"mode {mode.name!r} ({name}): the instruction is one paragraph (no blank line)")


def register_mode(mode: Mode) -> Mode:
    """Add `mode` to the table (or replace the entry of that name); returns it. ValueError for an entry with no way to
    reply, or one both ways; for a text reply without a reader; for an instruction of more than one paragraph."""
    if (mode.reply is None) == (not mode.replies):
        raise ValueError(f"mode {mode.name!r}: give it one reply, or replies by name (not both)")
    replies = dict(mode.replies) if mode.reply is None else {mode.name: mode.reply}
    for name, reply in replies.items():
        _check_reply(mode, name, reply)
    MODES[mode.name] = mode
    return mode


def mode(name: str) -> Mode:
    """The table's entry for `name`; ValueError naming the modes there are for an unknown one."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown judge mode {name!r}: one of {', '.join(MODES)}") from None


def pairwise_modes() -> list[str]:
    """The modes that compare two responses in one prompt."""
    return [name for name, entry in MODES.items() if entry.kind.name == "pairwise"]


def rating_modes() -> list[str]:
    """The modes that rate each response alone."""
    return [name for name, entry in MODES.items() if entry.kind.name == "rating"]


def rating_readers() -> list[str]:
    """The names `JudgeSettings.rating` may give: the ways a mode with several replies may be read."""
    return list(dict.fromkeys(name for entry in MODES.values() for name in entry.replies))


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
        ),
    )
)
register_mode(
    Mode(
        "verdict",
        "one letter, A or B",
        COMPARES,
        Reply("Answer with a single letter, A or B, and nothing else.", read_letter),
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
            ),
            "verdict": Reply("Answer with a single number from 1 to {scale}, and nothing else.", read_number),
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
        ),
    )
)


async def _needs_its_checklist(*_: object) -> list:
    """Mode `checklist` judges a pair against its prompt's checklist (`charter.judge.checklist`, which the run
    calls with it); a bare pair carries none."""
    raise ConfigError(
        "judge mode checklist judges a pair against its prompt's checklist: use it in a run with a `checklist:` "
        "section, or `scoring: checklist` for rewards"
    )


#: The kind of judgment of mode `checklist`: each response rated alone against its prompt's checklist.
CHECKS_ITEMS = Kind("rating", _needs_its_checklist, by_checklist=True)

register_mode(
    Mode(
        "checklist",
        "each response checked alone against its prompt's checklist (a run config's `checklist:` section) in one "
        "structured-output call, a reason before each item's verdict; verifier items checked by code",
        CHECKS_ITEMS,
        Reply(CHECKLIST_INSTRUCTION, read=read_checklist_reply, max_tokens=1024),
    )
)
