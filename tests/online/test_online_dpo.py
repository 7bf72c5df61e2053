"""`charter train online-dpo`: TRL's online DPO trainer with charter's pairwise judge, failed and undecided pairs
masked out of the loss (no gradient), the pairs per step in the reward store, status, report and card."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from charter.cli import app
from charter.judge_prompt import read_comparison
from charter.online.pairs import Decision, decide, masked_dpo_loss
from charter.providers.scripted import register_script
from charter.records import Failure, Judgment, Vote
from charter.runs.rewards import rewards
from charter.runs.store import RunStore


def _fails(a: str, b: str) -> bool:
    """The pairs the script cannot judge: the same for both orders."""
    return (len(a) + len(b)) % 3 == 0


def _close(a: str, b: str) -> bool:
    """The pairs the script leaves undecided: it answers (A) in both orders."""
    return abs(len(a) - len(b)) <= 4


def _longer(messages, params):  # noqa: ANN001, ANN202 - prefers the clearly longer response; fails some pairs
    a, b = read_comparison(messages[-1].content) or ("", "")
    if _fails(a, b):
        return "I would rather not say."
    return "A" if _close(a, b) or len(a) > len(b) else "B"


register_script("longer-flaky", _longer)


def _grads(features: torch.Tensor, ref: torch.Tensor, trained: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of the masked DPO loss on a tiny model's parameters: per pair, its chosen and rejected
    log-probability sums are the model's two outputs for that pair's features."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    out = layer(features)
    masked_dpo_loss(out[:, 0], out[:, 1], ref[:, 0], ref[:, 1], trained, 0.1, "sigmoid").backward()
    return [p.grad for p in layer.parameters() if p.grad is not None]


def test_a_masked_pair_leaves_the_gradient_unchanged() -> None:
    torch.manual_seed(1)
    features, ref = torch.randn(3, 4), torch.randn(3, 2)
    with_masked = _grads(features, ref, torch.tensor([True, True, False]))
    without = _grads(features[:2], ref[:2], torch.tensor([True, True]))
    assert len(with_masked) == 2 and all(torch.allclose(g, h) for g, h in zip(with_masked, without))
    trained_all = _grads(features, ref, torch.tensor([True, True, True]))
    assert not all(torch.allclose(g, h) for g, h in zip(with_masked, trained_all))  # the pair would have counted


def _batch(n: int):  # noqa: ANN202
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    out = layer(torch.randn(n, 4))
    ref = torch.randn(n, 2)
    return layer, out[:, 0], out[:, 1], ref[:, 0], ref[:, 1]


def test_a_batch_of_masked_pairs_gives_no_gradient_and_no_nan() -> None:
    layer, chosen, rejected, ref_c, ref_r = _batch(2)
    loss = masked_dpo_loss(chosen, rejected, ref_c * float("inf"), ref_r, torch.tensor([False, False]), 0.1, "ipo")
    loss.backward()
    assert loss.item() == 0 and all(torch.count_nonzero(p.grad) == 0 for p in layer.parameters())


def _judgment(p_a: float | None, consistent: bool | None = None) -> Judgment:
    """A judgment of P(first better) p_a (None: failed), its orders agreeing or not (None: one order)."""
    base = {"pair_id": "p", "fingerprint": "f", "mode": "logprobs", "orders": "both", "judge_model": "j"}
    if p_a is None:
        failure = Failure(kind="unparseable", message="no verdict")
        return Judgment.model_validate({**base, "principle_ids": ["x"], "status": "failed", "failure": failure})
    vote = Vote(principle_id="x", p_a=p_a, p_a_ab=p_a)
    fields = {"p_a": p_a, "p_a_ab": p_a, "position_consistent": consistent, "principles": [vote]}
    return Judgment.model_validate({**base, "principle_ids": ["x"], "status": "ok", **fields})


def test_only_a_consistent_confident_judgment_decides() -> None:
    assert decide(_judgment(None), 0.1).masked == "failed"
    assert decide(_judgment(0.9, False), 0.1).masked == "undecided"  # the orders disagree
    assert decide(_judgment(0.55, True), 0.1).masked == "undecided"  # below min_confidence
    assert decide(_judgment(0.5), 0.0).masked == "undecided"  # no preference at all
    assert decide(_judgment(0.2, True), 0.1) == Decision(first_wins=False, masked=None)
    assert decide(_judgment(0.8), 0.1) == Decision(first_wins=True, masked=None)


def test_train_online_dpo_masks_every_failed_pair(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "odpo"
    config = {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(8)]},
        "judge": {"model": "scripted:longer-flaky", "mode": "verdict", "orders": "both", "max_reasks": 0,
                  "principles_per_pair": 1},
        "max_failures": 1000,
        "cache": None,
        "device": "cpu",
        "output_dir": str(out),
        "trl": {"max_steps": 4, "per_device_train_batch_size": 4, "max_new_tokens": 8, "save_strategy": "no",
                "temperature": 1.0},
    }  # fmt: skip
    path = tmp_path / "odpo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "online-dpo", str(path)])
    assert result.exit_code == 0, result.output
    stored = [r for r in rewards(RunStore(out)) if r.scoring == "pair" and r.reference is not None]
    assert len(stored) == 16  # 4 steps of 4 prompts, one pair each
    failed = [r for r in stored if _fails(r.completion, r.reference)]
    assert failed and all(r.masked == "failed" and r.reward is None for r in failed)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["masked"]["failed"] == len(failed) == sum(r.failure is not None for r in stored)
    for r in stored:  # no pair trained without a decided judgment: both orders agreed, confidence reached
        if r.masked is None:
            assert r.reward is not None and abs(r.reward - 0.5) >= 0.1 and not _close(r.completion, r.reference)
            assert (r.reward > 0.5) == (len(r.completion) > len(r.reference))
    assert metrics["trained"] == sum(r.masked is None for r in stored) > 0
    undecided = [r for r in stored if r.masked == "undecided"]
    assert undecided and all(_close(r.completion, r.reference) for r in undecided)
    assert metrics["masked"]["undecided"] == len(undecided)
    assert metrics["trained"] + metrics["masked"]["failed"] + metrics["masked"]["undecided"] == 16
    assert [s["pairs"] for s in metrics["steps"]] == [4, 4, 4, 4] and metrics["steps"][0]["calls"] > 0
    logged = [e for e in metrics["trl_log"] if "charter/masked_failed" in e]
    assert sum(e["charter/masked_failed"] for e in logged) == len(failed)
    assert "masked (judgment failed)" in (out / "README.md").read_text()
    from safetensors.torch import load_file

    before, after = load_file(tiny_model / "model.safetensors"), load_file(out / "model.safetensors")
    assert not all(torch.equal(before[k], after[k]) for k in before)  # the decided pairs trained the policy
    status = CliRunner().invoke(app, ["status", str(out)])
    assert status.exit_code == 0 and "undecided" in status.output, status.output
    assert "undecided" in (out / "report" / "report.md").read_text()
    as_json = json.loads(CliRunner().invoke(app, ["status", str(out), "--json"]).stdout)
    online = as_json["online"]  # the machine-readable status: the run's totals and its rows per step
    assert as_json["kind"] == "online" and online["pairs"] == 16 and online["trained"] == metrics["trained"]
    assert online["masked"] == {"failed": len(failed), "undecided": len(undecided)}
    assert [s["pairs"] for s in online["per_step"]] == [4, 4, 4, 4]


def test_the_example_config_reads() -> None:
    from charter.online.config import OnlineDPOConfig
    from charter.yamlio import load_model

    cfg = load_model(OnlineDPOConfig, Path(__file__).resolve().parents[2] / "examples" / "online-dpo.yaml", None)
    assert cfg.judge.mode == "logprobs" and cfg.min_confidence == 0.1


def test_a_rating_judge_is_refused(tmp_path: Path) -> None:
    from charter.errors import ConfigError
    from charter.online.config import OnlineDPOConfig

    with pytest.raises((ConfigError, ValueError), match="online DPO"):
        OnlineDPOConfig.model_validate({"prompts": "x.jsonl", "judge": {"model": "scripted:cai", "mode": "score"}})
    with pytest.raises((ConfigError, ValueError), match="the judge alone"):
        OnlineDPOConfig.model_validate({"prompts": "x.jsonl", "trl": {"missing_eos_penalty": 1.0}})


def test_two_ranks_judge_their_own_pairs_and_the_main_process_merges_the_store(
    tiny_model: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "odpo"
    config = {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(8)]},
        "judge": {"model": "scripted:cai", "mode": "verdict", "orders": "both", "principles_per_pair": 1},
        "cache": None,
        "device": "cpu",
        "output_dir": str(out),
        "trl": {"max_steps": 2, "per_device_train_batch_size": 2, "max_new_tokens": 8, "save_strategy": "no"},
    }
    path = tmp_path / "odpo.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "charter.cli", "train", "online-dpo", str(path)]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    stored = [r for r in rewards(RunStore(out)) if r.scoring == "pair"]
    assert {r.rank for r in stored} == {0, 1} and len(stored) == 8  # 2 steps x 2 ranks x 2 prompts
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["world_size"] == 2 and metrics["pairs"] == 8
    judged = sum(r.comparisons or 0 for r in stored)  # an identical pair needs no call
    assert sum(s["calls"] for s in metrics["steps"]) == 2 * judged  # both orders, both ranks counted


def test_a_panel_judges_and_a_pair_any_member_fails_is_masked(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "panel"
    config = {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(4)]},
        "judge": {"models": [{"model": "scripted:longer-flaky"}, {"model": "scripted:cai"}], "max_reasks": 0,
                  "mode": "verdict", "orders": "both", "principles_per_pair": 1},
        "max_failures": 1000,
        "cache": None,
        "device": "cpu",
        "output_dir": str(out),
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "max_new_tokens": 8, "save_strategy": "no"},
    }  # fmt: skip
    path = tmp_path / "panel.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "online-dpo", str(path)])
    assert result.exit_code == 0, result.output
    stored = [r for r in rewards(RunStore(out)) if r.scoring == "pair" and r.reference is not None]
    failed = [r for r in stored if _fails(r.completion, r.reference)]
    assert failed and all(r.masked == "failed" for r in failed)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["masked"]["failed"] == len(failed) and "scripted:cai" in metrics["judge"]


def _cli_config(tmp_path: Path, tiny_model: Path, **over) -> Path:  # noqa: ANN003
    config = {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(8)]},
        "judge": {"model": "scripted:longer-flaky", "mode": "verdict", "orders": "both", "max_reasks": 0},
        "cache": None,
        "device": "cpu",
        "output_dir": str(tmp_path / "out"),
        "trl": {"max_steps": 4, "per_device_train_batch_size": 4, "max_new_tokens": 8, "save_steps": 1},
        **over,
    }
    path = tmp_path / "odpo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_budget_stops_online_dpo_after_a_step_with_a_checkpoint_and_exit_4(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from charter.cli import main

    path = _cli_config(tmp_path, tiny_model, budget={"max_tokens": 1}, max_failures=1000)
    assert main(["train", "online-dpo", str(path)]) == 4
    assert "budget reached after step 1" in capsys.readouterr().err
    out = tmp_path / "out"
    assert (out / "checkpoint-1").is_dir() and (out / "model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"] == "budget" and metrics["training"]["global_step"] == 1 and metrics["pairs"] == 4
    path = _cli_config(tmp_path, tiny_model, max_failures=1000)  # no budget: the same command resumes and finishes
    assert main(["train", "online-dpo", str(path)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["resumed_from"] == "checkpoint-1" and metrics["training"]["global_step"] == 4


def test_past_max_failures_online_dpo_stops_with_exit_3(tiny_model: Path, tmp_path: Path) -> None:
    from charter.cli import main

    path = _cli_config(tmp_path, tiny_model, max_failures=1)
    assert main(["train", "online-dpo", str(path)]) == 3
    stored = [r for r in rewards(RunStore(tmp_path / "out")) if r.scoring == "pair"]
    # checked after each batch of pairs: the batch that passes 1 failure stops training, its pairs kept
    assert sum(r.masked == "failed" for r in stored) > 1 and not (tmp_path / "out" / "metrics.json").exists()


def test_a_judge_that_decides_nothing_leaves_the_policy_unchanged(tiny_model: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    # the constant script answers "OK" to every comparison: no verdict, every pair fails and is masked
    path = _cli_config(tmp_path, tiny_model, max_failures=1000,
                       judge={"model": "scripted:constant", "mode": "verdict", "max_reasks": 0})  # fmt: skip
    result = CliRunner().invoke(app, ["train", "online-dpo", str(path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda name: pytest.fail(f"metrics.json holds {name}"))
    assert metrics["trained"] == 0 and metrics["masked"]["failed"] == metrics["pairs"] == 16
    before, after = load_file(tiny_model / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_completions_are_generated_with_the_kv_cache_and_checkpointing_off(tiny_model: Path, tmp_path: Path) -> None:
    """TRL's online DPO generates with use_cache False under activation checkpointing (every token recomputes the
    sequence); charter's trainer generates with the cache, the checkpointing off meanwhile and back on after."""
    import datasets

    from charter.online.config import OnlineDPOConfig
    from charter.online.dpo import _trl_args, judged_trainer_class, pair_judge
    from charter.training.models import load_policy

    config = OnlineDPOConfig.model_validate(
        {"model": str(tiny_model), "prompts": {"inline": ["q"]}, "cache": None, "device": "cpu",
         "output_dir": str(tmp_path / "out"), "judge": {"model": "scripted:longer-flaky", "mode": "verdict"},
         "trl": {"max_new_tokens": 4, "per_device_train_batch_size": 2}}
    )  # fmt: skip
    model, tokenizer, _ = load_policy(config.model, None)
    trainer = judged_trainer_class()(
        model=model, judge=pair_judge(config), args=_trl_args(config, "cpu"),
        train_dataset=datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": "q"}]}] * 2),
        processing_class=tokenizer,
    )  # fmt: skip
    assert trainer.args.gradient_checkpointing and trainer.model.is_gradient_checkpointing
    seen = []
    generate = trainer.model.generate

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real generate, its state noted
        seen.append((trainer.model.is_gradient_checkpointing, kwargs["generation_config"].use_cache))
        return generate(*args, **kwargs)

    trainer.model.generate = spy
    trainer.model.train()
    trainer._generate(trainer.model, [[{"role": "user", "content": "q"}]] * 2)
    trainer.judge.close()
    assert seen == [(False, True)] and trainer.model.is_gradient_checkpointing
