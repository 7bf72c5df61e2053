"""TRL's GRPOTrainer trains on the `steps` scoring's one reward per trajectory (None, a failed step verdict, reaches
it as NaN, never a number) and gets each completion's per-step rewards for its completions table (`log_extra`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.judge.modes import scripted_reply
from charter.judge.steps import read_judged_step
from charter.providers.scripted import register_script
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.judge.agents import AGENTS, TRAJECTORY


def _odd_fails(messages, params):  # noqa: ANN001
    """Passes the prompt's own step; a completion's step fails where its text has an odd length, else passes."""
    text = messages[-1].content
    step = read_judged_step(text) or ""
    if "get_balance" not in step and len(step) % 2:
        return "no verdict"
    return scripted_reply(text, (None, "it does what the user asked"))


register_script("odd-step-fails", _odd_fails)


def test_grpo_trains_on_the_trajectory_reward_and_logs_the_steps(tiny_model: Path, tmp_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    reward = charter.reward_function(
        "scripted:odd-step-fails", AGENTS, "steps", store=tmp_path / "rewards", cache=None, max_reasks=0,
        max_failures=1000, step_reduction="mean",
    )  # fmt: skip
    prompt = TRAJECTORY[:4]  # system, user, the agent's tool call, the tool's result: the policy writes the next step
    dataset = datasets.Dataset.from_list([{"prompt": prompt}] * 4)
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        logging_steps=1, max_steps=1, num_generations=4, per_device_train_batch_size=4, max_completion_length=8,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model),
    )
    trainer.train()
    reward.close()
    stored = list(rewards(RunStore(tmp_path / "rewards")))
    assert len(stored) == 4 and all(len(r.steps or []) == 2 and r.steps[0] == 1.0 for r in stored)
    for record in stored:  # the mean of the steps, or None where the policy's step got no verdict
        assert record.reward == (None if record.steps[1] is None else 1.0)
        assert (record.reward is None) == (record.failure is not None)
    [logged] = [e for e in trainer.state.log_history if "charter/judge_failures" in e]
    assert logged["charter/judge_failures"] == sum(r.reward is None for r in stored)  # TRL got NaN, not a number
    shown = list(trainer._logs["extra"]["charter/steps"])  # the completions table's column
    assert sorted(map(str, shown)) == sorted(str(r.steps) for r in stored)
    if any(r.reward is not None for r in stored):
        assert logged["rewards/charter_steps/mean"] == pytest.approx(1.0)
