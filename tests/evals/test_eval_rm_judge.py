"""A judge as a pairwise reward model on the shared human preference pairs, through the real openai SDK against a
loopback server: accuracy, best-of-N, failures counted apart (never a tie), the call cache, the command line."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from charter import evaluate_rm
from charter.cli import main
from charter.errors import ArgumentError
from charter.testing.judges import shown_responses
from charter.testing.loopback import LoopbackServer

PRICES = {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}


def _plain(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def hhh(shared_data: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = shared_data / "human_preferences" / "hhh_harmless_helpful.jsonl"
    return path, [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _wins(rows: list[dict[str, Any]]) -> Counter:
    """How often each response is chosen: the labels' own order of a prompt's responses."""
    wins: Counter = Counter()
    for row in rows:
        wins[_plain(row["chosen"])] += 1
        wins[_plain(row["rejected"])] += 0
    return wins


def _judge(rows: list[dict[str, Any]], fails: set[str] = frozenset()) -> Callable[[dict], str]:  # type: ignore[assignment]
    """A verdict judge that prefers the response the labels rank higher (ties: "A", a pure position bias), and
    answers no verdict at all when either response is in `fails`."""
    wins = _wins(rows)

    def reply(body: dict) -> str:
        a, b = (_plain(t) for t in shown_responses(body["messages"][-1]["content"]))
        if a in fails or b in fails:
            return "I would rather not say."
        return "B" if wins[b] > wins[a] else "A"

    return reply


def _best_of_n_prompts(rows: list[dict[str, Any]]) -> set[str]:
    """The prompts with more than two responses of which exactly one is never rejected."""
    out = set()
    for prompt in {r["prompt"] for r in rows}:
        mine = [r for r in rows if r["prompt"] == prompt]
        found = {r["chosen"] for r in mine} | {r["rejected"] for r in mine}
        if len(found) > 2 and len(found - {r["rejected"] for r in mine}) == 1:
            out.add(prompt)
    return out


def _judge_string(server: LoopbackServer) -> str:
    return f"openai-compatible:gpt-4o-mini@{server.openai_url}"


def test_a_judge_that_prefers_the_chosen_scores_every_row_and_every_best_of_n_prompt(hhh, tmp_path: Path) -> None:
    path, rows = hhh
    with LoopbackServer(reply=_judge(rows)).start() as server:
        summary = evaluate_rm(judge=_judge_string(server), pairs=str(path), judge_mode="verdict",
                              out=tmp_path / "o.json", prices=PRICES)  # fmt: skip
    assert summary["overall"]["n"] == len(rows) and summary["overall"]["accuracy"] == 1.0
    assert {name: acc["n"] for name, acc in summary["subsets"].items()} == dict(Counter(r["subset"] for r in rows))
    assert summary["failures"] == 0 and summary["best_of_n_failures"] == 0
    assert summary["best_of_n"]["n"] == len(_best_of_n_prompts(rows)) > 20
    assert summary["best_of_n"]["accuracy"] == 1.0
    assert summary["calls"] == server.hits == 2 * summary["comparisons"]  # both orders of each comparison
    assert summary["cost_usd"] > 0
    assert json.loads((tmp_path / "o.json").read_text())["overall"] == summary["overall"]
    assert (tmp_path / "calls.sqlite").exists()


def test_a_pure_position_bias_is_half_right_and_never_consistent(hhh, tmp_path: Path) -> None:
    path, rows = hhh
    with LoopbackServer(reply=lambda body: "A").start() as server:
        summary = evaluate_rm(judge=_judge_string(server), pairs=str(path), judge_mode="verdict", limit=20,
                              cache=tmp_path / "calls.sqlite")  # fmt: skip
    assert summary["overall"] == {**summary["overall"], "n": 20, "correct": 10.0, "accuracy": 0.5}
    assert summary["position_consistency"] == 0.0


def test_failed_judgments_are_counted_apart_never_scored(hhh, tmp_path: Path) -> None:
    path, rows = hhh
    fails = {_plain(r["rejected"]) for r in rows[::7]}
    failing = [r for r in rows if _plain(r["rejected"]) in fails or _plain(r["chosen"]) in fails]
    with LoopbackServer(reply=_judge(rows, fails)).start() as server:
        summary = evaluate_rm(judge=_judge_string(server), pairs=str(path), judge_mode="verdict",
                              cache=tmp_path / "calls.sqlite")  # fmt: skip
    assert 0 < summary["failures"] == len(failing)
    assert summary["overall"]["n"] == len(rows) - len(failing) and summary["overall"]["accuracy"] == 1.0
    for name, acc in summary["subsets"].items():
        assert acc["failures"] == sum(r["subset"] == name for r in failing)
        assert acc["n"] == sum(r["subset"] == name for r in rows) - acc["failures"]
    touched = {r["prompt"] for r in failing}
    best_of_n = _best_of_n_prompts(rows)
    assert summary["best_of_n_failures"] == len(best_of_n & touched) > 0
    assert summary["best_of_n"]["n"] == len(best_of_n - touched)


def test_the_command_line_and_a_rerun_from_the_cache(hhh, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path, rows = hhh
    out = tmp_path / "rm.json"
    with LoopbackServer(reply=_judge(rows)).start() as server:
        argv = ["eval", "rm", "--pairs", str(path), "--judge", _judge_string(server), "--judge-mode", "verdict",
                "--limit", "30", "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        first, hits = json.loads(out.read_text()), server.hits
        assert main(argv) == 0
        again = json.loads(out.read_text())
        assert server.hits == hits > 0  # nothing asked twice
    printed = capsys.readouterr().out
    assert "overall: accuracy 1.000" in printed and ", 0 failed)" in printed and "judge calls" in printed
    assert first["calls"] == hits and first["cached_calls"] == 0
    assert again["calls"] == 0 and again["cached_calls"] == hits and again["cost_usd"] == 0
    assert again["overall"] == first["overall"] and again["judge"] == _judge_string(server)


def test_a_reward_model_and_a_judge_together_or_neither_is_one_line_and_exit_2(hhh, capsys) -> None:  # noqa: ANN001
    path, _ = hhh
    assert main(["eval", "rm", "runs/x/reward_model", "--pairs", str(path), "--judge", "scripted:cai"]) == 2
    assert main(["eval", "rm", "--pairs", str(path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errors) == 2 and all("either a reward model (MODEL, reward_model) or a judge" in e for e in errors)
    with pytest.raises(ArgumentError, match="not both or neither"):
        evaluate_rm(reward_model="runs/x/reward_model", judge="scripted:cai", pairs=str(path))
