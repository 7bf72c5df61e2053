"""End-to-end runs with the scripted provider: outputs, resume after kill -9 and after an exception."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charter.cli import main
from charter.pipeline.api import run
from charter.pipeline.status.record import status
from charter.runs.items import stored_judgments
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage


def store_counts(run_dir: Path) -> dict[str, int]:
    with RunStore(run_dir) as store:
        return {t: store.count(t) for t in ("prompts", "chains", "pairs", "judgments")}


def test_run_produces_trl_preference_dataset(make_config, tmp_path):
    result = run(make_config())
    rows = [json.loads(line) for line in (tmp_path / "run/data/preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and result.counts["preferences"] == 6
    row = rows[0]
    assert row["prompt"][0]["role"] == "user"
    assert row["chosen"][0]["role"] == "assistant" and row["rejected"][0]["role"] == "assistant"
    # the scripted judge prefers the refusal-style revision over the harmful initial answer
    assert all(r["chosen_source"] == "revision" for r in rows)
    assert all(0.5 < r["p_chosen"] <= 1 and abs(r["margin"] - (2 * r["p_chosen"] - 1)) < 1e-9 for r in rows)
    assert all(len(r["principle_ids"]) == 2 and r["synthetic"] for r in rows)
    per_order = json.loads(row["per_order"])
    assert per_order["ab"] != per_order["ba"]  # the scripted judge has a position bias; both orders are kept
    for column in (
        "constitution_name",
        "constitution_hash",
        "policy_model",
        "critic_model",
        "judge_model",
        "run_id",
        "created_at",
        "position_consistent",
        "per_principle",
    ):
        assert row[column] is not None
    sft = [json.loads(line) for line in (tmp_path / "run/data/sft.jsonl").read_text().splitlines()]
    assert len(sft) == 6 and sft[0]["messages"][-1]["role"] == "assistant"


def test_dataset_loads_with_datasets_and_dpo_trainer_accepts_it(make_config, tmp_path):
    datasets = pytest.importorskip("datasets")
    run(make_config())
    data = datasets.load_dataset("parquet", data_files=str(tmp_path / "run/data/preferences.parquet"), split="train")
    assert set(["prompt", "chosen", "rejected"]) <= set(data.column_names)
    from trl import DPOConfig, DPOTrainer

    from tests.support.tiny_models import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=2,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        max_length=128,
    )
    import copy

    trainer = DPOTrainer(
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=data, processing_class=tokenizer
    )
    trainer.train()
    assert trainer.state.global_step == 1


def test_rerun_of_finished_run_makes_no_model_calls(make_config, tmp_path):
    config = make_config()
    run(config)
    with RunStore(tmp_path / "run") as store:
        calls_before = sum(u.calls for u in stored_usage(store))
    written = (tmp_path / "run/data/preferences.parquet").stat().st_mtime_ns
    run(config)
    # nothing changed in the store or the settings: the dataset files are already what a rebuild would write
    assert (tmp_path / "run/data/preferences.parquet").stat().st_mtime_ns == written
    with RunStore(tmp_path / "run") as store:
        assert sum(u.calls for u in stored_usage(store)) == calls_before
    assert store_counts(tmp_path / "run") == {"prompts": 6, "chains": 6, "pairs": 6, "judgments": 6}


def test_kill_9_mid_stage_then_resume(make_config, tmp_path):
    n = 30
    config = make_config(
        prompts={"inline": [f"Prompt {i}: how to do thing {i}?" for i in range(n)]},
        policy={"model": "scripted:cai", "options": {"latency_s": 0.05}},
        judge={"model": "scripted:cai", "options": {"latency_s": 0.05}},
        concurrency=3,
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter.cli", "run", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run_dir, deadline = tmp_path / "run", time.time() + 60
    while time.time() < deadline:
        if (run_dir / "run.sqlite").exists() and store_counts(run_dir)["judgments"] >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = store_counts(run_dir)
    assert 0 < partial["judgments"] < n, partial  # killed mid-stage
    cache = sqlite3.connect(tmp_path / "cache.sqlite")
    calls_made_before = cache.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    cache.close()
    with RunStore(run_dir) as store:
        usage_before = sum(u.calls for u in stored_usage(store))
    # usage is durable call by call, and always lands before the cached answer: a kill can only lose the
    # answers of the turn it interrupted (counted, not cached: they are asked, and paid, again)
    assert calls_made_before <= usage_before <= calls_made_before + 6

    assert main(["run", str(config)]) == 0
    final = store_counts(run_dir)
    assert final == {"prompts": n, "chains": n, "pairs": n, "judgments": n}  # nothing lost or duplicated
    with RunStore(run_dir) as store:
        resumed_calls = sum(u.calls for u in stored_usage(store)) - usage_before
        ids = [j.pair_id for j in stored_judgments(store, store.fingerprints().judge)]
    assert len(ids) == len(set(ids))
    per_prompt = 3 + 2  # initial, critique, revision; one principle in both orders
    # finished work was not asked again: the resumed run made exactly the calls whose answers were not cached (an item
    # lands in the store only after the usage and cache rows of its calls, so every stored item's answers are cached)
    assert resumed_calls == n * per_prompt - calls_made_before


def test_budget_stops_cleanly_and_resumes(make_config, tmp_path, capsys):
    config = make_config(budget={"max_tokens": 3000}, concurrency=1)
    assert main(["run", str(config)]) == 4
    assert "budget reached" in capsys.readouterr().err
    partial = store_counts(tmp_path / "run")
    assert 0 < partial["chains"] < 6
    data = status(tmp_path / "run")
    assert {s["status"] for s in data["stages"]} == {"stopped: budget"}
    assert (tmp_path / "run/data/preferences.parquet").exists()  # the partial dataset, for what is done
    assert main(["run", str(config), "--set", "budget.max_tokens=1000000"]) == 0
    assert store_counts(tmp_path / "run")["judgments"] == 6


def test_overrides_and_dry_run(make_config, capsys):
    config = make_config()
    assert main(["run", str(config), "--dry-run", "--set", "prompts.limit=2"]) == 0
    assert "2 prompts" in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"stages": ["critique", "jugde"]}, "stages[1]"),
        ({"policy": "nosuch:model"}, "unknown provider 'nosuch'"),
        ({"constitution": "no-such-constitution"}, "no such file or bundled constitution"),
        ({"critique": {"principles": ["not-a-principle"]}}, "unknown principle id 'not-a-principle'"),
        ({"judge": {"model": "scripted:cai", "mode": "vibes"}}, "judge.mode"),
        (
            {"policy": {"model": "scripted:cai", "options": {"batchsize": 16}}},
            "policy.options.batchsize: model option 'batchsize' is not known to the scripted provider "
            "(accepted: latency_s, batch_size)",
        ),
        (
            {"judge": {"model": "openai:gpt-4o-mini", "options": {"batch_size": 16}}},
            "judge.options.batch_size: model option 'batch_size' is not known to the openai provider",
        ),
        (
            {"judge": {"model": "local:smollm2-135m-instruct", "options": {"dtype": "float77"}}},
            "judge.options.dtype: unknown dtype 'float77' (accepted: auto, float32",
        ),
        ({"stages": ["critique", "judge", "dpo"]}, "stages[2]: 'dpo' is listed but the run config has no 'dpo:'"),
    ],
)
def test_bad_config_is_one_line_before_any_call(make_config, tmp_path, capsys, overrides, expected):
    code = main(["run", str(make_config(**overrides))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "cache.sqlite").exists()  # no model call was made


def test_a_batching_scripted_model_gives_the_same_dataset(make_config, tmp_path):
    plain = run(make_config())
    rows = (tmp_path / "run/data/preferences.jsonl").read_text()
    batched = run(
        make_config(
            output_dir=str(tmp_path / "batched"),
            cache=None,
            policy={"model": "scripted:cai", "options": {"batch_size": 16}},
            judge={"model": "scripted:cai", "principles_per_pair": 2, "options": {"batch_size": 16}},
        )
    )
    assert batched.counts["preferences"] == plain.counts["preferences"] == 6

    def content(text: str) -> list:
        return sorted(
            (r["pair_id"], r["p_chosen"], r["chosen"][0]["content"]) for r in map(json.loads, text.splitlines())
        )

    assert content((tmp_path / "batched/data/preferences.jsonl").read_text()) == content(rows)


def test_malformed_prompt_file_names_the_line(make_config, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": broken\n')
    assert main(["run", str(make_config(prompts={"path": str(prompts)}))]) == 2
    assert f"{prompts}:2:" in capsys.readouterr().err


def test_empty_and_too_long_prompts_are_counted(make_config, tmp_path):
    long = "word " * 400
    result = run(
        make_config(
            prompts={"inline": ["ok one", "", "   ", long, "ok two"], "max_prompt_tokens": 50, "too_long": "skip"}
        )
    )
    counts = result.counts
    assert counts["prompts_empty"] == 2 and counts["prompts_skipped_too_long"] == 1
    assert store_counts(tmp_path / "run")["prompts"] == 2


def test_changed_constitution_refuses_to_resume(make_config, tmp_path, capsys):
    run(make_config())
    assert main(["run", str(make_config(constitution="helpful-honest"))]) == 2
    assert "constitution changed" in capsys.readouterr().err


def test_an_item_never_lands_before_the_usage_and_cache_rows_of_its_calls(make_config, tmp_path, monkeypatch):
    """A kill -9 just after an item's commit must not leave the item durable while the call that finished it is
    neither in the run's usage nor in the cache (a paid call uncounted: usage and budget one short, and the
    resumed run one call short of `cached answers + calls made`). Each commit is checked as a kill would see it."""
    import functools

    import charter.pipeline.work as work_module
    import charter.runs.items as writer_module
    from charter.runs.items import BufferedWriter

    scripted = {"model": "scripted:cai", "options": {"latency_s": 0.001}}  # each call a loop turn of its own
    config = make_config(policy=scripted, judge={**scripted, "principles_per_pair": 2}, concurrency=1)
    # 6 prompts; 1 round: 3 calls a chain; 2 principles in both orders: 4 calls a judgment
    monkeypatch.setattr(work_module, "BufferedWriter", functools.partial(BufferedWriter, max_rows=1))  # commit each
    seen: list[tuple[int, int, int]] = []

    def spy(original):
        def put(store, records):
            original(store, records)
            with sqlite3.connect(tmp_path / "run/run.sqlite") as db:  # what another process (a resume) would see
                chains, judgments = (
                    db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("chains", "judgments")
                )
                usage = db.execute("SELECT COALESCE(SUM(calls), 0) FROM usage_events").fetchone()[0]
            with sqlite3.connect(tmp_path / "cache.sqlite") as db:
                cached = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            seen.append((3 * chains + 4 * judgments, usage, cached))

        return put

    monkeypatch.setattr(writer_module, "put_chains", spy(writer_module.put_chains))
    monkeypatch.setattr(writer_module, "put_judgments", spy(writer_module.put_judgments))
    assert main(["run", str(config)]) == 0
    assert len(seen) == 12
    short = [(behind, usage, cached) for behind, usage, cached in seen if usage < behind or cached < behind]
    assert not short, f"(calls behind the stored items, usage calls, cache rows) at a commit: {short}"


def test_a_run_loads_its_dataset_build_modules_while_its_calls_go_on(make_config, monkeypatch):
    """Once, with the first texts its calls make and before the dataset is written, a run starts loading what writing
    and measuring the dataset will import; the dataset it writes is the same."""
    import importlib.util

    import charter.pipeline.run as run_module

    events: list[str] = []
    warm, build = run_module.warm_build_modules, run_module.Runner._build

    def warming():
        events.append("warm")
        thread = warm()
        thread.join()
        return thread

    def building(self, *args, **kwargs):
        events.append("build")
        return build(self, *args, **kwargs)

    monkeypatch.setattr(run_module, "warm_build_modules", warming)
    monkeypatch.setattr(run_module.Runner, "_build", building)
    result = run(make_config())
    assert events == ["warm", "build"]
    assert result.counts["preferences"] == 6
    assert all(name in sys.modules for name in run_module.BUILD_MODULES if importlib.util.find_spec(name))
