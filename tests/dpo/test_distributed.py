"""Training on several processes: two gloo ranks under torchrun (what `accelerate launch` does on GPUs; on
this machine accelerate's multi-CPU path wants MPI and starts one process, so the test uses torchrun)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.ddp_train import weights_digest

ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "max_steps": 2,
    "save_strategy": "no",
    "logging_steps": 1,
    "per_device_train_batch_size": 4,
    "learning_rate": 1e-3,
}


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # gloo ranks on CPU also where a GPU is present (one GPU cannot hold two NCCL ranks, and accelerate's barrier
    # asks for each rank's CUDA device)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(cwd / "hf-datasets"),
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def write_config(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


def test_two_ranks_train_in_step_and_one_process_writes(tmp_path, tiny_model, prefs_file):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    common = {"dataset": str(prefs_file), "model": str(tiny_model), "eval_fraction": 0.25, "trl": FAST}
    dpo = write_config(tmp_path / "dpo.yaml", **common, output_dir=str(tmp_path / "dpo"), probe_pairs=4)
    reward = write_config(tmp_path / "reward.yaml", **common, output_dir=str(tmp_path / "reward"))
    torchrun(["-m", "tests.support.ddp_train", str(dpo), str(reward), str(tmp_path / "digests")], tmp_path)

    loaders = {"dpo": AutoModelForCausalLM, "reward": AutoModelForSequenceClassification}
    for kind, loader in loaders.items():
        digest = {
            (rank, when): (tmp_path / "digests" / f"{kind}-rank{rank}-{when}.txt").read_text()
            for rank in (0, 1)
            for when in ("begin", "end")
        }
        assert digest[0, "begin"] == digest[1, "begin"]  # both ranks started from the same weights,
        assert digest[0, "end"] == digest[1, "end"]  # ended at the same weights,
        assert digest[0, "end"] != digest[0, "begin"]  # which training moved,
        saved = loader.from_pretrained(tmp_path / kind)
        assert weights_digest(saved) == digest[0, "end"], kind  # and those are the weights saved.
        metrics = json.loads((tmp_path / kind / "metrics.json").read_text())
        training = metrics["training"]
        assert training["world_size"] == 2 and training["global_step"] == 2
        assert training["effective_batch_size"] == 2 * 4 == 2 * training["per_device_batch_size"]
        leftovers = sorted(p.name for p in (tmp_path / kind).iterdir() if p.name.startswith("."))
        assert leftovers == []  # the shared data folder is gone
    rm = json.loads((tmp_path / "reward" / "metrics.json").read_text())
    assert rm["held_out_accuracy"] is not None  # the main process evaluated it


def test_cli_under_torchrun_reports_once(tmp_path, tiny_model, prefs_file):
    config = write_config(
        tmp_path / "dpo.yaml",
        dataset=str(prefs_file),
        model=str(tiny_model),
        output_dir=str(tmp_path / "out"),
        probe_pairs=0,
        trl=FAST,
    )
    result = torchrun(["-m", "charter.cli", "train", "dpo", str(config)], tmp_path)
    assert result.stdout.count("DPO policy saved to") == 1
    assert "2 processes on cpu, batch 4 per device x 1 accumulation = effective batch 8, 2 steps" in result.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()
