"""The table of judge modes: how the judge answers, and how its answer is read.

Every behaviour that depends on the mode is read from its entry here, never from an `if mode == ...` elsewhere:

- `kind`: `pairwise` modes compare two responses in one prompt (an option letter, or the option tokens'
  probabilities); `rating` modes rate each response alone on the constitution's rubric and compare the scores. A
  rating mode's reply is read the way its `rating` setting names (an entry with a `rating_instruction`).
- `logprobs`: the answer is the next-token probabilities of the option (or score) tokens, not text; such calls need a
  provider with `choice_logprobs`, and are never re-asked.
- `instruction` / `rating_instruction`: the last line of the comparison / rating prompt (`charter.judge_prompt`
  writes the rest of the prompt, the same for every mode).
- `read_choice` / `read_score`: the readers of a text answer (`charter.judge_prompt`); a reply they cannot read is
  re-asked, then recorded as a failure.
- `clamped`: each vote is clamped into `JudgeSettings.clamp` (chain-of-thought labels, Bai et al. 2022).
- `max_tokens`: the reply budget of a text answer when `judge.params` sets none.
- `all_principles`: a rating mode whose one structured-output call rates a response under every principle of the
  pair at once (a JSON object of scores, `charter.judge_prompt.write_rubric`), rather than one call per principle;
  its reply is read by its own entry, whatever `rating` says.
- `by_checklist`: a rating mode that checks each response against its prompt's checklist (`charter.judge.checklist`:
  one structured-output call a response, a reason before each item's verdict) rather than the constitution's
  principles; a run needs a `checklist:` section for it.

A new mode is one `Mode` here (its instruction text beside the others in `charter.judge_prompt`); `register_mode`
adds one at run time. `JudgeSettings.mode` accepts any name in `MODES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from charter.judge_prompt import (
    INSTRUCTIONS,
    RATING_INSTRUCTIONS,
    read_letter,
    read_number,
    read_reasoned_letter,
    read_reasoned_score,
)

#: Whether a mode compares two responses in one prompt or rates each response alone.
ModeKind = Literal["pairwise", "rating"]


@dataclass(frozen=True)
class Mode:
    """One way the judge answers (see the module's docstring for each field's use)."""

    name: str
    kind: ModeKind
    description: str
    logprobs: bool = False
    instruction: str = ""
    rating_instruction: str = ""
    read_choice: Callable[[str], str] | None = None
    read_score: Callable[[str, int], int] | None = None
    clamped: bool = False
    max_tokens: int = 8
    all_principles: bool = False
    by_checklist: bool = False

    @property
    def rates(self) -> bool:
        """Whether a rating mode's replies can be read this way (`JudgeSettings.rating` may name it)."""
        return bool(self.rating_instruction)


MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> Mode:
    """Add `mode` to the table (or replace the entry of that name); returns it."""
    if mode.kind == "pairwise" and not mode.logprobs and (mode.read_choice is None or not mode.instruction):
        raise ValueError(f"pairwise mode {mode.name!r} answers in text: give it an instruction and a read_choice")
    if mode.rates and not mode.logprobs and mode.read_score is None:
        raise ValueError(f"mode {mode.name!r} rates in text: give it a read_score")
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
    return [name for name, entry in MODES.items() if entry.kind == "pairwise"]


def rating_modes() -> list[str]:
    """The modes that rate each response alone."""
    return [name for name, entry in MODES.items() if entry.kind == "rating"]


def rating_readers() -> list[str]:
    """The modes a rating's reply can be read as."""
    return [name for name, entry in MODES.items() if entry.rates]


register_mode(
    Mode(
        "logprobs",
        "pairwise",
        "option-token probabilities: P('A') against P('B') as the next token",
        logprobs=True,
        instruction=INSTRUCTIONS["logprobs"],
        rating_instruction=RATING_INSTRUCTIONS["logprobs"],
        max_tokens=1,
    )
)
register_mode(
    Mode(
        "cot",
        "pairwise",
        "reasoning, then 'Therefore, the answer is (A)'; each vote clamped into `clamp`",
        instruction=INSTRUCTIONS["cot"],
        rating_instruction=RATING_INSTRUCTIONS["cot"],
        read_choice=read_reasoned_letter,
        read_score=read_reasoned_score,
        clamped=True,
        max_tokens=512,
    )
)
register_mode(
    Mode(
        "verdict",
        "pairwise",
        "one letter, A or B",
        instruction=INSTRUCTIONS["verdict"],
        rating_instruction=RATING_INSTRUCTIONS["verdict"],
        read_choice=read_letter,
        read_score=read_number,
    )
)
register_mode(
    Mode(
        "score",
        "rating",
        "each response rated alone on the constitution's rubric, 1 to `scale`, read as `rating` says",
    )
)
register_mode(
    Mode(
        "rubric",
        "rating",
        "each response rated alone on all of the pair's principles in one structured-output call (a JSON object "
        "of scores, 1 to `scale`)",
        all_principles=True,
        max_tokens=256,
    )
)
register_mode(
    Mode(
        "checklist",
        "rating",
        "each response checked alone against its prompt's checklist (a run config's `checklist:` section) in one "
        "structured-output call, a reason before each item's verdict; verifier items checked by code",
        all_principles=True,
        by_checklist=True,
        max_tokens=1024,
    )
)
