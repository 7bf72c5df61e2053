"""Online DPO's training step by the sign of its gradient: TRL's generation and forward pass replaced by fixed
completions whose log-probabilities are each one parameter, the judge by a rule of known preference. The step's
gradient raises the log-probability of each completion the judge preferred and lowers the other's, whichever order
they came in; a masked pair's completions get none."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import torch

from charter.online.dpo import STATS, judged_trainer_class
from charter.online.pairs import Decision

#: Three prompts, two completions each (TRL's layout: the first completions, then the second ones). The judge prefers
#: the longer completion and leaves pairs of equal length undecided.
FIRSTS = ["a long and careful answer", "short", "same size"]
SECONDS = ["short", "a long and careful answer", "size same"]
TOKENS = 4


class _Judge:
    checklist = None

    def judge_pairs(self, prompts, firsts, seconds, step, **kwargs) -> list[Decision]:  # noqa: ANN001
        return [
            Decision(len(a) > len(b), None) if len(a) != len(b) else Decision(None, "undecided")
            for a, b in zip(firsts, seconds)
        ]


def _step() -> torch.Tensor:
    """One training step of the judged trainer on the fixed completions; the gradient of each completion's
    log-probability parameter (first completions, then second ones)."""
    texts = FIRSTS + SECONDS
    theta = torch.zeros(len(texts), requires_grad=True)  # the policy: one log-probability parameter a completion
    reference = object()
    trainer: Any = object.__new__(judged_trainer_class())
    ids = torch.arange(len(texts)).unsqueeze(1).repeat(1, TOKENS)  # completion i is token i, TOKENS times
    mask = torch.ones_like(ids)

    def forward(model, prompt_ids, prompt_mask, completion_ids, completion_mask):  # noqa: ANN001, ANN202
        per_token = theta if model is not reference else torch.zeros(len(texts))
        return per_token[completion_ids[:, 0]].unsqueeze(1).expand(-1, TOKENS) / TOKENS

    trainer.__dict__.update(
        args=SimpleNamespace(use_vllm=False, loss_type="sigmoid", gradient_accumulation_steps=1),
        _generate=lambda model, prompts: (None, None, ids, mask, None),
        _forward=forward,
        ref_model=reference,
        processing_class=SimpleNamespace(batch_decode=lambda t, skip_special_tokens: [texts[i] for i in t[:, 0]]),
        judge=_Judge(),
        state=SimpleNamespace(global_step=0),
        _beta=0.1,
        in_loss=Counter(),
        stats={key: [] for key in STATS},
        accelerator=SimpleNamespace(
            gather=lambda x: x, gather_for_metrics=lambda x: x, backward=lambda loss: loss.backward()
        ),
    )
    trainer.training_step(SimpleNamespace(train=lambda: None), {"prompt": ["q0", "q1", "q2"]})
    assert theta.grad is not None and trainer.in_loss[1] == 2  # two pairs decided, one masked
    return theta.grad


def test_the_step_raises_the_preferred_completion_and_lowers_the_other_in_either_order() -> None:
    grad = _step()
    n = len(FIRSTS)
    # a gradient step moves against the gradient: a negative entry is a log-probability the step raises
    assert grad[0] < 0 < grad[n]  # pair 0: the first completion is the longer one, preferred
    assert grad[1] > 0 > grad[n + 1]  # pair 1: the second completion is preferred
    assert grad[2] == 0 and grad[n + 2] == 0  # pair 2: undecided, masked: no gradient
    assert torch.allclose(grad[0], -grad[n]) and torch.allclose(grad[0], grad[n + 1])
