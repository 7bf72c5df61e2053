"""The gold monitor under `torchrun --nproc_per_node 2` (gloo, on the CPU): only the main process answers the
held-out prompts, asks the gold judge (once per answer, whatever the number of processes) and writes the monitor's
files; every process follows its saves and stops, so none waits on another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from charter.testing.loopback import LoopbackServer

HELD_OUT = [f"Describe a quiet {thing}." for thing in ("river", "garden", "library", "morning")]


def test_two_ranks_run_the_monitor_once_on_the_main_process(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "odpo"
    held = tmp_path / "held_out.jsonl"
    held.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in HELD_OUT))
    with LoopbackServer(reply=lambda body: "4").start() as server:
        config = {
            "model": str(tiny_model),
            "prompts": {"inline": [f"question {i}" for i in range(8)]},
            "judge": {"model": "scripted:cai", "mode": "verdict", "orders": "both", "principles_per_pair": 1},
            "cache": None,
            "device": "cpu",
            "output_dir": str(out),
            "trl": {"max_steps": 2, "per_device_train_batch_size": 2, "max_new_tokens": 8, "save_strategy": "no"},
            "monitor": {
                "prompts": str(held),
                "every": 1,
                "max_new_tokens": 8,
                "gold": {
                    "constitution": "harmless",
                    "judge": f"openai-compatible:gold@{server.openai_url}",
                    "rating": {"mode": "score", "rating": "verdict", "principles_per_pair": 1},
                },
            },  # fmt: skip
        }
        path = tmp_path / "odpo.yaml"
        path.write_text(yaml.safe_dump(config))
        src = Path(__file__).resolve().parents[2] / "src"
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(src)}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                   "charter.cli", "train", "online-dpo", str(path)]  # fmt: skip
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500, check=False)
        hits = server.hits
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["world_size"] == 2
    monitor = metrics["monitor"]
    assert [s["step"] for s in monitor["steps"]] == [0, 1, 2]  # each evaluation once
    assert monitor["calls"] == hits == 3 * len(HELD_OUT)  # one gold call an answer: no other process asked
    history = json.loads((out / "monitor" / "history.json").read_text())
    assert [s["step"] for s in history] == [0, 1, 2]
    assert sorted(p.name for p in (out / "monitor").glob("step-*.jsonl")) == ["step-0.jsonl", "step-1.jsonl",
                                                                              "step-2.jsonl"]  # fmt: skip
