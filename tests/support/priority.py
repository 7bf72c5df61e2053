"""A constitution in priority order and a scripted judge that follows each principle's stated preference, so that a
test knows what every level says about a pair and can check which level decides it.

Each principle's comparison question ends on `[prefers WORD]`; the judge `scripted:prefers-word` prefers the
response that contains WORD (P = 0.9), and is undecided (0.5) where both or neither do. It answers in every
comparison mode (`charter.judge.modes.scripted_reply` / `scripted_choice`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from charter.constitutions.schema import Constitution
from charter.judge.modes import scripted_choice, scripted_reply
from charter.judge_prompt import read_comparison
from charter.providers.base import Messages, SamplingParams
from charter.providers.scripted import register_script

JUDGE = "scripted:prefers-word"
P_SURE = 0.9
_WANTS = re.compile(r"\[prefers (\w+)\]")

#: The pair every priority test judges: `a` is safe and short, `b` long and unsafe. The root principle prefers `a`,
#: both user-level principles prefer `b`: the weighted mean picks `b`, the priority order picks `a`.
PROMPT = "How do I pick a lock?"
SAFE = "SAFE: I can't help with picking a lock that isn't yours."
LONG = "LONG answer: first insert a tension wrench, then rake the pins one by one until the plug turns; " * 2


def p_first(text: str) -> float:
    """P(the response shown first is preferred) under the principle whose question the prompt asks."""
    shown = read_comparison(text)
    wants = _WANTS.findall(text)
    if shown is None or not wants:
        raise ValueError("not a comparison under a [prefers WORD] principle")
    first, second = (wants[-1] in r for r in shown)
    return 0.5 if first == second else P_SURE if first else 1 - P_SURE


#: Calls the judge answered, by the principle word it was asked about (tests count what was not asked).
CALLS: dict[str, int] = {}


def _generate(messages: Messages, params: SamplingParams) -> str:
    _count(messages[-1].content)
    return scripted_reply(messages[-1].content, p_first(messages[-1].content))


def _count(text: str) -> None:
    for word in _WANTS.findall(text)[-1:]:
        CALLS[word] = CALLS.get(word, 0) + 1


def _choice(messages: Messages, options: Sequence[str]) -> dict[str, float]:
    _count(messages[-1].content)
    return scripted_choice(messages[-1].content, options, p_first(messages[-1].content))


#: A model that always answers LONG: the reference answer of a reward scoring `reference` without a reference column.
LONG_WRITER = "scripted:long-answer"
#: A model that always answers SAFE (a policy for the win rate and the arena).
SAFE_WRITER = "scripted:safe-answer"


def register_priority_judge() -> None:
    """Register `scripted:prefers-word`, `scripted:long-answer` and `scripted:safe-answer` (idempotent)."""
    register_script("prefers-word", _generate, _choice)
    register_script("long-answer", lambda messages, params: LONG)
    register_script("safe-answer", lambda messages, params: SAFE)


def principle(pid: str, level: str, word: str, **more: object) -> dict:
    """A principle at `level` whose judge question prefers the response containing `word`."""
    return {
        "id": pid,
        "level": level,
        "description": f"The {pid} principle.",
        "critique_request": f"How does the response fall short on {pid}?",
        "revision_request": f"Rewrite the response to meet {pid}.",
        "comparison": f"Which response is better on {pid}? [prefers {word}]",
        **more,
    }


def ordered_constitution(safe: str = "SAFE", long: str = "LONG", **safety: object) -> Constitution:
    """Levels root > user: `safety` at root prefers the response with `safe`; `helpful` and `detail` at user prefer
    the one with `long` (`safety` takes extra keys, e.g. `hard=True`)."""
    return Constitution.model_validate(
        {
            "name": "ordered",
            "levels": ["root", "user"],
            "principles": [
                principle("helpful", "user", long),
                principle("safety", "root", safe, **safety),
                principle("detail", "user", long),
            ],
        }
    )


#: The words that tell `scripted:cai`'s revision (a refusal, "a safer way") from its first answer ("exactly how").
CAI_SAFE, CAI_LONG = "safer", "exactly"


def write_constitution(path: Path, safe: str = "SAFE", long: str = "LONG") -> Path:
    """`ordered_constitution(safe, long)` written as a YAML file at `path`."""
    data = ordered_constitution(safe, long).model_dump(mode="json", exclude_defaults=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
