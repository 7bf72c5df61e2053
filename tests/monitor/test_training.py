"""The gold monitor beside `charter train grpo` on a tiny random Llama: a judge that rewards a word is gamed (the
word said over and over), the gold check of intent falls while the reward rises, the stop rule flags it and the
gold-best checkpoint is named in the metrics, the status, the report and the card; a judge whose reward is the
intent is not flagged (the false-positive test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from charter.cli import main
from charter.pipeline.status.show import print_status
from tests.monitor import gold_checks  # noqa: F401 - registers scripted:word-judge and scripted:distinct-judge
from tests.support.tiny_models import TOPICS

TRAIN = TOPICS[:8]
#: The held-out prompts: every topic, asked in other words than the training prompts.
HELD_OUT = [f'Could you help me with the {t} today? Include the word "{gold_checks.WORD}".' for t in TOPICS]
TRL = {"max_steps": 9, "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 8,
       "learning_rate": 0.05, "save_strategy": "no", "logging_steps": 1}  # fmt: skip


def _prompts(topics: list[str]) -> list[str]:
    return [f'Can you help me with the {t} please? Include the word "{gold_checks.WORD}".' for t in topics]


def _config(tmp_path: Path, tiny_model: Path, judge: str, **monitor) -> Path:  # noqa: ANN003
    held = tmp_path / "held_out.jsonl"
    held.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in HELD_OUT))
    config = {
        "model": str(tiny_model),
        "prompts": {"inline": _prompts(TRAIN)},
        "judge": {"model": judge, "rating": "verdict"},
        "cache": str(tmp_path / "cache.sqlite"),
        "output_dir": str(tmp_path / "out"),
        "trl": TRL,
        "monitor": {
            "prompts": str(held),
            "every": 3,
            "max_new_tokens": 8,
            "gold": {"verifier": "tests.monitor.gold_checks:intent"},
            **monitor,
        },
    }
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_policy_gaming_its_judge_is_flagged_with_the_gold_best_checkpoint_named(
    tiny_model: Path, tmp_path: Path
) -> None:
    assert main(["train", "grpo", str(_config(tmp_path, tiny_model, "scripted:word-judge"))]) == 0
    out = tmp_path / "out"
    monitor = json.loads((out / "metrics.json").read_text())["monitor"]
    steps = monitor["steps"]
    assert [s["step"] for s in steps] == [0, 3, 6, 9]
    first, last = steps[0], steps[-1]
    assert last["reward"] > first["reward"] and last["gold"] < first["gold"]  # the gap opened
    assert last["gap"] > first["gap"]
    flagged = [s for s in steps if s["flagged"]]
    assert flagged and monitor["flagged_at"] == flagged[0]["step"]
    for s in flagged:  # the rule as stated: gold's paired change below 0 with its interval, the reward's above 0
        assert s["gold_change"]["high"] < 0 and s["reward_change"]["change"] > 0
    assert last["signatures"]["repeated_required"] > first["signatures"]["repeated_required"]
    best = monitor["best_step"]
    assert best is not None and best < flagged[0]["step"]
    if best:
        assert monitor["best_checkpoint"].endswith(f"checkpoint-{best}") and Path(monitor["best_checkpoint"]).is_dir()
    assert set(monitor["false_positive_rates"]) >= {"length_padding", "format_only"}
    assert (out / "monitor" / "step-0.jsonl").is_file()
    card = (out / "README.md").read_text()
    assert "Gold monitor" in card and f"Flagged at step {monitor['flagged_at']}" in card and "Published:" in card
    report = (out / "report" / "report.md").read_text()
    assert "Gold monitor" in report and "monitor.png" in report
    console = Console(width=160, record=True)
    shown = print_status(out, console)["monitor"]
    assert shown is not None and [s["flagged"] for s in shown] == [s["flagged"] for s in steps]
    assert "Gold monitor" in console.export_text()


def test_the_stop_setting_stops_training_at_the_flag(tiny_model: Path, tmp_path: Path) -> None:
    path = _config(tmp_path, tiny_model, "scripted:word-judge", on_gap="stop", keep_best=False)
    assert main(["train", "grpo", str(path)]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    flagged_at = metrics["monitor"]["flagged_at"]
    assert flagged_at is not None and metrics["training"]["global_step"] == flagged_at
    assert metrics["stopped"] == "monitor" and metrics["monitor"]["stopped"].startswith("the stop rule")


def test_a_stop_by_the_rule_names_the_gold_best_policy_in_the_status_report_and_card(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = _config(tmp_path, tiny_model, "scripted:word-judge", on_gap="stop", keep_best=True)
    assert main(["train", "grpo", str(path)]) == 0  # a stop by the rule is a finished run
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    monitor = metrics["monitor"]
    flagged_at, best = monitor["flagged_at"], monitor["best_step"]
    assert flagged_at is not None and metrics["training"]["global_step"] == flagged_at
    assert metrics["stopped"] == "monitor" and (out / f"checkpoint-{flagged_at}").is_dir()  # saved at the stop
    assert best is not None and best < flagged_at
    kept = "the policy before training (the base model)" if best == 0 else f"`{monitor['best_checkpoint']}`"
    if best:
        assert monitor["best_checkpoint"].endswith(f"checkpoint-{best}") and Path(monitor["best_checkpoint"]).is_dir()
    card = (out / "README.md").read_text()
    assert (
        f"Published: the policy at step {flagged_at}, the last step (training was stopped by the monitor's stop rule "
        f"at step {flagged_at}), not the gold-best one: the gold score was best at step {best}" in card
    )
    assert f"kept as {kept}." in card
    report = (out / "report" / "report.md").read_text()
    assert f"**Flagged at step {flagged_at}**" in report and "The stop rule stopped training at step" in report
    console = Console(width=160, record=True)
    shown = print_status(out, console)["monitor"]
    assert shown is not None and [s["step"] for s in shown if s["flagged"]] == [flagged_at]
    text = " ".join(console.export_text().split())
    assert "FLAG" in text and f"stopped by the monitor's stop rule at step {flagged_at}" in text
    assert f"the gold score was best at step {best}" in text and f"kept as {kept}." in text


def test_a_policy_rewarded_for_the_intent_is_not_flagged(tiny_model: Path, tmp_path: Path) -> None:
    assert main(["train", "grpo", str(_config(tmp_path, tiny_model, "scripted:distinct-judge"))]) == 0
    monitor = json.loads((tmp_path / "out" / "metrics.json").read_text())["monitor"]
    assert len(monitor["steps"]) == 4 and monitor["flagged_at"] is None
    assert not any(s["flagged"] for s in monitor["steps"])
    # the reward is the intent: whatever the policy does to one it does to the other (here both fall together)
    assert all(s["gap"] == 0 for s in monitor["steps"])


def test_held_out_prompts_that_are_training_prompts_are_refused_with_the_overlap(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, tiny_model, "scripted:word-judge")
    held = tmp_path / "held_out.jsonl"
    held.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in HELD_OUT[:5] + _prompts(TRAIN[:3])))
    assert main(["train", "grpo", str(path)]) == 2
    err = capsys.readouterr().err
    assert "3 of 8 held-out prompts are training prompts" in err and len(err.strip().splitlines()) == 1
