"""Training throughput: reward model (MiniLM-L6) and DPO (SmolLM2-135M) through charter's TRL wrappers,
against a bare forward+backward+AdamW step of the same model on the same batch.

    .venv/bin/python benchmarks/bench_training.py [--device auto|cpu|cuda] [--steps 4] [--only NAME]

Each measurement runs in its own subprocess so that peak memory (RSS on CPU, max allocated on CUDA)
belongs to it alone. After every trainer step the same process times a bare step (a fresh copy of the
model, the trainer's own first collated batch), so the ratio holds even on a busy machine. The first
step of each warms up and is not counted. Prints one JSON line per measurement and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

WORDS = (
    "please explain how a careful gardener would plan the seasons for vegetables and flowers in a small "
    "backyard with clay soil and little sun"
).split()


def pairs(n: int, words: int) -> list[dict[str, Any]]:
    """Synthetic preference pairs of about `words` words per response."""
    rows = []
    for i in range(n):
        text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(words))
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"Question {i}: how do I plan a garden?"}],
                "chosen": [{"role": "assistant", "content": "Sure. " + text}],
                "rejected": [{"role": "assistant", "content": "No. " + text[::-1]}],
                "p_chosen": 0.8,
            }
        )
    return rows


class StepTimer:
    """A TrainerCallback that records each optimizer step's wall time and, right after it, times a bare
    forward+backward+AdamW step of a copy of the model on the same padded batch (paired, so that a busy
    machine slows both alike)."""

    def __init__(self, bare: BareStep | None = None) -> None:
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.times.append(time.perf_counter() - timer.start)
                if timer.bare is not None:
                    timer.bare_times.append(timer.bare.step())

        self.start, self.times, self.bare_times, self.bare, self.callback = 0.0, [], [], bare, _Callback()


class BareStep:
    """forward + backward + AdamW on a private copy of a model, for a fixed batch."""

    def __init__(self, model: Any, batch: dict[str, Any], loss: str) -> None:
        import copy

        import torch

        self.model = copy.deepcopy(model).train()
        self.batch, self.loss = batch, loss
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-6)

    def step(self) -> float:
        import torch

        start = time.perf_counter()
        if self.loss == "lm":
            loss = self.model(**self.batch, labels=self.batch["input_ids"]).loss
        else:
            chosen, rejected = self.model(**self.batch).logits.squeeze(-1).chunk(2)
            loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


def first_batch(trainer: Any, device: str) -> dict[str, Any]:
    """The trainer's own collated first batch (input_ids and attention_mask, as TRL pads them)."""
    ds = trainer.train_dataset
    examples = [ds[i] for i in range(trainer.args.per_device_train_batch_size)]
    batch = trainer.data_collator(examples)
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mean_after_warmup(times: list[float]) -> float:
    timed = times[1:] if len(times) > 1 else times  # the first step warms up allocators and kernels
    return sum(timed) / len(timed)


def summarize(
    name: str,
    times: list[float],
    tokens_per_step: float,
    device: str,
    extra: dict,
    bare_times: list[float] | None = None,
) -> dict[str, Any]:
    timed = times[1:] if len(times) > 1 else times
    step = _mean_after_warmup(times)
    if bare_times:
        bare = _mean_after_warmup(bare_times)
        extra = {**extra, "bare_s_per_step": round(bare, 3), "ratio_to_bare": round(step / bare, 2)}
    median = sorted(timed)[len(timed) // 2]  # one slow step (a GPU's second warm-up, say) moves the mean alone
    return {
        "name": name,
        "device": device,
        "steps_timed": len(timed),
        "s_per_step": round(step, 3),
        "median_s_per_step": round(median, 3),
        "steps_per_s": round(1 / step, 3),
        "tokens_per_s": round(tokens_per_step / step, 1),
        "tokens_per_step": tokens_per_step,
        "peak_mem_mb": round(peak_memory_mb(device), 1),
        **extra,
    }


def run_dpo(
    device: str, steps: int, batch: int, words: int, trl: dict[str, Any], name: str, paired: bool = True
) -> dict[str, Any]:
    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import make_trainer
    from charter.training import data

    rows = data.to_training_rows(pairs(batch * (steps + 1), words), "bench")
    out = Path(tempfile.mkdtemp())
    config = DPOConfigModel(
        dataset="bench.jsonl",
        output_dir=out,
        device=device,
        probe_pairs=0,
        trl={
            "max_steps": steps + 1,
            "per_device_train_batch_size": batch,
            "logging_steps": 1000,
            "save_strategy": "no",
            **trl,
        },
    )
    timer = StepTimer()
    trainer = make_trainer(config, rows, {}, out, device, 0.0, [timer.callback])
    timer.bare = BareStep(_fresh_policy(device), first_batch(trainer, device), "lm") if paired else None
    tokens = _dpo_tokens(trainer, batch)
    trainer.train()
    args = trainer.args
    return summarize(
        name,
        timer.times,
        tokens,
        device,
        {
            "batch_pairs": batch,
            "bf16": bool(args.bf16),
            "activation_checkpointing": bool(args.activation_checkpointing),
            "precompute_ref_log_probs": bool(args.precompute_ref_log_probs),
        },
        timer.bare_times,
    )


def _fresh_policy(device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from charter.training.models import resolve_model

    path = resolve_model("smollm2-135m-instruct")
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)


def _dpo_tokens(trainer: Any, batch: int) -> float:
    """Mean tokens per step: prompt+chosen and prompt+rejected of `batch` pairs."""
    ds = trainer.train_dataset
    n = min(len(ds), batch * 4)
    total = sum(2 * len(ds[i]["prompt_ids"]) + len(ds[i]["chosen_ids"]) + len(ds[i]["rejected_ids"]) for i in range(n))
    return total / n * batch


def run_reward(device: str, steps: int, batch: int, words: int) -> dict[str, Any]:
    from charter.reward_model.config import RewardModelConfig
    from charter.reward_model.train import load_backbone, make_trainer
    from charter.training import data

    rows = data.to_training_rows(pairs(batch * (steps + 1), words), "bench")
    out = Path(tempfile.mkdtemp())
    config = RewardModelConfig(
        dataset="bench.jsonl",
        model="minilm-l6",
        output_dir=out,
        device=device,
        trl={
            "max_steps": steps + 1,
            "per_device_train_batch_size": batch,
            "logging_steps": 1000,
            "save_strategy": "no",
        },
    )
    model, tok = load_backbone(config)
    timer = StepTimer()
    trainer = make_trainer(config, model, tok, rows, out, device, [timer.callback])
    fresh, _ = load_backbone(config)
    timer.bare = BareStep(fresh.to(device), first_batch(trainer, device), "pairwise")
    ds = trainer.train_dataset
    tokens = sum(len(ds[i]["chosen_ids"]) + len(ds[i]["rejected_ids"]) for i in range(len(ds))) / len(ds) * batch
    trainer.train()
    return summarize(
        "reward model MiniLM-L6 (RewardTrainer)",
        timer.times,
        tokens,
        device,
        {"batch_pairs": batch, "bf16": bool(trainer.args.bf16)},
        timer.bare_times,
    )


def measurements(device: str, batch_dpo: int, batch_rm: int) -> dict[str, tuple]:
    ours: dict[str, Any] = {}
    return {
        "reward": (run_reward, batch_rm),
        "dpo": (lambda d, s, b, w: run_dpo(d, s, b, w, ours, "DPO SmolLM2-135M (charter defaults)"), batch_dpo),
        "dpo_ref_each_step": (
            lambda d, s, b, w: run_dpo(
                d, s, b, w, {"precompute_ref_log_probs": False}, "DPO SmolLM2-135M, reference forward every step"
            ),
            batch_dpo,
        ),
        "dpo_precompute": (
            lambda d, s, b, w: run_dpo(
                d, s, b, w, {"precompute_ref_log_probs": True}, "DPO SmolLM2-135M, precompute_ref_log_probs"
            ),
            batch_dpo,
        ),
        "dpo_checkpointing": (
            lambda d, s, b, w: run_dpo(
                d,
                s,
                b,
                w,
                {"activation_checkpointing": True, "precompute_ref_log_probs": False},
                "DPO SmolLM2-135M, reference every step + activation checkpointing",
            ),
            batch_dpo,
        ),
        "dpo_trl_defaults": (
            lambda d, s, b, w: run_dpo(
                d,
                s,
                b,
                w,
                {"bf16": None, "activation_checkpointing": True, "precompute_ref_log_probs": False},
                "DPO SmolLM2-135M, TRL defaults (bf16, checkpointing)",
            ),
            batch_dpo,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=4, help="timed steps (one more warms up)")
    parser.add_argument("--batch-dpo", type=int, default=None, help="pairs per DPO step (default 4 CPU, 16 CUDA)")
    parser.add_argument("--batch-rm", type=int, default=None, help="pairs per reward step (default 8 CPU, 32 CUDA)")
    parser.add_argument("--words", type=int, default=4, help="words per response (4: ~48 tokens per SmolLM2 sequence)")
    parser.add_argument("--only", nargs="*", help="measurement names to run (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    batch_dpo = args.batch_dpo or (16 if device == "cuda" else 4)
    batch_rm = args.batch_rm or (32 if device == "cuda" else 8)
    table = measurements(device, batch_dpo, batch_rm)
    if args.child:
        fn, batch = table[args.child]
        print("RESULT " + json.dumps(fn(device, args.steps, batch, args.words)), flush=True)
        return
    results = [_spawn(name, args, device) for name in (args.only or list(table))]
    _report(results, device)


def _spawn(name: str, args: argparse.Namespace, device: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--device",
        device,
        "--steps",
        str(args.steps),
        "--words",
        str(args.words),
    ]
    for flag in ("batch_dpo", "batch_rm"):
        if getattr(args, flag):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        result = {"name": name, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    else:
        result = json.loads(lines[-1][7:])
    print(json.dumps(result), flush=True)
    return result


def _report(results: list[dict[str, Any]], device: str) -> None:
    print(f"\n| measurement ({device}) | s/step | steps/s | tokens/s | peak MB | bare step s | ratio to bare |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['name']} | error: {r['error'][0][:80]} | | | | | |")
            continue
        print(
            f"| {r['name']} | {r['s_per_step']} | {r['steps_per_s']} | {r['tokens_per_s']} | {r['peak_mem_mb']} "
            f"| {r.get('bare_s_per_step', '')} | {r.get('ratio_to_bare', '')} |"
        )


if __name__ == "__main__":
    main()
