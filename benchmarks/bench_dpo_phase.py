"""One DPO phase of `charter iterate examples/loop.yaml`, against TRL's own DPOTrainer run bare on the same pairs and
settings, side by side in one invocation.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_dpo_phase.py [--rows 8] [--repeats 1] [--trl '{"bf16": true}']
    PYTHONPATH=src .venv/bin/python benchmarks/bench_dpo_phase.py --per-pair 130   # one pair's step per setting

`charter`: `train_dpo` with the example's `dpo:` section (its `trl:` fields over charter's CPU defaults), as the loop
runs it: in a fresh process, probes before and after, the model saved with its card. `bare`: a fresh process that
loads the same policy, builds TRL's DPOConfig from the very same fields (charter's `_trl_args`, so nothing differs but
what each side does around TRL), and calls `DPOTrainer(...).train()` and `save_model`. Each side's wall time counts
from the process's start (imports included) to its end; its peak is the process's max RSS. Inside each, the time of
TRL's reference log-probabilities, evaluation passes and `train_runtime` are read by wrapping TRL's methods. The sides
alternate (charter, bare, charter, bare, ...) so that a busy machine slows both alike; the load average is printed
with every figure.

The pairs: `--rows` preference rows (the loop's round-0 `replace` data has 8) of bundled prompts with ~64-token
answers (the example's `max_tokens`), or a loop round's own `dpo_data.jsonl` (`--data`).
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

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "loop.yaml"
ANSWER = (
    "A careful gardener plans the seasons before the first seed: which beds get the morning sun, how the clay "
    "soil drains after rain, and when each crop wants to be sown, thinned and picked. Start with the soil, add"
).split()


def synthetic_rows(n: int) -> list[dict[str, Any]]:
    """`n` preference rows: bundled prompts, answers of about 64 tokens (the example's `max_tokens`)."""
    from charter.prompts import PromptsConfig, load_prompts

    prompts = load_prompts(PromptsConfig(bundled=True, limit=n)).rows
    rows = []
    for i, prompt in enumerate(prompts):
        words = ANSWER[i % 7 :] + ANSWER[: i % 7]
        rows.append(
            {
                "prompt": [m.model_dump() for m in prompt.messages],
                "chosen": [{"role": "assistant", "content": " ".join(words)}],
                "rejected": [{"role": "assistant", "content": " ".join(reversed(words))}],
                "p_chosen": 0.8,
            }
        )
    return rows


def example_dpo(extra_trl: dict[str, Any]) -> dict[str, Any]:
    """The example's `dpo:` section, with `extra_trl` over its `trl:` fields."""
    import yaml

    section = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["dpo"]
    return {**section, "trl": {**section.get("trl", {}), **extra_trl}}


class PhaseClock:
    """Wall time of TRL's reference log-probabilities, evaluation passes and `train`, by wrapping its methods."""

    def __init__(self) -> None:
        from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage]

        self.seconds: dict[str, float] = {}
        for method, label in (("_precompute_ref_logps", "reference"), ("evaluate", "evaluate"), ("train", "train")):
            self._wrap(DPOTrainer, method, label)

    def _wrap(self, cls: type, method: str, label: str) -> None:
        original = getattr(cls, method)
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                clock.seconds[label] = clock.seconds.get(label, 0.0) + time.perf_counter() - start
                clock.seconds[f"{label}_cpu"] = clock.seconds.get(f"{label}_cpu", 0.0) + time.process_time() - cpu

        setattr(cls, method, timed)


def run_charter(data: Path, dpo: dict[str, Any]) -> dict[str, Any]:
    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import train_dpo

    clock = PhaseClock()
    config = DPOConfigModel(**{**dpo, "dataset": str(data), "output_dir": tempfile.mkdtemp(), "device": "cpu"})
    metrics = train_dpo(config)
    training: Any = metrics["training"]
    return {"phases": clock.seconds, "train_runtime": training.get("train_runtime"), "loss": _final_loss(training)}


def run_bare(data: Path, dpo: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer  # pyright: ignore[reportPrivateImportUsage]

    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import _trl_args
    from charter.training.models import resolve_model

    clock = PhaseClock()
    config = DPOConfigModel(**{**dpo, "dataset": str(data), "device": "cpu"})
    out = Path(tempfile.mkdtemp())
    args = _trl_args(config, out, "cpu", 0.0)  # the very DPOConfig charter trains with
    path = resolve_model(config.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    trainer.save_model(str(out))
    return {"phases": clock.seconds, "train_runtime": result.metrics.get("train_runtime"), "loss": result.training_loss}


def _final_loss(training: dict[str, Any]) -> float | None:
    return training.get("train_loss")


def child(side: str, data: Path, dpo: dict[str, Any]) -> None:
    result = (run_charter if side == "charter" else run_bare)(data, dpo)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result, default=str), flush=True)


def spawn(side: str, data: Path, dpo: dict[str, Any]) -> dict[str, Any]:
    """One side in a fresh process (as the loop runs its DPO step): wall time from its start to its end."""
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), _children_cpu()
    command = [sys.executable, __file__, "--child", side, "--data", str(data), "--dpo", json.dumps(dpo)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{side} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    return {"side": side, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2), **result}  # fmt: skip


def per_pair(tokens: int, steps: int = 3) -> None:
    """Forward + backward of one pair (2 sequences of `tokens`) through TRL's fused LM head, fp32 or bf16 autocast,
    with and without activation checkpointing: CPU seconds per step and the process's max RSS."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from charter.training.models import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m-instruct"), dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))  # as DPOTrainer adds it
    ids = torch.randint(0, model.config.vocab_size, (2, tokens))
    labels = ids.clone()
    labels[:, : min(30, tokens // 2)] = -100  # a short prompt
    model.train()
    for bf16, checkpointing in ((False, True), (False, False), (True, False), (True, True)):
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        seconds = []
        for _ in range(steps):
            start = time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=ids, labels=labels, fused_lm_head=True, use_cache=False)
            out.log_probs.sum().backward()
            model.zero_grad(set_to_none=True)
            seconds.append(round(time.process_time() - start, 2))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"bf16={bf16} checkpointing={checkpointing}: CPU s per pair {seconds}; max RSS {rss:.0f} MiB", flush=True)


def _children_cpu() -> float:
    """CPU seconds (user and system) of the ended child processes: on a busy machine, what load moves least."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8, help="synthetic preference rows (the loop's round 0 has 8)")
    parser.add_argument("--data", type=Path, default=None, help="a loop round's dpo_data.jsonl instead")
    parser.add_argument("--repeats", type=int, default=1, help="charter/bare pairs to run, alternating")
    parser.add_argument("--trl", default="{}", help="JSON of trl fields over the example's (both sides)")
    parser.add_argument("--only", choices=["charter", "bare"], default=None, help="run one side only")
    parser.add_argument("--per-pair", type=int, metavar="TOKENS", help="time one pair's step per setting instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dpo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, json.loads(args.dpo))
        return
    if args.per_pair:
        per_pair(args.per_pair)
        return
    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp()) / "dpo_data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(args.rows)), encoding="utf-8")
    dpo = example_dpo(json.loads(args.trl))
    print("dpo section:", json.dumps(dpo), file=sys.stderr)
    sides = [args.only] if args.only else ["charter", "bare"]
    results = []
    for _ in range(args.repeats):
        for side in sides:
            results.append(spawn(side, data, dpo))
            print(json.dumps(results[-1]), flush=True)
    report(results)


def report(results: list[dict[str, Any]]) -> None:
    print("\n| side | wall s | CPU s | train CPU s | reference CPU s | evaluate CPU s | peak RSS MiB | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        phases = r["phases"]
        print(f"| {r['side']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {phases.get('train_cpu', 0):.1f} "
              f"| {phases.get('reference_cpu', 0):.1f} | {phases.get('evaluate_cpu', 0):.1f} | {r['peak_rss_mb']:.0f} "
              f"| {r['load_before']}, {r['load_after']} |")  # fmt: skip
    for measure in ("wall_s", "cpu_s"):
        mine = [r[measure] for r in results if r["side"] == "charter"]
        bare = [r[measure] for r in results if r["side"] == "bare"]
        if mine and bare:
            print(f"charter / bare TRL, {measure[:-2]} time of the phase: {sum(mine) / sum(bare):.2f}x")


if __name__ == "__main__":
    main()
