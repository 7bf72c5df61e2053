"""The gold monitor beside `charter train online-dpo` on a tiny random Llama: its training reward is the pairwise
judge's P(the answer beats the policy's own first answer to that held-out prompt), judged as training judges, never
stored as a training pair; gold, the gap, the status, the report and the card as for GRPO; a gold checklist that is
the reward's own and held-out prompts that are training prompts are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from charter.cli import main
from charter.errors import ConfigFieldError
from charter.online.config import OnlineDPOConfig
from charter.pipeline.status.show import print_status
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.monitor import gold_checks
from tests.monitor.test_training import HELD_OUT, TRAIN, _prompts

TRL = {"max_steps": 4, "per_device_train_batch_size": 4, "max_new_tokens": 8, "learning_rate": 0.05,
       "temperature": 1.0, "save_strategy": "no", "logging_steps": 1}  # fmt: skip


def _config(tmp_path: Path, tiny_model: Path, held_out: list[str], **monitor) -> Path:  # noqa: ANN003
    held = tmp_path / "held_out.jsonl"
    held.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in held_out))
    config = {
        "model": str(tiny_model),
        "prompts": {"inline": _prompts(TRAIN)},
        "judge": {"model": "scripted:word-pairs", "mode": "verdict", "orders": "both", "max_reasks": 0},
        "max_failures": 1000,
        "cache": str(tmp_path / "cache.sqlite"),
        "device": "cpu",
        "output_dir": str(tmp_path / "out"),
        "trl": TRL,
        "monitor": {
            "prompts": str(held),
            "every": 2,
            "max_new_tokens": 8,
            "gold": {"verifier": "tests.monitor.gold_checks:intent"},
            **monitor,
        },
    }
    path = tmp_path / "odpo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _answers(out: Path, step: int) -> list[dict]:
    return [json.loads(line) for line in (out / "monitor" / f"step-{step}.jsonl").read_text().splitlines()]


def test_online_dpo_is_monitored_against_the_policys_first_answers(tiny_model: Path, tmp_path: Path) -> None:
    assert main(["train", "online-dpo", str(_config(tmp_path, tiny_model, HELD_OUT))]) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    monitor = metrics["monitor"]
    steps = monitor["steps"]
    assert [s["step"] for s in steps] == [0, 2, 4] and metrics["stopped"] == "finished"
    first = steps[0]
    # step 0: each answer against itself, no call: P = 0.5 for every prompt
    assert first["reward"] == 0.5 and first["reward_n"] == first["n"] == len(HELD_OUT) and first["calls"] == 0
    anchor = [a["answer"] for a in _answers(out, 0)]
    for s in steps:
        answered = _answers(out, s["step"])
        # the reward is the judge's preference of each answer over the first answer to the same prompt
        assert [a["reward"] for a in answered] == [gold_checks.word_preference(a["answer"], b) for a, b in
                                                   zip(answered, anchor)]  # fmt: skip
        assert [a["gold"] for a in answered] == [float(gold_checks.intent(a["answer"], None, "")) for a in answered]
        assert s["reward_low"] <= s["reward"] <= s["reward_high"] and s["gold_low"] <= s["gold"] <= s["gold_high"]
        assert s["gold_failures"] == 0 and s["gap"] == pytest.approx(s["reward"] - s["gold"])
    # the monitor's judgments are not training pairs: the store holds the 4 steps' 4 pairs alone
    stored = [r for r in rewards(RunStore(out)) if r.scoring == "pair"]
    assert len(stored) == 16 and metrics["pairs"] == 16 and {r.step for r in stored} == {1, 2, 3, 4}
    card = (out / "README.md").read_text()
    assert "Gold monitor" in card and "Published:" in card
    assert "Gold monitor" in (out / "report" / "report.md").read_text()
    console = Console(width=160, record=True)
    shown = print_status(out, console)
    assert [s["step"] for s in shown["monitor"]] == [0, 2, 4] and "Gold monitor" in console.export_text()


def test_online_dpo_refuses_held_out_prompts_that_are_training_prompts(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, tiny_model, HELD_OUT[:5] + _prompts(TRAIN[:2]))
    assert main(["train", "online-dpo", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 of 7 held-out prompts are training prompts" in err and len(err.strip().splitlines()) == 1


def test_online_dpo_refuses_a_gold_checklist_that_is_the_rewards_own() -> None:
    monitor = {"prompts": "held.jsonl", "gold": {"judge": {"model": "scripted:cai"}, "checklist_column": "checklist"}}
    with pytest.raises(ConfigFieldError, match="the reward's own column 'checklist'"):
        OnlineDPOConfig(prompts="x.jsonl", scoring="checklist", checklist={"column": "checklist"}, monitor=monitor)
    apart = {**monitor, "gold": {**monitor["gold"], "checklist_column": "gold_checklist"}}
    config = OnlineDPOConfig(prompts="x.jsonl", scoring="checklist", checklist={"column": "checklist"}, monitor=apart)
    assert config.monitor is not None and config.monitor.gold.checklist_column == "gold_checklist"
