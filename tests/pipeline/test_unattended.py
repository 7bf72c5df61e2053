"""Runs left to themselves (nohup, Slurm, Kubernetes, systemd): one process per run directory, SIGTERM and Ctrl-C
stop cleanly and resume with no call repeated, retries are counted per role, and progress reaches a log file.

Each `charter run` here is a real subprocess in its own process group, as a shell's background job or a scheduler's
task is, against a loopback server that answers slowly enough to be caught mid-run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.runs.lock import LOCK_FILE
from charter.runs.stages import stage_states
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage
from charter.testing.loopback import LoopbackServer, status
from tests.support.processes import start, wait_for_calls

PROMPTS = [f"Question {i}: how should I plan task {i} this week?" for i in range(8)]


def write_config(tmp_path: Path, server: LoopbackServer, name: str = "bg", **extra) -> Path:
    config = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "cache": str(tmp_path / f"{name}.sqlite"),
        "prompts": {"inline": PROMPTS},
        "concurrency": 2,
        "policy": {"model": f"openai-compatible:policy@{server.openai_url}", "params": {"max_tokens": 24}},
        "judge": {"model": f"openai-compatible:judge@{server.openai_url}"},
        "filters": {"drop_inconsistent": False},
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def answered(server: LoopbackServer) -> list[str]:
    return [json.dumps(r.body, sort_keys=True) for r in server.requests]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_stops_the_run_cleanly_and_the_same_command_resumes(tmp_path, sig, code, word):
    with LoopbackServer(delay_s=0.15) as server:
        config = write_config(tmp_path, server)
        process = start("run", str(config), cwd=tmp_path)
        wait_for_calls(tmp_path / "bg", process)
        os.killpg(process.pid, sig)
        out, err = process.communicate(timeout=60)
        assert process.returncode == code, err
        assert f"{word}; resume with the same command" in err and "Traceback" not in err
        with RunStore(tmp_path / "bg") as store:
            stages = {s["status"] for s in stage_states(store).values()}
            paid = sum(u.calls for u in stored_usage(store))
        assert stages == {"interrupted"}
        assert (tmp_path / "bg" / "report" / "report.md").exists()  # the report and the partial dataset are written
        assert (tmp_path / "bg" / "data" / "sft.jsonl").exists()
        assert not (tmp_path / "bg" / LOCK_FILE).exists()
        before = answered(server)
        assert paid == len(before)  # every call that was answered was counted: none was cut off by the stop

        assert main(["run", str(config)]) == 0
        after = answered(server)[len(before) :]
    assert not set(after) & set(before)  # the resume asks for nothing the stopped run was answered
    with RunStore(tmp_path / "bg") as store:
        assert store.count("chains") == len(PROMPTS) and {s["status"] for s in stage_states(store).values()} == {"done"}


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_second_signal_stops_at_once_with_the_same_exit_code(tmp_path, sig, code, word):
    with LoopbackServer(delay_s=2.0) as server:  # calls in flight far longer than the test waits
        config = write_config(tmp_path, server, stop_grace_s=60)
        process = start("run", str(config), cwd=tmp_path)
        wait_for_calls(tmp_path / "bg", process, at_least=0)
        time.sleep(1.0)  # the first calls are in flight
        os.killpg(process.pid, sig)
        time.sleep(0.5)
        os.killpg(process.pid, sig)
        _, err = process.communicate(timeout=30)
    assert process.returncode == code, err  # a scheduler's second SIGTERM still reads as terminated
    assert f"{word}; resume with the same command" in err and "Traceback" not in err


def test_a_second_run_on_a_running_directory_is_refused_and_makes_no_call(tmp_path, capsys):
    with LoopbackServer() as solo_server:  # how many calls one run makes
        assert main(["run", str(write_config(tmp_path, solo_server, name="solo"))]) == 0
    solo = solo_server.hits
    with LoopbackServer(delay_s=0.1) as server:
        config = write_config(tmp_path, server)
        process = start("run", str(config), cwd=tmp_path)
        wait_for_calls(tmp_path / "bg", process)
        capsys.readouterr()
        assert main(["run", str(config)]) == 2
        err = capsys.readouterr().err
        assert f"being run by process {process.pid} on {socket.gethostname()}" in err and len(err.splitlines()) == 1
        assert main(["run", str(config), "--dry-run"]) == 2  # the dry run says so too
        assert main(["status", str(tmp_path / "bg")]) == 0  # read-only commands are not held up
        assert "running" in capsys.readouterr().out
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert server.hits == solo  # only the first process asked anything


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    with LoopbackServer(delay_s=0.1) as server:
        config = write_config(tmp_path, server)
        process = start("run", str(config), cwd=tmp_path)
        wait_for_calls(tmp_path / "bg", process)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        assert (tmp_path / "bg" / LOCK_FILE).exists()  # left behind, naming a process that is gone
        assert main(["status", str(tmp_path / "bg")]) == 0
        capsys.readouterr()
        assert main(["run", str(config)]) == 0
        assert f"process {process.pid}, which held it, is gone: taken over" in capsys.readouterr().err
    with RunStore(tmp_path / "bg") as store:
        assert store.count("chains") == len(PROMPTS)


@pytest.mark.parametrize("content", ["", "garbage\n\x00\xff", "not-a-pid\nhost\n"])
def test_a_lock_file_naming_no_process_is_taken_over_saying_so(tmp_path, capsys, content):
    with LoopbackServer() as server:
        config = write_config(tmp_path, server)
        lock = tmp_path / "bg" / LOCK_FILE
        lock.parent.mkdir()
        lock.write_text(content, encoding="latin-1")
        assert main(["run", str(config)]) == 2  # just written: it may be a lock being taken, so it is left alone
        err = capsys.readouterr().err
        assert f"if no run is running on it, remove {lock}" in err and len(err.strip().splitlines()) == 1
        os.utime(lock, (time.time() - 60, time.time() - 60))  # left from long ago: stale
        assert main(["run", str(config)]) == 0
        assert f"{lock} names no process (empty or unreadable): taken over as stale" in capsys.readouterr().err
    assert not lock.exists()


DIE_WRITING_THE_DATASET = """
import os, sys
from charter.preference import dataset
dataset.write = lambda *args, **kwargs: os._exit(9)  # as a kill -9 while the dataset is written
from charter.cli import main
sys.exit(main(["run", sys.argv[1]]))
"""


def test_status_says_so_when_the_process_died_before_the_dataset_was_written(tmp_path, capsys):
    with LoopbackServer() as server:
        config = write_config(tmp_path, server)
        died = subprocess.run([sys.executable, "-c", DIE_WRITING_THE_DATASET, str(config)], cwd=tmp_path)
        assert died.returncode == 9
        assert not list((tmp_path / "bg").glob("data/*.jsonl"))
        capsys.readouterr()
        assert main(["status", str(tmp_path / "bg")]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "The dataset is not written (data/preferences.*, data/sft.* missing)" in out
        assert main(["run", str(config)]) == 0  # the same command writes it
        assert (tmp_path / "bg" / "data" / "preferences.jsonl").exists()
        capsys.readouterr()
        assert main(["status", str(tmp_path / "bg")]) == 0
        assert "The dataset is not written" not in " ".join(capsys.readouterr().out.split())


def test_retries_are_counted_per_role_in_status_and_report(tmp_path, capsys):
    with LoopbackServer() as server:
        server.script(status(429, retry_after_ms="5"), status(503), status(429, retry_after_ms="5"))
        config = write_config(
            tmp_path,
            server,
            policy={
                "model": f"openai-compatible:policy@{server.openai_url}",
                "params": {"max_tokens": 24},
                "limits": {"backoff_initial_s": 0.01, "backoff_max_s": 0.05},
            },
            concurrency=1,
        )
        assert main(["run", str(config)]) == 0
    with RunStore(tmp_path / "bg") as store:
        retries = {u.role: u.retries for u in stored_usage(store)}
    assert retries.get("policy") == 3 and not retries.get("judge")  # the first requests are the policy's
    capsys.readouterr()
    assert main(["status", str(tmp_path / "bg")]) == 0
    assert "retries" in capsys.readouterr().out
    report = (tmp_path / "bg" / "report" / "report.md").read_text()
    assert "| calls | cached | retries |" in report and "| policy |" in report


def test_progress_lines_reach_a_log_file(tmp_path):
    with LoopbackServer(delay_s=0.1) as server:
        config = write_config(tmp_path, server)
        process = start("--progress-interval", "0.5", "run", str(config), cwd=tmp_path)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        lines = [line for line in err.splitlines() if "charter.progress" in line]
        assert len(lines) >= 2, err  # every half second while it runs, and at the end
        assert all(line[:4].isdigit() and line[4] == "-" for line in lines)  # timestamped
        assert (
            "critique + judge: 8/8 (100%)" in lines[-1]
            and "calls" in lines[-1]
            and "retries" in lines[-1]
            and "failed" in lines[-1]
            and "$" in lines[-1]
        )

        quiet = start("-q", "run", str(write_config(tmp_path, server, name="quiet")), cwd=tmp_path)
        _, err = quiet.communicate(timeout=120)
        assert quiet.returncode == 0 and "charter.progress" not in err and "INFO" not in err


def test_log_level_options(capsys):
    assert main(["--log-level", "loud", "constitutions", "list"]) == 2
    assert "--log-level: 'loud': use one of debug, info, warning, error" in capsys.readouterr().err
    assert main(["-v", "constitutions", "list"]) == 0
