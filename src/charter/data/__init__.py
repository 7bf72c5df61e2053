"""Data shipped with charter: the bundled prompt set used by the quickstart.

`prompts.jsonl` holds one prompt per line: `id`, `category`, and either `prompt` (a string) or
`messages` (a list of `{role, content}` ending with a user turn). Red-team categories name a harm
area (weapons, self-harm, cyber, ...); ordinary requests have `helpful-*` categories, and
`helpful-borderline` ones sound alarming but are benign, to catch over-refusal. The file is ordered
so that any prefix mixes red-team and helpful prompts across categories.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled_prompts_path() -> Path:
    """The path of the bundled prompt set (`prompts.jsonl`)."""
    return Path(str(resources.files(__name__).joinpath("prompts.jsonl")))
