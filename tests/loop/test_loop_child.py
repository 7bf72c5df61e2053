"""Each loop step in a fresh process: results come back, charter errors come back as themselves, a signal to the
loop stops the step cleanly, and a step whose process is killed leaves the loop resumable at that step."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from charter.errors import ArgumentError, Interrupted
from charter.interrupt import StopRequest
from charter.loop.child import StepDied, run_in_child
from charter.loop.config import LoopConfig
from charter.loop.metrics import collapse_metrics
from charter.loop.run import Loop, LoopStore
from tests.loop.test_loop import unit_embed

# -- steps the spawned processes import from this module --------------------------------------------------------


def pid_step() -> dict:
    return {"pid": os.getpid()}


def argument_error_step() -> dict:
    raise ArgumentError("--set", "rounds=x: not an integer", option="--set")


def bug_step() -> dict:
    return {"half": 1 / 0}


def waiting_step(started: str) -> dict:
    """Wait, as a run does, for a stop request from the loop's signal, then stop with `Interrupted`."""
    stop = StopRequest(grace_s=0)
    with stop.signals():
        Path(started).touch()
        for _ in range(6000):
            stop.check(starting=True)
            time.sleep(0.05)
    return {"waited": "to the end"}


def sleeping_step(started: str) -> dict:
    """A step with no signal handling of its own (as DPO training is)."""
    Path(started).touch()
    time.sleep(30)
    return {"slept": "to the end"}


def signal_when(path: Path, signum: int, target: int | None = None) -> threading.Thread:
    """Send `signum` to `target` (this process) once `path` exists (waiting at most 15 minutes)."""

    def send() -> None:
        for _ in range(18000):
            if path.exists():
                break
            time.sleep(0.05)
        os.kill(target or os.getpid(), signum)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


class ChildLoop(Loop):
    """A loop of scripted policies whose DPO, monitor and evaluation are cheap stand-ins that report their process,
    and whose DPO does what the file OUT/dpo-mode says: `kill` (its process killed with SIGKILL) or `wait`."""

    def check(self) -> None:
        pass

    def policy(self, strategy, r):
        return "scripted:cai"

    def step_dpo(self, strategy, r, data):
        mode = self.loop_dir / "dpo-mode"
        if mode.exists() and mode.read_text() == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode.exists() and mode.read_text() == "wait":
            waiting_step(str(self.loop_dir / "dpo-started"))
        return {"pid": os.getpid(), "rows": data["rows"]}

    def step_monitor(self, policy):
        texts = ["alpha one", "beta two", "gamma three"]
        return {"policy": policy, "probes": 3, "metrics": collapse_metrics(texts, unit_embed), "pid": os.getpid()}

    def step_eval(self, strategy, r):
        score = {"win_rate": 0.6, "ci95": [0.5, 0.7], "n": 8}
        return {"vs_base": score, "vs_previous": score, "pid": os.getpid()}


@pytest.fixture
def child_loop(make_config, tmp_path):
    run = make_config(prompts={"inline": [f"Question {i}: how do I do thing {i}?" for i in range(3)]})
    return LoopConfig.model_validate(
        {
            "run": str(run),
            "output_dir": str(tmp_path / "loop"),
            "rounds": 1,
            "strategies": ["replace"],
            "stop": {"on_collapse": False},
            "eval": {"arena": False},
        }
    )


def test_a_step_runs_in_its_own_process_and_returns_its_result() -> None:
    assert run_in_child(pid_step, "pid")["pid"] != os.getpid()


def test_a_charter_error_comes_back_as_itself() -> None:
    with pytest.raises(ArgumentError) as raised:
        run_in_child(argument_error_step, "bad argument")
    assert raised.value.as_option() == "--set: rounds=x: not an integer" and raised.value.exit_code == 2


def test_a_bug_comes_back_with_its_traceback() -> None:
    with pytest.raises(RuntimeError, match="ZeroDivisionError") as raised:
        run_in_child(bug_step, "bug")
    assert "bug_step" in str(raised.value)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_loop_stops_the_step_cleanly(tmp_path, signum, code) -> None:
    started = tmp_path / "started"
    signal_when(started, signum)
    with pytest.raises(Interrupted) as raised:
        run_in_child(lambda_free(waiting_step, str(started)), "waiting")
    assert raised.value.exit_code == code and "resume" in str(raised.value)


def test_a_step_without_signal_handling_stops_as_interrupted(tmp_path) -> None:
    started = tmp_path / "started"
    signal_when(started, signal.SIGTERM)
    began = time.monotonic()
    with pytest.raises(Interrupted) as raised:
        run_in_child(lambda_free(sleeping_step, str(started)), "sleeping")
    assert raised.value.exit_code == 143 and time.monotonic() - began < 25  # not slept out


def lambda_free(fn, *args):  # a picklable call of `fn`
    from functools import partial

    return partial(fn, *args)


def test_the_loop_runs_each_step_in_a_fresh_process(child_loop) -> None:
    result = ChildLoop(child_loop).run()
    store = LoopStore(child_loop.loop_dir())
    steps = {(a, r, s): v for a, r, s, v in store.steps()}
    store.close()
    assert set(steps) == {
        ("shared", 0, "monitor"),
        ("shared", 0, "run"),
        ("shared", 0, "data"),
        ("shared", 0, "dpo"),
        ("shared", 0, "monitor_next"),
        ("shared", 0, "eval"),
    }
    pids = [steps["shared", 0, s]["pid"] for s in ("monitor", "dpo", "monitor_next", "eval")]
    assert len(set(pids)) == 4 and os.getpid() not in pids
    assert steps["shared", 0, "run"]["counts"] and steps["shared", 0, "data"]["rows"] > 0  # the real run's output
    assert [row["policy"] for row in result.rounds["replace"]] == [0, 1]


@pytest.mark.parametrize("mode", ["kill", "wait"])
def test_a_killed_or_interrupted_step_leaves_the_loop_resumable(child_loop, mode) -> None:
    mode_file = child_loop.loop_dir() / "dpo-mode"
    mode_file.parent.mkdir(parents=True)
    mode_file.write_text(mode)
    if mode == "wait":
        signal_when(child_loop.loop_dir() / "dpo-started", signal.SIGINT)
    with pytest.raises(StepDied if mode == "kill" else Interrupted) as raised:
        ChildLoop(child_loop).run()
    if mode == "kill":
        assert "signal 9" in str(raised.value) and "round 0: dpo" in str(raised.value)
    else:
        assert raised.value.exit_code == 130
    store = LoopStore(child_loop.loop_dir())
    done = {(a, r, s) for a, r, s, _ in store.steps()}
    store.close()
    assert ("shared", 0, "data") in done and ("shared", 0, "dpo") not in done
    mode_file.unlink()
    result = ChildLoop(child_loop).run()
    assert [row["policy"] for row in result.rounds["replace"]] == [0, 1]
