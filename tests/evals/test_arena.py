"""`charter eval arena` / `charter.arena`: N models on one scale. A scripted judge whose verdicts follow known
Bradley–Terry strengths; the fit, its bootstrap intervals (coverage by simulation) and rank ranges; the sparse
design; a re-run and an added model asked only what is new; failures left out and counted."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import charter
from charter.cli import app
from charter.errors import ProviderError
from charter.evals.arena import design
from charter.judge_prompt import read_comparison
from charter.providers.scripted import register_script
from charter.stats.ranking import ranked_bootstrap

TRUE = {"alpha": 0.0, "bravo": 0.8, "charlie": -0.6, "delta": 1.6, "echo": -1.4}
TAG = re.compile(r"\[q=(-?\d+\.\d+)\]")


def _q(text: str) -> float:
    found = TAG.search(text)
    return float(found.group(1)) if found else 0.0


def _bt_choice(messages, options):  # noqa: ANN001, ANN202 - a Bradley–Terry judge: P(A) = sigmoid(q_A - q_B)
    a, b = (_q(t) for t in read_comparison(messages[-1].content) or ("", ""))
    p = 1.0 / (1.0 + math.exp(b - a))
    return {"A": p, "B": 1.0 - p}


def _flaky_choice(messages, options):  # noqa: ANN001, ANN202 - fails every comparison that involves echo
    if "echo answers" in messages[-1].content:
        raise ProviderError("the judge's endpoint answered 500")
    return _bt_choice(messages, options)


register_script("arena-bt", lambda m, p: "A", _bt_choice)
register_script("arena-flaky", lambda m, p: "A", _flaky_choice)


@pytest.fixture
def arena_files(tmp_path: Path) -> dict[str, Path]:
    """A prompts file and one answer file per model: each answer carries its quality, the model's strength plus a
    per-prompt effect (so the prompts differ, as real ones do)."""
    rng = np.random.default_rng(7)
    prompts = [f"Question {i}: what should I do about problem {i}?" for i in range(30)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    files = {"prompts": tmp_path / "prompts.jsonl"}
    for name, strength in TRUE.items():
        rows = [
            {"prompt": p, "answer": f"{name} answers [q={strength + rng.normal(0, 0.5):.4f}] " + "x" * (20 + k % 7)}
            for k, p in enumerate(prompts)
        ]
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def _config(files: dict[str, Path], tmp_path: Path, names: list[str], **extra) -> dict:  # noqa: ANN003
    return {
        "models": [str(files[n]) for n in names],
        "prompts": str(files["prompts"]),
        "judge": {"model": "scripted:arena-bt", "mode": "logprobs"},
        "cache": str(tmp_path / "calls.sqlite"),
        "bootstrap_samples": 200,
        "out": str(tmp_path / "arena"),
        **extra,
    }


def test_the_arena_recovers_the_true_order_with_intervals_and_rank_ranges(
    arena_files: dict[str, Path], tmp_path: Path
) -> None:
    result = charter.arena(_config(arena_files, tmp_path, list(TRUE)))
    order = [m["model"] for m in result["models"]]
    assert order == sorted(TRUE, key=lambda n: -TRUE[n])  # delta, bravo, alpha, charlie, echo
    by_name = {m["model"]: m for m in result["models"]}
    assert by_name["alpha"]["score"] == 0.0 and result["reference"] == "alpha"  # the first listed
    for m in result["models"]:
        assert m["ci_low"] <= m["score"] <= m["ci_high"] and m["rank_low"] <= m["rank"] <= m["rank_high"]
        assert m["wins"] + m["losses"] + m["ties"] > 0 and m["mean_length"] > 20
    assert by_name["delta"]["ci_low"] > 0 > by_name["echo"]["ci_high"]
    written = json.loads((tmp_path / "arena" / "arena.json").read_text())
    assert written["models"] == result["models"] and written["design"]["kind"] == "sparse"
    assert (tmp_path / "arena" / "arena.svg").read_text().startswith("<?xml")
    page = (tmp_path / "arena" / "arena.md").read_text()
    assert "| 1 | delta |" in page and "Length-controlled" in page and "not measured by the arena" in page


def test_the_sparse_design_asks_fewer_comparisons_and_covers_every_pair(arena_files: dict[str, Path]) -> None:
    prompts = [f"p{i}" for i in range(30)]
    sparse = design(prompts, list(TRUE), 15)  # 2P/(N-1) = 15 for five models and 30 prompts
    every = design(prompts, list(TRUE), None)
    assert len(every) == 10 * 30 and len(sparse) == 10 * 15
    assert {(i, j) for _, i, j in sparse} == {(i, j) for _, i, j in every}
    # a pair's prompts do not depend on the other models: adding one keeps the old pairs' comparisons
    grown = design(prompts, [*TRUE, "foxtrot"], 15)
    assert set(sparse) <= {(p, i, j) for p, i, j in grown}


def test_a_rerun_is_free_and_an_added_model_asks_only_its_pairs(arena_files: dict[str, Path], tmp_path: Path) -> None:
    first = charter.arena(_config(arena_files, tmp_path, ["alpha", "bravo", "charlie"], prompts_per_pair=10))
    assert first["judge_calls"] == 3 * 10 * 2 and first["cached_calls"] == 0
    again = charter.arena(_config(arena_files, tmp_path, ["alpha", "bravo", "charlie"], prompts_per_pair=10))
    assert again["cached_calls"] == first["judge_calls"] and again["models"] == first["models"]
    grown = charter.arena(_config(arena_files, tmp_path, ["alpha", "bravo", "charlie", "delta"], prompts_per_pair=10))
    assert grown["judge_calls"] == 3 * 10 * 2  # paid: delta against each of the three, 10 prompts, both orders
    assert grown["cached_calls"] == first["judge_calls"]  # the old pairs, from the call cache


def test_failed_judgments_are_left_out_and_counted(arena_files: dict[str, Path], tmp_path: Path) -> None:
    config = _config(arena_files, tmp_path, ["alpha", "bravo", "echo"], judge={"model": "scripted:arena-flaky",
                     "mode": "logprobs", "max_retries": 0})  # fmt: skip
    result = charter.arena(config)
    assert result["design"]["failed"] == 2 * 30 and result["design"]["judged"] == 30  # echo's pairs all failed
    echo = result["models"][-1]  # no made-up result: unranked, listed last, never given the prior's score
    assert echo["model"] == "echo" and echo["score"] is None and echo["rank"] is None and not result["decided"]
    assert echo["wins"] == echo["losses"] == echo["ties"] == 0
    assert "| - | echo | unranked: no decided comparison |" in (tmp_path / "arena" / "arena.md").read_text()


def test_the_command_line_ranks_and_writes(arena_files: dict[str, Path], tmp_path: Path) -> None:
    models = [str(arena_files[n]) for n in ("alpha", "delta", "echo")]
    result = CliRunner().invoke(
        app,
        ["eval", "arena", "--models", *models, "--prompts", str(arena_files["prompts"]), "--judge", "scripted:arena-bt",
         "--out", str(tmp_path / "cli"), "--cache", "", "--bootstrap-samples", "100", "--reference", "echo"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["1", "delta"] and "echo" in lines[2] and "+0.000" in lines[2]
    assert "all pairs design" in result.output and (tmp_path / "cli" / "arena.json").exists()


def test_a_plan_over_max_calls_is_one_line(arena_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(charter.errors.ConfigError, match=r"max_calls: the arena plans 600 judge calls"):
        charter.arena(_config(arena_files, tmp_path, list(TRUE), prompts_per_pair=None, max_calls=100))


def test_bootstrap_intervals_cover_true_score_differences() -> None:
    """Hard verdicts drawn from known strengths on 60 prompts (all pairs each): the 95% intervals of the scores
    against the reference cover the true differences close to nominally (measured: see benchmarks/RESULTS.md)."""
    truth = np.array([0.0, 0.5, 1.0, -0.5])
    covered, total = 0, 0
    for rep in range(30):
        rng = np.random.default_rng(rep)
        outcomes, clusters = [], []
        for prompt in range(60):
            for i in range(4):
                for j in range(i + 1, 4):
                    win = rng.random() < 1 / (1 + math.exp(truth[j] - truth[i]))
                    outcomes.append((i, j, 1.0 if win else 0.0))
                    clusters.append(f"p{prompt}")
        fit = ranked_bootstrap(4, outcomes, clusters, 0, 100, rep)
        for k in (1, 2, 3):
            total += 1
            covered += fit["ci_low"][k] <= truth[k] - truth[0] <= fit["ci_high"][k]
    assert covered / total >= 0.85, covered / total
