"""A graded A/B judge mode made in the tests alone: one `register_mode` entry (its reply reader, its four grades,
its scripted answer) and a scripted judge that answers whatever mode asks, through the table. `python -m
tests.judge.graded_mode ARGS...` runs the command line with both registered (`charter serve reward` in a process of
its own)."""

from __future__ import annotations

import re
import sys

from charter.errors import JudgeParseError
from charter.judge.modes import COMPARES, Mode, Reply, register_mode, scripted_reply
from charter.judge_prompt import read_comparison
from charter.providers.scripted import register_script

NAME = "graded"
#: Each grade with the P(the response shown first is preferred) it says.
GRADES = {"A>>B": 1.0, "A>B": 0.75, "B>A": 0.25, "B>>A": 0.0}
_GRADE = re.compile(r"\[\[(A>>B|A>B|B>A|B>>A)\]\]")
#: How sure the scripted judge is that the longer response is the better one.
SURE = 0.7


def read_grade(text: str) -> str:
    """The last grade written as [[...]]; JudgeParseError without one."""
    found = _GRADE.findall(text)
    if not found:
        raise JudgeParseError(f"no grade [[A>>B]] .. [[B>>A]] in the judge's reply: {text[:80]!r}", raw=text)
    return found[-1]


def _write_grade(p_first: float) -> str:
    grade = min(GRADES, key=lambda g: abs(GRADES[g] - p_first))
    return f"The first response is {'better' if p_first >= 0.5 else 'worse'}. [[{grade}]]"


def _longer_judge(messages, params):  # noqa: ANN001, ANN202 - prefers the longer response, SURE of it
    last = messages[-1].content
    shown = read_comparison(last)
    if shown is None:
        return f"A plain answer to: {last[:40]}"
    first, second = shown
    return scripted_reply(last, 0.5 if len(first) == len(second) else SURE if len(first) > len(second) else 1 - SURE)


def register() -> Mode:
    """Register the graded mode and `scripted:graded-longer` (idempotent); the mode's entry."""
    register_script("graded-longer", _longer_judge)
    return register_mode(
        Mode(
            NAME,
            "a graded verdict: [[A>>B]], [[A>B]], [[B>A]] or [[B>>A]] after a sentence of reasoning",
            COMPARES,
            Reply(
                "Weigh them in one sentence, then end with one grade: [[A>>B]], [[A>B]], [[B>A]] or [[B>>A]].",
                read_grade,
                options=GRADES,
                max_tokens=64,
                answer=_write_grade,
            ),
        )
    )


if __name__ == "__main__":
    from charter.cli import main

    register()
    sys.exit(main(sys.argv[1:]))
