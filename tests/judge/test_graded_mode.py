"""A brand-new judge mode, registered in the test alone (`tests/judge/graded_mode.py`: a graded A/B verdict with
four grades), runs through `charter run` and its report, `charter.reward_function` and `charter serve reward`, with
no source file of the package touched: the mode is one entry in one table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import charter
from charter.cli import main
from charter.judge.modes import MODES, Mode, pairwise_modes, reply_asked, scripted_choice
from charter.judge.settings import JudgeSettings
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from tests.judge.graded_mode import GRADES, NAME, register

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How should I plan the move?"
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"
LONG, SHORT = "Start early, label every box, and book the van a week ahead.", "Book a van."


@pytest.fixture
def graded() -> Iterator[Mode]:
    before = MODES.get(NAME)
    yield register()
    if before is None:
        del MODES[NAME]
    else:
        MODES[NAME] = before


def test_the_entry_is_all_the_mode_is(graded: Mode) -> None:
    settings = JudgeSettings(mode=NAME)
    assert NAME in pairwise_modes() and settings.reply is graded.reply and not settings.rates_alone
    assert JudgeSettings.model_json_schema()["properties"]["mode"]["enum"][-1] == NAME
    prompt = f"...\n\n{graded.reply.instruction}"
    assert reply_asked(prompt) is graded.reply
    assert graded.reply.answer is not None and graded.reply.answer(0.7) == "The first response is better. [[A>B]]"
    probs = scripted_choice(prompt, tuple(GRADES), 0.7)  # a scripted judge asked for the grade tokens' probabilities
    assert sum(probs.values()) == pytest.approx(1.0) and probs["A>>B"] == probs["B>>A"] == 0.0
    assert sum(p * GRADES[g] for g, p in probs.items()) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="graded"):
        JudgeSettings(mode="grade")  # a typo names the modes there are, the new one among them


def test_a_run_from_the_command_line_and_its_report(graded: Mode, tmp_path: Path) -> None:
    config = {
        "name": "graded-mode",
        "output_dir": str(tmp_path / "run"),
        "cache": str(tmp_path / "cache.sqlite"),
        "constitution": "harmless",
        "prompts": {"inline": [f"Question {i}: how do I do thing {i}?" for i in range(3)]},
        "policy": "scripted:cai",
        "judge": {"model": "scripted:graded-longer", "mode": NAME},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["run", str(path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "data" / "preferences.jsonl").read_text().splitlines()]
    assert rows and all(row["judge_mode"] == NAME for row in rows)
    # the longer response shown first is graded A>B (0.75), shown second B>A: both orders say 0.75 for it
    assert all(row["p_chosen"] == pytest.approx(GRADES["A>B"]) for row in rows)
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert f"Judge: mode {NAME}, orders both" in report


def _references(judge: str, tmp_path: Path, completions: list[str], references: list[str]) -> list[float | None]:
    """The rewards `judge` gives `completions` against `references` in the graded mode, through the reward function."""
    fn = charter.reward_function(
        judge, "harmless", "reference", store=tmp_path / "r", cache=tmp_path / "c.sqlite", mode=NAME
    )
    try:
        return fn(prompts=[QUESTION] * len(completions), completions=completions, reference=references)
    finally:
        fn.close()


def test_the_reward_function_judges_in_it(graded: Mode, tmp_path: Path) -> None:
    got = _references("scripted:graded-longer", tmp_path, [LONG, SHORT], [SHORT, LONG])
    assert got == pytest.approx([GRADES["A>B"], GRADES["B>A"]])


def test_the_built_in_scripted_judge_answers_it_through_the_entry(graded: Mode, tmp_path: Path) -> None:
    """`scripted:cai` (in the provider layer, which never imports the table) writes its verdict as the entry asked
    writes one: the grades it was never told of."""
    got = _references("scripted:cai", tmp_path, [SAFE, HARMFUL], [HARMFUL, SAFE])
    assert got == pytest.approx([GRADES["A>>B"], GRADES["B>>A"]])


def _serve(tmp_path: Path, token: str) -> tuple[subprocess.Popen, str]:
    """`charter serve reward` with the graded mode, in a process of its own on a free port: the process and its
    URL, once it listens."""
    config = {
        "judge": {"model": "scripted:graded-longer", "mode": NAME},
        "scoring": "group",
        "cache": str(tmp_path / "calls.sqlite"),
        "output_dir": str(tmp_path / "store"),
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "CHARTER_SERVE_TOKEN": ""}
    args = ["serve", "reward", str(path), "--port", "0", "--token", token]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.judge.graded_mode", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # the last line it announces, once the port listens
        if line.startswith("OpenRLHF: "):
            return proc, line.split()[2].split("/get_reward")[0]
    raise AssertionError(f"the server did not start (exit {proc.wait()})")


def test_the_reward_server_judges_in_it(graded: Mode, tmp_path: Path) -> None:
    token = "graded-test-token"
    proc, url = _serve(tmp_path, token)
    try:
        body = json.dumps({"prompt": QUESTION, "completions": [LONG, SHORT]}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        request = urllib.request.Request(f"{url}/v1/rewards", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            got = json.loads(response.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    # each one's win rate in its group: the longer graded A>B shown first, B>A shown second
    assert got["rewards"] == pytest.approx([GRADES["A>B"], GRADES["B>A"]])
