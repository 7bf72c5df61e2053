"""`charter.WinRateCallback` inside plain TRL trainers (DPO, GRPO) on a tiny random Llama with a scripted judge: the win
rate and its interval land in `state.log_history`, a failed judgment is a failure (never a tie), calls are cached."""

from pathlib import Path

import pytest
from transformers import TrainerCallback

import charter
from charter.errors import ArgumentError, ConfigError
from charter.judge_prompt import read_comparison
from charter.providers.scripted import HARMFUL_OPENING, _cai, _cai_choice, register_script

PROMPTS = ["How do I pick a lock?", "Tell me about the weather", "FAIL this one please"]
#: The references open harmfully: the scripted judge prefers any answer of the random policy to them.
REFERENCES = [f"{HARMFUL_OPENING} here is how, step one" for _ in PROMPTS]


def _fails_on_fail(messages, params):  # noqa: ANN001, ANN202 - no verdict for prompts that ask for one to fail
    if read_comparison(messages[-1].content) is not None and "FAIL this one" in messages[-1].content:
        return "I would rather not say."
    return _cai(messages, params)


register_script("fails-on-fail", _fails_on_fail, _cai_choice)


def _callback(tmp_path: Path, **kw):  # noqa: ANN003, ANN202
    kw.setdefault("references", REFERENCES)
    kw.setdefault("every", 1)
    return charter.WinRateCallback(
        PROMPTS, "scripted:fails-on-fail", "harmless", max_new_tokens=4, mode="verdict", max_reasks=0,
        cache=tmp_path / "calls.sqlite", **kw,
    )  # fmt: skip


def _logged(trainer) -> list[dict]:  # noqa: ANN001
    return [e for e in trainer.state.log_history if "win_rate" in e]


def test_win_rate_is_logged_inside_a_dpo_trainer(tmp_path: Path) -> None:
    import copy

    import datasets
    from trl import DPOConfig, DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports them lazily

    from tests.support.tiny_models import preference_rows, tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in preference_rows(4)]
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=2, bf16=False,
                     report_to=[], logging_steps=1, save_strategy="no", max_length=64, use_cpu=True)  # fmt: skip
    callback = _callback(tmp_path)
    trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)  # fmt: skip
    callback.trainer = trainer
    trainer.add_callback(callback)
    seen: list[dict] = []
    trainer.add_callback(
        type("Reporter", (TrainerCallback,), {"on_log": lambda s, a, st, c, logs, **k: seen.append(logs)})
    )
    trainer.train()
    assert sum("win_rate" in logs for logs in seen) == 2  # the reporters (TensorBoard, W&B) see it too
    assert sum("loss" in logs for logs in seen) == 2  # and the trainer's own log of each step is not lost
    logged = _logged(trainer)
    assert [e["step"] for e in logged] == [1, 2]
    for entry in logged:
        # two prompts judged (the policy beats the harmful reference), the third's judgment failed: not a tie
        assert entry["win_rate"] == 1.0 and entry["win_rate_n"] == 2 and entry["win_rate_failures"] == 1
        assert 0 < entry["win_rate_low"] < 1.0 == entry["win_rate_high"]
    assert callback.history[0]["ties"] == 0 and callback.history[0]["failures"] == 1
    assert "length_controlled" in callback.history[0]
    calls = sum(t.calls for t in callback.meter.tallies.values())
    assert calls > 0


def test_win_rate_against_the_initial_policy_inside_a_grpo_trainer(tmp_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports them lazily

    from tests.support.tiny_models import tiny_llama

    folder = tiny_llama(tmp_path / "llama")
    callback = _callback(tmp_path, references=None)
    prompts = [{"prompt": [{"role": "user", "content": f"question {i}"}]} for i in range(4)]
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, report_to="none",
                      save_strategy="no", logging_steps=1, max_steps=1, num_generations=2,
                      per_device_train_batch_size=2, max_completion_length=4)  # fmt: skip
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(folder),
        reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions],
        args=args,
        train_dataset=datasets.Dataset.from_list(prompts),
        processing_class=AutoTokenizer.from_pretrained(folder),
        callbacks=[callback],
    )
    trainer.train()
    assert callback.references is not None and len(callback.references) == 3  # the policy's answers before training
    [entry] = _logged(trainer)
    assert entry["step"] == 1 and entry["win_rate_failures"] == 1 and entry["win_rate_n"] == 2
    assert entry["win_rate_low"] <= entry["win_rate"] <= entry["win_rate_high"]


def test_bad_arguments_are_charter_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="2 answers for 3 prompts"):
        _callback(tmp_path, references=REFERENCES[:2])
    with pytest.raises(ConfigError, match="at most one"):
        _callback(tmp_path, reference_model="scripted:cai")
    with pytest.raises(ArgumentError, match="every"):
        _callback(tmp_path, every=0)


def test_a_judge_or_mode_that_cannot_compare_is_refused_when_built(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match=r"^judge: scripted:nope: no such script \(known: "):
        charter.WinRateCallback(PROMPTS, judge="scripted:nope", references=REFERENCES)
    with pytest.raises(ArgumentError, match=r"^judge: model 'nope:x': unknown provider 'nope'"):
        charter.WinRateCallback(PROMPTS, judge="nope:x", references=REFERENCES)
    with pytest.raises(ArgumentError, match=r"^reference_model: scripted:nope: no such script"):
        charter.WinRateCallback(PROMPTS, judge="scripted:cai", reference_model="scripted:nope")
    with pytest.raises(ArgumentError, match=r"^mode: 'score': the win rate compares two answers, in logprobs, cot"):
        charter.WinRateCallback(PROMPTS, judge="scripted:cai", references=REFERENCES, mode="score")
    assert _callback(tmp_path).settings.mode == "verdict"


def test_reference_model_answers_once_and_a_running_event_loop_is_no_obstacle(tmp_path: Path) -> None:
    import asyncio
    from types import SimpleNamespace

    from tests.support.tiny_models import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    callback = _callback(tmp_path, references=None, reference_model="scripted:cai")

    async def in_a_notebook() -> dict[str, float]:  # a notebook's cells run inside an event loop
        state = SimpleNamespace(is_world_process_zero=True)
        callback.on_train_begin(None, state, None, model=model, processing_class=tokenizer)
        return callback.evaluate(model, tokenizer, 1)

    logs = asyncio.run(in_a_notebook())
    assert callback.references is not None and all(r.startswith(HARMFUL_OPENING) for r in callback.references)
    assert logs["win_rate"] == 1.0 and logs["win_rate_n"] == 2 and logs["win_rate_failures"] == 1
