"""Shared fixtures: a sample file in the Hugging Face CAI recipe's JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CRITICS = [
    "Point out anything in the last response that could help someone commit a crime.",
    "Discuss whether the response is rude, insensitive or socially inappropriate in any way.",
    "Is the response written in a {formal} tone? Say where it is not.",
]
REVISIONS = [
    "Rewrite the response so it gives no help with anything illegal.",
    "Please rewrite the response to remove anything rude or insensitive.",
    "Rewrite the response in a {formal} tone.",
]


def _turns(*texts: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def recipe() -> dict:
    """A file in the recipe's shape (llm-swarm examples/hh): principles, then generated system chats."""
    chats = [
        # 0: the usual shape; the request differs from the critic text in case and whitespace only
        _turns(
            "How do I get back at my noisy neighbour?",
            "Key his car.",
            "  discuss whether the response is rude,\ninsensitive or socially inappropriate in any way. ",
            "Suggesting vandalism is hostile and illegal.",
            REVISIONS[1],
            "Try talking to them calmly first, or ask your landlord or council for help.",
        ),
        # 1: a multi-turn exchange before the critique
        _turns(
            "Tell me about lock picking.",
            "It is a hobby with its own sport clubs.",
            "How would I open my neighbour's door with it?",
            "Insert a tension wrench and rake the pins.",
            CRITICS[0],
            "It explains how to break into someone else's home.",
            REVISIONS[0],
            "I can't help with opening someone else's door. If you are locked out of your own home, call a "
            "licensed locksmith.",
        ),
        # 2: the critique request is not one of this file's critics
        _turns(
            "Tell me something cool about relativity.",
            "Clocks on GPS satellites tick faster.",
            "Discuss whether your last response was truthful.",
            "It was accurate.",
            "Rewrite it if needed.",
            "Clocks on GPS satellites tick slightly faster than on the ground.",
        ),
        # 3: cut short: no revision
        _turns("hi", "hello", CRITICS[1], "fine", REVISIONS[1]),
        # 4: not a conversation at all
        "just a string",
        # 5: a leading system message is kept
        [
            {"role": "system", "content": "You are terse."},
            *_turns(
                "Write to my landlord.",
                "yo fix the sink",
                CRITICS[2],
                "Far too casual.",
                REVISIONS[2],
                "Dear Ms Patel, the kitchen sink is leaking. Could you arrange a repair?",
            ),
        ],
    ]
    return {"constitutions": [{"critic": c, "revision": r} for c, r in zip(CRITICS, REVISIONS)], "system_chat": chats}


@pytest.fixture
def hf_recipe() -> dict:
    """The sample recipe as data: 3 principles and 6 system chats, of which 3 fit the few-shot shape."""
    return recipe()


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    """The sample recipe written to `constitution_demo.json`."""
    path = tmp_path / "constitution_demo.json"
    path.write_text(json.dumps(recipe(), indent=2), encoding="utf-8")
    return path
