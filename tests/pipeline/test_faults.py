"""Runs against a faulty world: `charter run` through the real openai SDK against the fault-injecting server.

Each fault alone, then all mixed: the run finishes in one invocation, no row comes from a failed or made-up
value, rows are the prompts minus the recorded failures, recorded usage is exactly what the server answered,
and Retry-After is honoured. Then kill -9 three times and resume.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.runs.counts import stage_states
from charter.runs.failures import stored_failures
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.faults import Faults, FaultServer, LogEntry
from charter.testing.loopback import status

N = 24
CALLS_PER_PROMPT = 1 + 2 + 2  # initial answer, critique, revision; one principle in both orders
RATE = 0.12
BASE = Faults(seed=7, retry_after_s=0.2, hang_s=1.5)
SINGLE = {name: BASE.only(name, RATE) for name in Faults.RATES}
POISONED = Faults(seed=7, retry_after_s=0.2, hang_s=1.5, poison="POISON")
MIXED = Faults(
    rate_limit=0.05,
    server_error=0.05,
    hang=0.01,
    drop=0.03,
    malformed=0.03,
    empty_choices=0.03,
    no_option_logprobs=0.05,
    poison="POISON",
    retry_after_s=0.2,
    hang_s=1.5,
    seed=11,
)


def write_config(tmp_path: Path, server: FaultServer, n: int = N, poison: bool = False, **extra) -> Path:
    model = f"openai-compatible:faulty@{server.openai_url}"
    limits = {"concurrency": 8, "max_retries": 8, "timeout_s": 0.6, "backoff_initial_s": 0.02, "backoff_max_s": 0.5}
    prompts = [f"Question {i}: how would someone do thing {i}?" for i in range(n)]
    if poison:
        prompts[3] = "Question 3 holds a POISON word the provider rejects"
    config = {
        "name": "faults",
        "output_dir": str(tmp_path / "run"),
        "cache": str(tmp_path / "cache.sqlite"),
        "prompts": {"inline": prompts},
        "report": False,
        "concurrency": 8,
        "policy": {"model": model, "limits": limits, "params": {"max_tokens": 32}},
        "judge": {"model": model, "limits": limits, "principles_per_pair": 1},
        "filters": {"drop_inconsistent": False},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows_of(run_dir: Path) -> list[dict]:
    path = run_dir / "data" / "preferences.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def recorded_calls(run_dir: Path) -> int:
    with RunStore(run_dir) as store:
        return sum(u.calls for u in stored_usage(store))


def failed_prompts(run_dir: Path) -> set[str]:
    with RunStore(run_dir) as store:
        failed = stored_failures(store, open_only=True)
        return {f.item_id.split(":")[0] for f in failed}


def check_no_made_up_rows(run_dir: Path, log: list[LogEntry]) -> list[dict]:
    """Every row's texts are texts the server really sent in a normal reply; no tie from a missing value."""
    rows = rows_of(run_dir)
    sent = {entry.text for entry in log if entry.text}
    for row in rows:
        for side in ("chosen", "rejected"):
            text = row[side][0]["content"]
            assert text.strip() and text in sent, (side, text[:80])
        assert row["p_chosen"] > 0.5 and json.loads(row["per_order"])["ab"] is not None
    assert len({r["pair_id"] for r in rows}) == len(rows)
    return rows


def check_retry_after(log: list[LogEntry], seconds: float) -> None:
    by_digest: dict[str, list[LogEntry]] = {}
    for entry in sorted(log, key=lambda e: e.at):
        by_digest.setdefault(entry.digest, []).append(entry)
    checked = 0
    for entries in by_digest.values():
        for before, after in zip(entries, entries[1:]):
            if before.kind == "rate_limit":
                assert after.at - before.at >= seconds * 0.95, "a retry came before Retry-After"
                checked += 1
    assert checked or not any(e.kind == "rate_limit" for e in log)


@pytest.mark.parametrize("name", [*Faults.RATES, "poison"])
def test_each_fault_alone(name: str, tmp_path: Path) -> None:
    faults = POISONED if name == "poison" else SINGLE[name]
    with FaultServer(faults) as server:
        config = write_config(tmp_path, server, poison=name == "poison")
        assert main(["run", str(config)]) == 0  # one invocation, whatever the faults
        log = list(server.log)
    run_dir = tmp_path / "run"
    rows = check_no_made_up_rows(run_dir, log)
    lost = failed_prompts(run_dir)
    assert len(rows) == N - len(lost)
    if name == "poison":
        assert len(lost) == 1 and all(e.kind == "poison" for e in log if e.status == 400)
    assert recorded_calls(run_dir) == sum(1 for e in log if e.answered)  # usage is what the server answered
    check_retry_after(log, BASE.retry_after_s)
    clean = N * CALLS_PER_PROMPT
    assert len(log) <= clean / (1 - RATE) * 1.35 + 10  # the retries the faults force, and no more


def test_every_fault_mixed(tmp_path: Path) -> None:
    with FaultServer(MIXED) as server:
        config = write_config(tmp_path, server, n=40, poison=True)
        assert main(["run", str(config)]) == 0
        log = list(server.log)
    run_dir = tmp_path / "run"
    rows = check_no_made_up_rows(run_dir, log)
    assert len(rows) == 40 - len(failed_prompts(run_dir)) and len(rows) >= 36
    assert recorded_calls(run_dir) == sum(1 for e in log if e.answered)
    check_retry_after(log, MIXED.retry_after_s)
    kinds = {e.kind for e in log}
    assert {"rate_limit", "server_error", "drop", "malformed", "empty_choices", "poison"} <= kinds


def test_a_failed_item_is_tried_again_then_quarantined(tmp_path: Path, capsys) -> None:
    with FaultServer(POISONED) as server:
        config = write_config(tmp_path, server, n=6, poison=True, quarantine_after=2)
        for _ in range(2):
            assert main(["run", str(config)]) == 0
        poisoned = sum(1 for e in server.log if e.kind == "poison")
        assert main(["run", str(config)]) == 0  # quarantined: not asked a third time
        assert sum(1 for e in server.log if e.kind == "poison") == poisoned
    from charter.pipeline.status.record import status

    failures = status(tmp_path / "run")["failures"]
    assert failures["total"] == 1 and failures["quarantined"] == 1
    assert failures["first"][0]["kind"] == "rejected" and failures["first"][0]["runs"] == 2


def test_failed_judgments_are_tried_again_by_the_next_run(tmp_path: Path) -> None:
    judge_limits = {"max_retries": 0, "timeout_s": 1}
    with FaultServer(BASE.only("no_option_logprobs", 1.0)) as server:
        model = f"openai-compatible:faulty@{server.openai_url}"
        config = write_config(
            tmp_path,
            server,
            n=6,
            max_failures=0.9,
            judge={"model": model, "limits": judge_limits, "principles_per_pair": 1},
        )
        assert main(["run", str(config)]) == 0
        assert rows_of(tmp_path / "run") == []  # every judgment failed: no row, and no 0.5 either
        with RunStore(tmp_path / "run") as store:
            assert {f.failure.kind for f in stored_failures(store)} == {"no_option_logprobs"}
        server.faults = Faults()  # the provider recovers
        assert main(["run", str(config)]) == 0
    rows = check_no_made_up_rows(tmp_path / "run", server.log)
    assert len(rows) == 6
    with RunStore(tmp_path / "run") as store:
        assert stored_failures(store, open_only=True) == []  # resolved,
        assert len(stored_failures(store)) == 6  # and remembered


def test_too_many_failures_ends_the_run_with_exit_3(tmp_path: Path, capsys) -> None:
    faults = BASE.only("server_error", 1.0)
    with FaultServer(faults) as server:
        config = write_config(
            tmp_path,
            server,
            n=30,
            max_failures=5,
            policy={
                "model": f"openai-compatible:faulty@{server.openai_url}",
                "limits": {"max_retries": 0, "timeout_s": 1},
            },
        )
        assert main(["run", str(config)]) == 3
        asked = len(server.log)
    err = capsys.readouterr().err
    assert "items failed, over max_failures 5" in err and "Traceback" not in err
    assert asked < 30  # it stopped starting new items once past the bar
    with RunStore(tmp_path / "run") as store:
        assert {s["status"] for s in stage_states(store).values()} == {"stopped: too many failures"}
        failures = stored_failures(store)
    assert len(failures) >= 6 and {f.failure.kind for f in failures} == {"server_error"}
    assert all("HTTP 50" in f.failure.message and f.failure.attempts == 1 for f in failures)
    assert (tmp_path / "run/data/preferences.parquet").exists()  # the (empty) dataset of what is done


def test_a_bad_key_stops_the_run_in_one_line(tmp_path: Path, capsys) -> None:
    with FaultServer(BASE) as server:
        server.script(*[status(401)] * 8)
        assert main(["run", str(write_config(tmp_path, server, n=8))]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "HTTP 401" in err and "Traceback" not in err
    assert "never retrieved" not in err


def _kill_loop_run(config: Path, server: FaultServer, kills: int) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(3)
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-m", "charter.cli", "run", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = len(server.log) + rng.randint(15, 40)
        deadline = time.time() + 60
        while len(server.log) < target and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_kill_9_three_times_then_resume(tmp_path: Path) -> None:
    with FaultServer(MIXED) as server:
        config = write_config(tmp_path, server, n=40)
        _kill_loop_run(config, server, kills=3)
        assert main(["run", str(config)]) == 0
        log = list(server.log)
    run_dir = tmp_path / "run"
    rows = check_no_made_up_rows(run_dir, log)
    assert len(rows) == 40 - len(failed_prompts(run_dir))
    answered, recorded = sum(1 for e in log if e.answered), recorded_calls(run_dir)
    # usage lands call by call before the answer is cached: a kill loses at most the answers in flight
    assert recorded <= answered <= recorded + 3 * 8 * 2


def test_the_budget_holds_across_kills(tmp_path: Path, capsys) -> None:
    """Three processes killed before the cap, then a resume: the provider bills the cap and one window more,
    not the cap again in every process (the kills lose no recorded usage)."""
    cap = 40_000
    with FaultServer(Faults(seed=5)) as server:
        config = write_config(tmp_path, server, n=60, budget={"max_tokens": cap})
        _kill_loop_run(config, server, kills=3)
        code = main(["run", str(config)])
        billed = sum(e.tokens for e in server.log if e.answered)
        largest = max(e.tokens for e in server.log)
    with RunStore(tmp_path / "run") as store:
        recorded = sum(u.prompt_tokens + u.completion_tokens for u in stored_usage(store))
        stages = {s["status"] for s in stage_states(store).values()}
    assert code == 4 and stages == {"stopped: budget"}
    window = 8 * 2  # prompts in flight, each with at most two calls at once (a judgment's two orders)
    assert recorded <= billed <= cap + 4 * window * largest  # the last window, and what each kill cut short
    assert billed < 1.6 * cap
