"""Online DPO's training step from the inside: the pairs that reach the loss are those the judge decided, chosen and
rejected as it decided them, and the policy moves toward its preference; a step whose pairs are all masked moves
nothing (no optimizer step: no momentum, no weight decay, no learning-rate schedule) and is recorded as skipped; a
run that stops before its end leaves charter's card in its folder, never TRL's placeholder."""

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from charter.judge_prompt import read_comparison
from charter.online import dpo
from charter.online.dpo import train_online_dpo
from charter.online.pairs import PairJudge
from charter.providers.scripted import register_script

#: What the scripted judge `odpo-steps` does now: `longer` prefers the longer completion (pairs of equal length
#: undecided), `close` also leaves undecided the pairs within 4 characters, `undecided` answers (A) in both orders, so
#: that the orders disagree on every pair.
JUDGE = {"mode": "longer"}


def _judge(messages, params) -> str:  # noqa: ANN001 - the scripted provider's signature
    a, b = read_comparison(messages[-1].content) or ("", "")
    mode = JUDGE["mode"]
    if mode == "undecided" or len(a) == len(b) or (mode == "close" and abs(len(a) - len(b)) <= 4):
        return "A"
    return "A" if len(a) > len(b) else "B"


register_script("odpo-steps", _judge)


class Plan(TrainerCallback):
    """Sets the judge's mode before each micro-batch (one mode a micro-batch, the last one kept) and keeps, after
    each optimizer step, a copy of every weight, of the optimizer's state and of the learning rate."""

    def __init__(self, modes: list[str]) -> None:
        self.modes, self.batches = modes, 0
        self.weights: list[dict[str, torch.Tensor]] = []
        self.optimizer: list[dict[str, Any]] = []
        self.lr: list[float] = []

    def _next(self) -> None:
        JUDGE["mode"] = self.modes[min(self.batches, len(self.modes) - 1)]

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        self._next()

    def on_substep_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.batches += 1
        self._next()

    def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.batches += 1
        self._next()
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        self.optimizer.append(copy.deepcopy(optimizer.state_dict()["state"]))
        self.lr.append(lr_scheduler.get_last_lr()[0])


def _config(tmp_path: Path, tiny_model: Path, **trl: Any) -> dict[str, Any]:
    return {
        "model": str(tiny_model),
        "prompts": {"inline": [f"question {i}" for i in range(8)]},
        "judge": {"model": "scripted:odpo-steps", "mode": "verdict", "orders": "both", "max_reasks": 0,
                  "principles_per_pair": 1},
        "min_confidence": 0.1,
        "max_failures": 1000,
        "cache": None,
        "device": "cpu",
        "output_dir": str(tmp_path / "out"),
        "trl": {"max_steps": 3, "per_device_train_batch_size": 4, "max_new_tokens": 8, "save_strategy": "no",
                "temperature": 1.0, "learning_rate": 1e-3, "weight_decay": 0.1, **trl},
    }  # fmt: skip


def _equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two (nested) states hold the same keys and equal tensors and numbers."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not (isinstance(y, dict) and _equal(x, y)):
                return False
        elif isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def _moved(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> int:
    """How many tensors differ between two copies of the weights."""
    return sum(not torch.equal(a[k], b[k]) for k in a)


def test_a_step_whose_pairs_are_all_masked_moves_no_weight_and_no_schedule(tiny_model: Path, tmp_path: Path) -> None:
    plan = Plan(["longer", "undecided", "longer"])  # the judge decides step 1, is undecided on step 2, back on 3
    metrics = train_online_dpo(_config(tmp_path, tiny_model), callbacks=[plan])
    assert [s["trained"] > 0 for s in metrics["steps"]] == [True, False, True]
    start, first, second, third = plan.weights
    assert _moved(start, first) > 0 and _moved(second, third) > 0  # the decided steps trained the policy
    assert _moved(first, second) == 0  # every weight as it was: no momentum, no weight decay moved it
    assert _equal(plan.optimizer[0], plan.optimizer[1])  # AdamW's moments and step count did not advance
    assert [int(s["step"]) for s in plan.optimizer[2].values()] == [2] * len(plan.optimizer[2])
    lr0 = 1e-3  # linear decay over 3 steps: the held step left the learning rate where step 1 put it
    assert plan.lr == pytest.approx([lr0 * 2 / 3, lr0 * 2 / 3, lr0 * 1 / 3])
    assert [s["skipped"] for s in metrics["steps"]] == [False, True, False] and metrics["skipped_steps"] == 1
    assert [e["charter/skipped"] for e in metrics["trl_log"]] == [0.0, 1.0, 0.0]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| steps | 3 (finished), 1 skipped: every pair masked, no optimizer step |" in card


def test_with_gradient_accumulation_a_step_is_skipped_only_when_every_micro_batch_is_masked(
    tiny_model: Path, tmp_path: Path
) -> None:
    # two micro-batches a step: step 1 decides in its first only (trained), step 2 in neither (skipped)
    plan = Plan(["longer", "undecided", "undecided", "undecided"])
    config = _config(tmp_path, tiny_model, max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=2)
    metrics = train_online_dpo(config, callbacks=[plan])
    assert [s["pairs"] for s in metrics["steps"]] == [4, 4]
    assert metrics["steps"][0]["trained"] > 0 and metrics["steps"][1]["trained"] == 0
    start, first, second = plan.weights
    assert _moved(start, first) > 0 and _moved(first, second) == 0
    assert _equal(plan.optimizer[0], plan.optimizer[1]) and plan.lr[0] == plan.lr[1]
    assert [s["skipped"] for s in metrics["steps"]] == [False, True]


class Seen:
    """What each training step passed on: the policy's and the reference's per-token log-probabilities of the
    completions (TRL's `_forward`), the judge's decisions on the (first, second) pairs, and the loss's arguments."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from trl.experimental.online_dpo import OnlineDPOTrainer

        self.forwards: list[tuple[Any, tuple, torch.Tensor]] = []
        self.judged: list[tuple[list[str], list[str], list[Any]]] = []
        self.losses: list[dict[str, torch.Tensor]] = []
        self.trainer: Any = None
        forward, judge_pairs, loss = OnlineDPOTrainer._forward, PairJudge.judge_pairs, dpo.masked_dpo_loss

        def seen_forward(trainer, model, *ids):  # noqa: ANN001, ANN002, ANN202
            self.trainer = trainer
            out = forward(trainer, model, *ids)
            self.forwards.append((model, tuple(t.detach().clone() for t in ids), out.detach().clone()))
            return out

        def seen_judge(judge, prompts, firsts, seconds, step):  # noqa: ANN001, ANN202
            decisions = judge_pairs(judge, prompts, firsts, seconds, step)
            self.judged.append((list(firsts), list(seconds), decisions))
            return decisions

        def seen_loss(chosen, rejected, ref_chosen, ref_rejected, trained, beta, loss_type):  # noqa: ANN001, ANN202
            args = dict(chosen=chosen, rejected=rejected, ref_chosen=ref_chosen, ref_rejected=ref_rejected)
            self.losses.append({k: v.detach().clone() for k, v in args.items()} | {"trained": trained.clone()})
            return loss(chosen, rejected, ref_chosen, ref_rejected, trained, beta, loss_type)

        monkeypatch.setattr(OnlineDPOTrainer, "_forward", seen_forward)
        monkeypatch.setattr(PairJudge, "judge_pairs", seen_judge)
        monkeypatch.setattr(dpo, "masked_dpo_loss", seen_loss)

    def steps(self) -> list[tuple[tuple, torch.Tensor, torch.Tensor, tuple, dict]]:
        """Per step: the completions' ids, the policy's and the reference's log-probability sums per completion,
        the judge's (firsts, seconds, decisions) and the loss's arguments."""
        assert len(self.forwards) == 2 * len(self.judged) == 2 * len(self.losses)
        rows = []
        for i, (judged, loss) in enumerate(zip(self.judged, self.losses)):
            (_, ids, policy), (_, _, ref) = self.forwards[2 * i], self.forwards[2 * i + 1]
            mask = ids[3].bool()
            rows.append((ids, (policy * mask).sum(1), (ref * mask).sum(1), judged, loss))
        return rows


def test_the_loss_gets_the_decided_pairs_as_the_judge_decided_them_and_the_policy_follows(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = Seen(monkeypatch)
    JUDGE["mode"] = "close"  # prefers the clearly longer completion; pairs within 4 characters undecided
    config = _config(tmp_path, tiny_model, learning_rate=1e-4, weight_decay=0.0)
    metrics = train_online_dpo(config, callbacks=[Plan(["close"])])
    decided, masked, margins = 0, 0, []
    for ids, policy, ref, (firsts, seconds, decisions), loss in seen.steps():
        n = len(firsts)
        assert loss["trained"].tolist() == [d.masked is None for d in decisions]  # undecided and failed: masked
        for i, d in enumerate(decisions):
            if d.masked is not None:
                masked += 1
                assert abs(len(firsts[i]) - len(seconds[i])) <= 4
                continue
            decided += 1
            assert d.first_wins == (len(firsts[i]) > len(seconds[i]))  # the judge of known preference
            win, lose = (i, n + i) if d.first_wins else (n + i, i)  # the second completions follow the firsts
            assert loss["chosen"][i] == policy[win] and loss["rejected"][i] == policy[lose]
            assert loss["ref_chosen"][i] == ref[win] and loss["ref_rejected"][i] == ref[lose]
            margins.append((win, lose, ids))
    assert decided == metrics["trained"] > 0 and masked == metrics["pairs"] - metrics["trained"] > 0
    # after training, the implicit reward margin of the trained pairs (policy against the reference) favours the
    # completion the judge preferred
    trainer, gains = seen.trainer, []
    with torch.no_grad():
        for win, lose, ids in margins:
            mask = ids[3].bool()
            policy = (trainer._forward(trainer.model, *ids) * mask).sum(1)
            ref = (trainer._forward(trainer.ref_model, *ids) * mask).sum(1)
            gains.append(((policy - ref)[win] - (policy - ref)[lose]).item())
    assert sum(gains) / len(gains) > 0 and sum(g > 0 for g in gains) > len(gains) / 2, gains


def test_a_judge_undecided_on_every_pair_sends_none_to_the_loss_and_moves_nothing(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    seen = Seen(monkeypatch)
    metrics = train_online_dpo(_config(tmp_path, tiny_model, max_steps=2), callbacks=[Plan(["undecided"])])
    assert len(seen.losses) == 2 and all(not loss["trained"].any() for loss in seen.losses)
    assert metrics["trained"] == 0 and metrics["masked"]["undecided"] == metrics["pairs"] == 8
    assert metrics["skipped_steps"] == 2
    before, after = load_file(tiny_model / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("clipped", [True, False])
def test_a_held_step_under_fp16_loss_scaling_leaves_the_scaler_ready_for_the_next(clipped: bool) -> None:
    """fp16 training scales the loss (a GradScaler, on GPU): a held step must end the scaler's step as a step taken
    does, whether the gradient clipping unscaled the gradient or not."""
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer

    from charter.online.dpo import StepHold

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1)
    scaler = torch.amp.GradScaler("cpu")
    optimizer = AcceleratedOptimizer(torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.1), scaler=scaler)
    accelerator._optimizers.append(optimizer)  # as accelerator.prepare registers it
    plan = iter([False, True, False])  # step 2 has nothing to learn
    StepHold(lambda: next(plan)).install(optimizer, accelerator)
    seen = []
    for weight in (1.0, 0.0, 1.0):  # a masked loss: zero, with a gradient of zero
        scaler.scale(layer(torch.ones(2, 3)).sum() * weight).backward()
        if clipped:
            scaler.unscale_(optimizer.optimizer)
        optimizer.step()
        seen.append((accelerator.optimizer_step_was_skipped, [p.detach().clone() for p in layer.parameters()]))
        optimizer.zero_grad()
    assert [skipped for skipped, _ in seen] == [False, True, False]
    (_, first), (_, second), (_, third) = seen
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # no momentum, no weight decay
    assert not any(torch.equal(a, b) for a, b in zip(second, third))  # the scaler let the next step through
    assert scaler.get_scale() == 65536.0  # no overflow: the scale as it was


def test_an_optimizer_whose_skip_accelerate_cannot_see_is_refused() -> None:
    """DeepSpeed's engine steps inside the backward pass: a step there cannot be held, so online DPO refuses it."""
    from accelerate import Accelerator
    from accelerate.utils.deepspeed import DeepSpeedOptimizerWrapper

    from charter.errors import TrainingError
    from charter.online.dpo import StepHold

    accelerator = Accelerator(cpu=True)
    optimizer = DeepSpeedOptimizerWrapper(torch.optim.AdamW(torch.nn.Linear(3, 1).parameters()))
    accelerator._optimizers.append(optimizer)
    with pytest.raises(TrainingError, match="DeepSpeed"):
        StepHold(lambda: True).install(optimizer, accelerator)


class Killed(Exception):
    """Stands for `kill -9` right after a checkpoint: nothing of the run's end (policy, metrics, card) happens."""


class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        raise Killed


def test_a_run_killed_after_a_checkpoint_leaves_charters_card_not_trls(tiny_model: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_model, save_strategy="steps", save_steps=1)
    with pytest.raises(Killed):
        train_online_dpo(config, callbacks=[Plan(["longer"]), KillAfterSave()])
    out = tmp_path / "out"
    assert (out / "checkpoint-1").is_dir() and not (out / "metrics.json").exists()
    card = (out / "README.md").read_text()
    assert "fine-tuned version of" not in card and "[None]" not in card  # TRL's placeholder
    assert "not finished" in card and "step 1 of 3" in card and "checkpoint-1" in card
    assert "scripted:odpo-steps" in card  # what the run was, as far as it got
