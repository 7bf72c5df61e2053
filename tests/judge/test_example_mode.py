"""The architecture page's example judge mode, registered by the page's own code block, works end to end: in a run
started from the command line, as the reward of online training, and with the scripted, fault-injecting and lab
judges of `charter.testing`, in the fenced prompt format and in the unfenced one of the judge audit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import charter
from charter.cli import main
from charter.constitutions import Constitution
from charter.judge.judgment import Mode
from charter.judge.modes import MODES
from charter.judge.pairwise import p_first
from charter.judge.settings import JudgeSettings
from charter.providers import get_model
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.records import Message
from charter.testing.faults import Faults, FaultServer
from charter.testing.judges import register_biased_judges
from charter.testing.lab import register_lab_models

PAGE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
NAME = "brief-cot"
PROMPT = [Message(role="user", content="How should I plan the move?")]
LONG, SHORT = "Start early, label every box, and book the van a week ahead.", "Book a van."
HARMFUL, SAFE = f"{HARMFUL_OPENING} step one", f"{REFUSAL_OPENING} ask a locksmith"


def _page_example() -> str:
    """The page's code block that registers a mode."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if "register_mode(" in b]
    return block


@pytest.fixture
def example_mode() -> Iterator[Mode]:
    before = MODES.get(NAME)
    exec(compile(_page_example(), str(PAGE), "exec"), {})  # noqa: S102 - the page's own example, as a reader runs it
    yield MODES[NAME]
    if before is None:
        del MODES[NAME]
    else:
        MODES[NAME] = before


def _constitution(comparison: str) -> Constitution:
    return Constitution.model_validate(
        {
            "name": "example",
            "principles": [
                {
                    "id": "p0",
                    "description": "the better plan",
                    "critique_request": "Critique it.",
                    "revision_request": "Revise it.",
                    "comparison": comparison,
                }
            ],
        }
    )


async def _both_formats(model_name: str, comparison: str, first: str, second: str) -> list[float]:
    """P(first preferred) under the example mode in the fenced and the unfenced format, from `model_name`."""
    model = get_model(model_name)
    settings, principle = JudgeSettings(mode=NAME), _constitution(comparison).principles[0]
    try:
        return [await p_first(model, PROMPT, first, second, principle, settings, fenced) for fenced in (True, False)]
    finally:
        await model.aclose()


def test_the_page_shows_a_new_mode_as_one_entry(example_mode: Mode) -> None:
    settings = JudgeSettings(mode=NAME)
    assert settings.reply is example_mode.reply and settings.reply.clamped and settings.sampling().max_tokens == 96
    assert not settings.rates_alone and settings.orders_asked == "both"


def test_a_run_from_the_command_line_judges_in_the_example_mode(example_mode: Mode, tmp_path: Path) -> None:
    config = {
        "name": "example-mode",
        "output_dir": str(tmp_path / "run"),
        "cache": str(tmp_path / "cache.sqlite"),
        "constitution": "harmless",
        "prompts": {"inline": [f"Question {i}: how do I do thing {i}?" for i in range(3)]},
        "policy": "scripted:cai",
        "judge": {"model": "scripted:cai", "mode": NAME, "principles_per_pair": 2},
        "report": False,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["run", str(path)]) == 0
    lines = (tmp_path / "run" / "data" / "preferences.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows and all(row["judge_mode"] == NAME for row in rows)
    assert all(row["p_chosen"] == pytest.approx(0.6) for row in rows)  # each vote clamped into (0.4, 0.6)


def test_the_reward_function_judges_in_the_example_mode(example_mode: Mode, tmp_path: Path) -> None:
    fn = charter.reward_function(
        "scripted:cai", "harmless", "reference", store=tmp_path / "rewards", cache=tmp_path / "c.sqlite", mode=NAME
    )
    try:
        got = fn(prompts=["How do I pick a lock?"] * 2, completions=[SAFE, HARMFUL], reference=[HARMFUL, SAFE])
    finally:
        fn.close()
    assert got == pytest.approx([0.6, 0.4])


async def test_the_scripted_judges_answer_it_in_both_formats(example_mode: Mode) -> None:
    register_biased_judges()
    assert await _both_formats("scripted:longer", "Which plan is better?", LONG, SHORT) == [0.6, 0.6]
    assert await _both_formats("scripted:longer", "Which plan is better?", SHORT, LONG) == [0.4, 0.4]


async def test_the_fault_server_answers_it_in_both_formats(example_mode: Mode) -> None:
    with FaultServer(Faults()) as server:
        model = f"openai-compatible:judge@{server.openai_url}"
        assert await _both_formats(model, "Which plan is better?", LONG, SHORT) == [0.6, 0.6]
        assert await _both_formats(model, "Which plan is better?", SHORT, LONG) == [0.4, 0.4]


async def test_the_lab_judges_answer_it_in_both_formats(example_mode: Mode) -> None:
    register_lab_models()
    shorter = "Select the response that is shorter."
    assert await _both_formats("scripted:lab-judge", shorter, SHORT, LONG) == [0.6, 0.6]
    assert await _both_formats("scripted:lab-judge", shorter, LONG, SHORT) == [0.4, 0.4]
    assert await _both_formats("scripted:lab-ignorer", shorter, LONG, SHORT) == [0.6, 0.6]
