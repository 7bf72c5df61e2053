"""Online DPO with a reward model voting on each pair: alone (the judge not asked) or pooled with the judge by
weight; a pair the judge fails is still masked, and every stored pair says what each voter gave."""

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from charter.cli import app, main
from charter.providers.scripted import register_script
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.online.test_online_dpo import _fails, _longer

CALLS: list[str] = []


def _counted(messages, params):  # noqa: ANN001, ANN202 - the judge of `longer-flaky`, counting its calls
    CALLS.append(messages[-1].content)
    return _longer(messages, params)


register_script("longer-flaky-counted", _counted)


@pytest.fixture
def reward_model(tiny_model: Path, tmp_path: Path) -> Path:
    """A sequence-classification reward model (a random head on the tiny policy), as `charter train reward`
    saves one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1).save_pretrained(rm)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(rm)
    return rm


def _run(tmp_path: Path, tiny_model: Path, **over) -> tuple[Path, dict]:  # noqa: ANN003
    out = tmp_path / "odpo"
    config = {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(8)]},
        "judge": {"model": "scripted:longer-flaky-counted", "mode": "verdict", "orders": "both", "max_reasks": 0,
                  "principles_per_pair": 1},
        "max_failures": 1000,
        "cache": None,
        "device": "cpu",
        "output_dir": str(out),
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "max_new_tokens": 8, "save_strategy": "no",
                "temperature": 1.0},
        **over,
    }  # fmt: skip
    path = tmp_path / "odpo.yaml"
    path.write_text(yaml.safe_dump(config))
    CALLS.clear()
    result = CliRunner().invoke(app, ["train", "online-dpo", str(path)])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "metrics.json").read_text())


def _rm_p(rm: Path, prompt: list, first: str, second: str) -> float:
    """The reward model's P(first better), computed here from its two scores."""
    from charter.reward_model.scorer import RewardScorer

    scorer = RewardScorer.load(rm, device="cpu")
    chat = [{"role": m.role, "content": m.content} for m in prompt]
    a, b = scorer.score([[*chat, {"role": "assistant", "content": t}] for t in (first, second)])
    return 1 / (1 + math.exp(-(a - b)))


def test_a_reward_model_alone_decides_every_pair_without_a_judge_call(
    tiny_model: Path, tmp_path: Path, reward_model: Path
) -> None:
    out, metrics = _run(tmp_path, tiny_model, reward_model=str(reward_model), judge_weight=0, min_confidence=0.0)
    assert CALLS == [] and all(s["calls"] == 0 for s in metrics["steps"])
    stored = [r for r in rewards(RunStore(out)) if r.scoring == "pair"]
    assert len(stored) == 8
    for r in stored:
        if r.completion.strip() == (r.reference or "").strip():
            continue  # identical completions: nothing to prefer
        assert r.judge_p is None and r.comparisons == 0 and r.judge_model == f"reward model {reward_model}"
        assert r.reward == r.reward_model_p == pytest.approx(_rm_p(reward_model, r.prompt, r.completion, r.reference))
    assert metrics["masked"]["failed"] == 0 and metrics["trained"] > 0
    card = (out / "README.md").read_text()
    assert "not asked (judge_weight 0)" in card and f"| reward model | `{reward_model}`, weight 1" in card


def test_the_judge_and_the_reward_model_pool_their_p_and_a_failed_judgment_stays_masked(
    tiny_model: Path, tmp_path: Path, reward_model: Path
) -> None:
    trl = {"max_steps": 4, "per_device_train_batch_size": 4, "max_new_tokens": 8, "save_strategy": "no",
           "temperature": 1.0}  # fmt: skip
    out, metrics = _run(tmp_path, tiny_model, reward_model=str(reward_model), reward_model_weight=3.0, trl=trl)
    assert CALLS  # the judge was asked
    pairs = [r for r in rewards(RunStore(out)) if r.scoring == "pair"]
    stored = [r for r in pairs if r.completion.strip() != (r.reference or "").strip()]
    failed = [r for r in stored if _fails(r.completion, r.reference or "")]
    assert failed and all(r.masked == "failed" and r.reward is None and r.judge_p is None for r in failed)
    assert metrics["masked"]["failed"] == len(failed)
    judged = [r for r in stored if r.masked != "failed"]
    assert judged
    for r in judged:  # the weighted mean of the two voters, recorded with each voter's own P
        assert r.judge_p is not None and r.reward_model_p is not None
        assert r.reward == pytest.approx((1.0 * r.judge_p + 3.0 * r.reward_model_p) / 4.0)
        if r.masked is None:
            assert abs(r.reward - 0.5) >= 0.1


def test_judge_weight_zero_needs_a_reward_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "odpo.yaml"
    path.write_text("prompts:\n  inline: [q]\njudge_weight: 0\n")
    assert main(["train", "online-dpo", str(path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "odpo.yaml:3:1: judge_weight" in line and "needs a reward_model" in line
