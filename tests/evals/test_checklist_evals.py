"""`eval winrate` and `eval arena` with `scoring: checklist`: each answer checked once against its prompt's checklist
(the prompts file's `checklist` column, else the constitution's criteria), each comparison the preference of the
two scores; a comparison where an answer has no score is a failed judgment, counted, never a tie."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charter.checklist.prompt import read_checklist_prompt
from charter.errors import ConfigError, DatasetError
from charter.evals.arena import arena
from charter.evals.winrate import winrate
from charter.providers.scripted import register_script
from charter.testing.lab import CRITERIA, register_lab_models

ITEMS = [
    {"id": "number", "requirement": CRITERIA["number"][0], "weight": 2},
    {"id": "polite", "requirement": CRITERIA["polite"][0], "weight": 1},
]
CALLS: list[str] = []


def _answers(text: str):  # noqa: ANN202
    return lambda messages, params: text


def _counting_judge(messages, params):  # noqa: ANN001, ANN202
    items, response = read_checklist_prompt(messages[-1].content)
    CALLS.append(messages[-1].content)
    if "mute" in response:
        return "no idea"
    return json.dumps(
        {
            i: {
                "reason": "r",
                "verdict": "yes" if ("4" in response) == (i == "number") or "thank" in response else "no",
            }
            for i, _ in items
        }
    )  # noqa: E501


register_script("cl-strong", _answers("It is 4, thank you."))
register_script("cl-middle", _answers("It is 4."))
register_script("cl-weak", _answers("I am not sure."))
register_script("cl-mute", _answers("mute"))
register_script("cl-judge", _counting_judge)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": f"How many {i}?", "checklist": ITEMS if i % 2 else json.dumps(ITEMS)} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_winrate_by_checklist_prefers_the_answer_that_meets_more_items(tmp_path: Path, prompts: Path) -> None:
    register_lab_models()
    summary = winrate(base="scripted:cl-middle", candidate="scripted:cl-strong", judge="scripted:checklist-judge",
                      prompts=str(prompts), scoring="checklist", out=tmp_path / "w.json", limit=None)  # fmt: skip
    assert summary["n"] == 6 and summary["wins"] == 6 and summary["failures"] == 0
    assert summary["mean_p_candidate"] == pytest.approx(0.5 + (1 - 2 / 3) / 2)


def test_arena_by_checklist_checks_each_answer_once_and_counts_unscored_as_failed(tmp_path, prompts) -> None:
    CALLS.clear()
    models = [f"scripted:cl-{m}" for m in ("strong", "middle", "weak", "mute")]
    summary = arena(models=models, prompts=prompts, judge="scripted:cl-judge", scoring="checklist",
                    out=tmp_path / "out", limit=6, bootstrap=20)  # fmt: skip
    assert len(CALLS) == len(set(CALLS)) <= 4 * 6  # each model's answer to a prompt checked once, whatever the pairs
    order = [m["model"] for m in summary["models"]]
    assert order[:3] == models[:3] and summary["scoring"] == "checklist"
    per_pair = summary["design"]["per_pair"]
    assert summary["failures"] == 3 * per_pair and summary["judged"] == 3 * per_pair  # the mute model's fail
    assert summary["models"][3]["rank"] is None and summary["design"]["orders"] == "one"


def test_a_bad_checklist_row_names_the_file_row_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "Q?", "checklist": [{"id": "x", "requirement": "r", "weight": 0}]}) + "\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl: row 1: checklist\[0\]\.weight: "):
        winrate(base="scripted:cl-middle", candidate="scripted:cl-strong", judge="scripted:cl-judge",
                prompts=str(path), scoring="checklist", out=tmp_path / "w.json")  # fmt: skip
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "Q?"}) + "\n")
    with pytest.raises(ConfigError, match="no checklist column value and the constitution harmless has no criteria"):
        winrate(base="scripted:cl-middle", candidate="scripted:cl-strong", judge="scripted:cl-judge",
                prompts=str(plain), scoring="checklist", out=tmp_path / "w.json")  # fmt: skip
