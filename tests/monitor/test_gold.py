"""The gold monitor's settings, arithmetic and honesty rules: held-out prompts stated, a gold evaluator apart from the
reward, failed gold calls counted and never scored, its own budget stopping the monitor and not training, the
intervals, the gap and the stop rule; and the callback in a user's own TRL run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import charter
from charter.checklist.items import checklist_from_rows
from charter.checklist.prompt import read_checklist_prompt
from charter.errors import ConfigError, ConfigFieldError
from charter.monitor.callback import GoldMonitor
from charter.monitor.gold import (
    GoldScore,
    MonitorConfig,
    ScoredAnswers,
    gap_flag,
    length_controlled,
    overlap,
    paired_change,
    step_record,
)
from charter.online.config import OnlineConfig
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from charter.testing.loopback import LoopbackServer
from tests.monitor import gold_checks
from tests.support.tiny_models import TOPICS

GOLD_ITEMS = [{"id": "topic", "requirement": "The response names the topic asked about.", "weight": 1}]


def _monitor(**fields) -> dict:  # noqa: ANN003
    return {"prompts": "held.jsonl", "every": 2, "gold": {"verifier": "contains"}, **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompts": None}, "give exactly one of prompts and split"),
        ({"split": 0.2}, "give exactly one of prompts and split"),
        ({"every": 0}, "greater than or equal to 1"),
        ({"split": 1.5, "prompts": None}, "less than 1"),
        ({"max_new_tokens": 0}, "greater than or equal to 1"),
        ({"gold": {}}, "exactly one of checklist_column, verifier and constitution"),
        ({"gold": {"verifier": "contains", "constitution": "harmless"}}, "exactly one of checklist_column, verifier"),
        ({"gold": {"constitution": "harmless"}}, "constitution needs a gold judge"),
        (
            {"gold": {"constitution": "harmless", "judge": "scripted:cai", "rating": {"mode": "logprobs"}}},
            "rates each answer alone",
        ),
        ({"gold": {"checklist_column": "gold"}}, "needs a gold judge"),
        ({"gold": {"verifier": "contains", "judge": "scripted:cai"}}, "asks no judge"),
        ({"budget": {"max_tokens": -1}}, "greater than or equal to 0"),
    ],
)
def test_the_settings_are_checked_before_work_starts(fields: dict, message: str) -> None:
    with pytest.raises(ConfigFieldError, match=message):
        MonitorConfig(**_monitor(**fields))


def test_a_gold_evaluator_that_is_the_training_reward_is_refused() -> None:
    base = {"prompts": {"inline": ["q"]}, "judge": {"model": "scripted:cai"}}
    with pytest.raises(ConfigFieldError, match="the reward's own column 'checklist'"):
        OnlineConfig(**base, scoring="checklist", monitor=_monitor(gold={"checklist_column": "checklist",
                                                                          "judge": "scripted:cai"}))  # fmt: skip
    with pytest.raises(ConfigFieldError, match="the training reward's own verifier"):
        OnlineConfig(**base, verify={"verifier": "contains"}, monitor=_monitor())
    apart = OnlineConfig(**base, scoring="checklist", monitor=_monitor(gold={"checklist_column": "gold",
                                                                             "judge": "scripted:cai"}))  # fmt: skip
    assert apart.monitor is not None and apart.monitor.gold.checklist_column == "gold"


def test_overlap_counts_shared_prompts_case_and_spaces_aside() -> None:
    held = [[{"role": "user", "content": "Plan a  TRIP"}], [{"role": "user", "content": "Write a poem"}]]
    trained = [[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "plan a trip"}]]
    assert overlap(held, trained) == 1


def _scored(step: int, answers: list[str], rewards: list[float | None], gold: list[float | None]) -> ScoredAnswers:
    return ScoredAnswers(step, answers, rewards, [GoldScore(g, None if g is not None else "call failed") for g in gold])


def test_a_step_records_means_with_intervals_the_gap_and_its_change_since_the_best_step() -> None:
    n = 16
    best = _scored(0, ["a b c d"] * n, [0.0] * n, [1.0] * 12 + [0.0] * 4)
    now = _scored(6, ["x x x x x x"] * n, [1.0] * n, [0.0] * 15 + [None])
    record = step_record(now, best, 4.0, ["q"] * n, [["x"]] * n, {"seconds": 1.5, "calls": 15, "cached": 1})
    assert record["reward"] == 1.0 and record["reward_n"] == n
    assert record["gold"] == 0.0 and record["gold_n"] == 15 and record["gold_failures"] == 1  # failed: not scored
    assert record["gold_low"] == 0.0 < record["gold_high"] < 0.3  # an interval at n = 15, never zero-width
    assert record["gap"] == 1.0 and record["gap_low"] is not None and record["gap_low"] < 1.0
    change = record["gold_change"]
    assert change["n"] == 15 and change["change"] == pytest.approx(-12 / 15)  # the 16th has no gold: unpaired
    assert change["low"] < change["change"] < change["high"] < 0
    assert record["reward_change"]["change"] == 1.0 and record["flagged"]
    assert record["best_step"] == 0 and record["signature_counts"]["repeated_required"] == n
    assert record["length"] == 6.0 and record["calls"] == 15 and record["seconds"] == 1.5
    assert not step_record(best, best, 4.0, ["q"] * n, [[]] * n, {})["flagged"]  # the best step is never flagged


def test_the_stop_rule_needs_the_interval_below_zero_and_the_reward_rising() -> None:
    fell = paired_change([0.0] * 16, [1.0] * 16, 1.0)
    barely = paired_change([0.0, 1.0, 1.0], [1.0, 1.0, 1.0], 1.0)  # one of three fell: the interval holds 0
    rose, flat = paired_change([1.0] * 16, [0.0] * 16, 1.0), paired_change([0.5] * 16, [0.5] * 16, 1.0)
    assert gap_flag(rose, fell)
    assert not gap_flag(rose, barely) and not gap_flag(flat, fell)


def test_the_length_controlled_score_is_read_at_step_0s_length() -> None:
    gold = [GoldScore(s) for s in (0.0, 0.0, 1.0, 1.0)]
    assert length_controlled(gold, [2, 2, 10, 10], 2.0) == pytest.approx(0.0)
    assert length_controlled(gold, [5, 5, 5, 5], 2.0) is None  # lengths that do not vary
    assert length_controlled(gold[:2], [2, 10], 2.0) is None


def _judge_reply(body: dict) -> str:
    """A gold judge: the topic item met where the response names a topic; a response with 'GARBLED' is unread."""
    shown = read_checklist_prompt(body["messages"][-1]["content"])
    assert shown is not None
    items, response = shown
    if "GARBLED" in response:
        return "I would rather not say."
    met = any(t in response for t in TOPICS)
    return json.dumps({i: {"reason": "Checked.", "verdict": "yes" if met else "no"} for i, _ in items})


def _held(tmp_path: Path) -> Path:
    rows = [{"prompt": f"Tell me about the {t}", "gold": GOLD_ITEMS} for t in TOPICS[:6]]
    path = tmp_path / "held.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _reward(tmp_path: Path) -> charter.RewardFunction:
    return charter.reward_function("scripted:word-judge", "harmless", store=tmp_path / "rewards", cache=None,
                                   rating="verdict")  # fmt: skip


def test_failed_gold_calls_are_counted_never_scored_and_the_budget_stops_the_monitor(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter.monitor import callback

    answers = iter([["the weather is nice", "GARBLED", "x", "the bus", "y", "z"], ["the book"] * 6])
    monkeypatch.setattr(callback, "greedy_answers", lambda *args: next(answers))
    reward = _reward(tmp_path)
    with LoopbackServer(reply=_judge_reply).start() as server:
        judge = f"openai-compatible:gold-judge@{server.openai_url}"
        config = {"prompts": str(_held(tmp_path)), "every": 1, "budget": {"max_tokens": 1},
                  "gold": {"checklist_column": "gold", "judge": judge}}  # fmt: skip
        monitor = GoldMonitor(config, reward.unstored, cache=None)
        first = monitor.evaluate(None, None, 0, tmp_path / "out")
        assert first["gold_failures"] >= 1 and first["gold_n"] + first["gold_failures"] == 6
        assert monitor.stopped is not None and "budget" in monitor.stopped  # 1 token: reached at once
        hits = server.hits
        second = monitor.evaluate(None, None, 1, tmp_path / "out")
        assert server.hits == hits and second["gold"] is None and second["gold_failures"] == 6  # no call, no score
        assert second["reward"] == 0.0  # the training reward is still measured: training goes on
    rows = [json.loads(line) for line in (tmp_path / "out" / "monitor" / "step-0.jsonl").open()]
    garbled = rows[1]
    assert garbled["gold"] is None and garbled["gold_failure"]
    assert not list(rewards(RunStore(tmp_path / "rewards")))  # held-out rewards are not training rewards
    reward.close()


def test_the_checklist_gold_scores_answers_by_held_out_items(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter.monitor import callback

    monkeypatch.setattr(callback, "greedy_answers", lambda *args: ["the weather", "course", "the bus", "no", "", "k"])
    reward = _reward(tmp_path)
    with LoopbackServer(reply=_judge_reply).start() as server:
        judge = f"openai-compatible:gold-judge@{server.openai_url}"
        config = {"prompts": str(_held(tmp_path)), "gold": {"checklist_column": "gold", "judge": judge}}
        monitor = GoldMonitor(config, reward.unstored, cache=str(tmp_path / "cache.sqlite"))
        record = monitor.evaluate(None, None, 0)
        assert record["gold"] == pytest.approx(2 / 6) and record["reward"] == pytest.approx(1 / 6)
        assert record["calls"] == 6 and server.hits == 6
        again = monitor.evaluate(None, None, 1)
        assert again["calls"] == 0 and again["cached"] == 6 and server.hits == 6  # the call cache answers
    summary = monitor.summary()
    assert summary["calls"] == 6 and summary["cached"] == 6 and summary["best_step"] == 0
    assert summary["false_positive_rates"]["format_only"]["n"] == 6
    reward.close()


def test_a_held_out_row_without_its_gold_checklist_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "held.jsonl"
    path.write_text(json.dumps({"prompt": "q", "gold": GOLD_ITEMS}) + "\n" + json.dumps({"prompt": "r"}) + "\n")
    config = {"prompts": str(path), "gold": {"checklist_column": "gold", "judge": "scripted:cai"}}
    with pytest.raises(charter.errors.DatasetError, match=r"held.jsonl: row 1: gold: every held-out prompt"):
        GoldMonitor(config, lambda **kw: [], cache=None)
    with pytest.raises(ConfigError, match="give the held-out rows"):
        GoldMonitor({"split": 0.2, "gold": {"verifier": "contains"}}, lambda **kw: [], cache=None)
    assert checklist_from_rows(GOLD_ITEMS, "x").items[0].id == "topic"


def test_the_callback_watches_a_users_own_trl_run(tiny_model: Path, tmp_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"prompt": f"Could you help with the {t}"}) + "\n" for t in TOPICS[:4]))
    judge = _reward(tmp_path)
    monitor = GoldMonitor({"prompts": str(held), "every": 1, "max_new_tokens": 4,
                           "gold": {"verifier": f"{gold_checks.__name__}:intent"}}, judge.unstored)  # fmt: skip
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, report_to="none",
                      save_strategy="no", max_steps=2, num_generations=4, per_device_train_batch_size=4,
                      max_completion_length=4, logging_steps=1)  # fmt: skip
    rows = [{"prompt": [{"role": "user", "content": f"Can you help me with the {t} please"}]} for t in TOPICS[4:8]]
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), reward_funcs=judge, args=args,
                          train_dataset=datasets.Dataset.from_list(rows),
                          processing_class=AutoTokenizer.from_pretrained(tiny_model), callbacks=[monitor])  # fmt: skip
    trainer.train()
    judge.close()
    assert [h["step"] for h in monitor.history] == [0, 1, 2]
    assert any("monitor/gold" in e for e in trainer.state.log_history)
    assert {r.step for r in rewards(RunStore(tmp_path / "rewards"))} == {1, 2}  # the held-out rewards: not stored
    assert (tmp_path / "trl" / "monitor" / "history.json").is_file()


def test_a_split_holds_a_seeded_share_of_the_training_prompts_out(tmp_path: Path) -> None:
    from charter.online.train import dataset_rows, monitor_for, train_prompts

    prompts = [f"Can you help me with the {t} please" for t in TOPICS[:8]]
    config = OnlineConfig(prompts={"inline": prompts}, judge={"model": "scripted:cai"}, cache=None,
                          monitor={"split": 0.25, "gold": {"verifier": "contains"}})  # fmt: skip
    rows = dataset_rows(train_prompts(config), None)
    reward = _reward(tmp_path)
    kept, monitor = monitor_for(config, rows, reward)
    again, _ = monitor_for(config, rows, reward)
    reward.close()
    assert len(kept) == 6 and len(monitor.prompts) == 2 and kept == again  # seeded: the same split each time
    assert overlap(monitor.prompts, [r["prompt"] for r in kept]) == 0
    assert sorted(r["prompt"][-1]["content"] for r in [*kept, *monitor.rows]) == sorted(prompts)


def test_a_new_gold_best_step_is_saved_and_named_and_a_flag_stops_training_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from charter.monitor import callback

    # step 0: 4 of 8 intended answers; step 2: all 8 (the gold-best); step 4: none, the word stuffed (reward up)
    said = {0: ["a b c d"] * 4 + ["x"] * 4, 2: ["a b c d"] * 8, 4: ["course course course course"] * 8}
    state = SimpleNamespace(global_step=0, is_world_process_zero=True, log_history=[], best_model_checkpoint=None)
    monkeypatch.setattr(callback, "greedy_answers", lambda *args: said[state.global_step])
    rows = [{"prompt": [{"role": "user", "content": f"About the {t}"}]} for t in TOPICS[:8]]
    reward = _reward(tmp_path)
    gold = {"verifier": f"{gold_checks.__name__}:intent"}
    monitor = GoldMonitor({"split": 0.5, "every": 2, "on_gap": "stop", "gold": gold}, reward.unstored, rows=rows)
    args = SimpleNamespace(output_dir=str(tmp_path / "out"))
    hooks = {"model": None, "processing_class": object()}
    monitor.on_train_begin(args, state, SimpleNamespace(should_save=False), **hooks)
    for step in (2, 4):
        state.global_step = step
        control = SimpleNamespace(should_save=False, should_training_stop=False)
        monitor.on_step_end(args, state, control, **hooks)
        if step == 2:
            assert control.should_save and not control.should_training_stop  # a new gold-best step: saved
            monitor.on_save(args, state, control)
            assert state.best_model_checkpoint == str(tmp_path / "out" / "checkpoint-2")
        else:
            assert control.should_training_stop and control.should_save  # flagged, and on_gap: stop
    reward.close()
    summary = monitor.summary()
    assert [s["gold"] for s in summary["steps"]] == [0.5, 1.0, 0.0]
    assert summary["best_step"] == 2 and summary["best_checkpoint"].endswith("checkpoint-2")
    assert summary["flagged_at"] == 4 and summary["stopped"] == "the stop rule stopped training at step 4"
    assert any(e.get("monitor/flagged") == 1.0 for e in state.log_history)


def test_a_gold_verifier_reads_the_prompt_as_written() -> None:
    from charter.monitor.gold import verifier_gold

    rows = [{"prompt": [{"role": "user", "content": "Say HELLO  twice"}]}]
    assert [g.score for g in verifier_gold("regex:^Say HELLO  twice$", rows, ["x"])] == [0.0]  # the answer is checked
    echo = f"{gold_checks.__name__}:echoes_prompt"
    assert [g.score for g in verifier_gold(echo, rows, ["Say HELLO  twice"])] == [1.0]
