"""`charter run` in batch mode: the same dataset as synchronous calls at half the recorded cost, one batch round
per step, and a kill or Ctrl-C between submitting and collecting loses nothing and submits nothing twice."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.runs.batches import stored_batches
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing import loopback
from charter.testing.faults import FaultServer


class PrefersLonger:
    """The judge prefers the longer of the two fenced responses in either order (the fault server's rule)."""

    logprobs_for = FaultServer.logprobs_for


class LoopbackServer(PrefersLonger, loopback.LoopbackServer):
    pass


class BatchServer(PrefersLonger, loopback.BatchServer):
    pass


N = 16
MODEL = "openai:gpt-4o-mini"
#: Row fields that name the run rather than describe the row; the fingerprints name the endpoint too, and the two runs
#: ask two servers (the synchronous loopback and the batch server), each standing in for OpenAI's API.
RUN_FIELDS = {"run_id", "created_at", "judge_fingerprint", "settings_fingerprint"}
ENDPOINT = re.compile(r"@http://127\.0\.0\.1:\d+/v1")


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-batch-run-test")


def write_config(tmp_path: Path, name: str, batch: bool) -> Path:
    config = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "cache": str(tmp_path / f"{name}-cache.sqlite"),
        "prompts": {"inline": [f"Question {i}: how would someone do thing {i}?" for i in range(N)]},
        "report": True,
        "concurrency": 4,
        # the servers here are not OpenAI's API: the key variable is named, as for a proxy
        "policy": {"model": MODEL, "params": {"max_tokens": 32}, "api_key_env": "OPENAI_API_KEY"},
        "judge": {"model": MODEL, "principles_per_pair": 2, "api_key_env": "OPENAI_API_KEY"},
        "filters": {"drop_inconsistent": False},
        "prices": {MODEL: {"input": 0.15, "output": 0.60}},
        "batch": {"enabled": batch, "poll_s": 0.05, "gather_s": 0.2},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "data" / "preferences.jsonl").read_text().splitlines()
    found = [
        {
            k: ENDPOINT.sub("@SERVER", v) if isinstance(v, str) else v
            for k, v in json.loads(line).items()
            if k not in RUN_FIELDS
        }
        for line in lines
    ]
    assert all(r["policy_model"] == "openai:gpt-4o-mini@SERVER" for r in found)  # each server named in its rows
    return sorted(found, key=lambda r: r["pair_id"])


def cost(run_dir: Path) -> tuple[float, int]:
    with RunStore(run_dir) as store:
        usage = stored_usage(store)
    return sum(u.cost_usd for u in usage), sum(u.prompt_tokens + u.completion_tokens for u in usage)


def sync_run(tmp_path: Path, monkeypatch) -> Path:
    with LoopbackServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        assert main(["run", str(write_config(tmp_path, "sync", batch=False))]) == 0
    return tmp_path / "sync"


def test_batch_run_matches_the_synchronous_run_at_half_the_cost(tmp_path, monkeypatch):
    sync = sync_run(tmp_path, monkeypatch)
    with BatchServer(complete_after_s=0.1) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        assert main(["run", str(write_config(tmp_path, "batch", batch=True))]) == 0
    batch = tmp_path / "batch"
    assert rows(batch) == rows(sync) and len(rows(batch)) == N
    # initial answers, critiques, revisions, judgments (2 principles x 2 orders): one batch round each
    assert [b["requests"] for b in server.batches_created] == [N, N, N, 4 * N]
    (sync_cost, sync_tokens), (batch_cost, batch_tokens) = cost(sync), cost(batch)
    assert batch_tokens == sync_tokens and batch_cost == pytest.approx(sync_cost / 2)
    assert main(["batches", "list", str(batch)]) == 0
    with RunStore(batch) as store:
        assert [b["state"] for b in stored_batches(store)] == ["completed"] * 4
        assert not stored_batches(store, open_only=True)


def _start_run(config: Path, server: BatchServer, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_BASE_URL": server.openai_url}
    # a shell runs background jobs with SIGINT ignored, and a child inherits that: give it Python's default back
    return subprocess.Popen(
        [sys.executable, "-m", "charter.cli", "run", str(config)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_journal(run_dir: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (run_dir / "run.sqlite").exists():
            with RunStore(run_dir) as store:
                if stored_batches(store):
                    return
        time.sleep(0.05)
    raise AssertionError("no batch was journaled")


def test_kill_between_submit_and_collect_resumes_without_submitting_again(tmp_path, monkeypatch):
    sync = sync_run(tmp_path, monkeypatch)
    with BatchServer(hold=True) as server:
        config = write_config(tmp_path, "batch", batch=True)
        process = _start_run(config, server, tmp_path)
        _wait_for_journal(tmp_path / "batch", process)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        assert len(server.batches_created) == 1
        server.hold = False
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        assert main(["run", str(config)]) == 0
    assert rows(tmp_path / "batch") == rows(sync)
    assert [b["requests"] for b in server.batches_created] == [N, N, N, 4 * N]  # the first one was not sent again
    assert cost(tmp_path / "batch")[0] == pytest.approx(cost(sync)[0] / 2)


def test_ctrl_c_leaves_the_batch_running_and_cancel_cancels_it(tmp_path, monkeypatch, capsys):
    with BatchServer(hold=True) as server:
        config = write_config(tmp_path, "batch", batch=True)
        process = _start_run(config, server, tmp_path)
        _wait_for_journal(tmp_path / "batch", process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130
        assert "1 provider batch still running" in stderr and "charter batches cancel" in stderr
        assert main(["status", str(tmp_path / "batch")]) == 0
        assert "Provider batches: 1 submitted, 1 still running" in " ".join(capsys.readouterr().out.split())
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        assert main(["batches", "cancel", str(tmp_path / "batch")]) == 0
        assert server.cancelled == [server.batches_created[0]["id"]]
        server.hold = False
        assert main(["run", str(config)]) == 0  # the cancelled requests go out again in a new batch
    assert len(rows(tmp_path / "batch")) == N
    assert [b["requests"] for b in server.batches_created] == [N, N, N, N, 4 * N]


def test_a_panel_of_judges_goes_out_as_one_batch_per_member(tmp_path, monkeypatch):
    members = [MODEL, "openai:gpt-4.1-nano"]

    def panel(name: str, batch: bool) -> Path:
        path = write_config(tmp_path, name, batch)
        config = yaml.safe_load(path.read_text())
        config["judge"] = {
            "models": [{"model": m, "api_key_env": "OPENAI_API_KEY"} for m in members],
            "principles_per_pair": 2,
        }
        config["prices"][members[1]] = {"input": 0.10, "output": 0.40}
        path.write_text(yaml.safe_dump(config))
        return path

    with LoopbackServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        assert main(["run", str(panel("sync", batch=False))]) == 0
    with BatchServer(complete_after_s=0.1) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        assert main(["run", str(panel("batch", batch=True))]) == 0
    sync, batch = tmp_path / "sync", tmp_path / "batch"
    assert rows(batch) == rows(sync) and len(rows(batch)) == N
    # initial answers, critiques, revisions; then each member's judgments (2 principles x 2 orders) in its own batch
    assert [b["requests"] for b in server.batches_created] == [N, N, N, 4 * N, 4 * N]
    with RunStore(batch) as store:
        judges = {u.model.split("@")[0] for u in stored_usage(store) if u.role == "judge"}
    assert judges == set(members)
    assert cost(batch)[0] == pytest.approx(cost(sync)[0] / 2)
