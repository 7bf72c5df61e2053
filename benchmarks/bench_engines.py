"""The local provider's two engines side by side on one device: charter's decoder against `transformers`' `generate`.

    .venv/bin/python benchmarks/bench_engines.py [--device auto|cpu|cuda] [--dtype bfloat16|float32]
        [--batches 1,16,64] [--max-tokens 128] [--judge-calls 256] [--model PATH] [--random-weights] [--json F]

For each batch size, one `LocalModel` per engine answers the same greedy requests (the bundled prompts, cycled),
alternated engine by engine after a warm-up, and the generated tokens a second are reported with how many texts
came out the same. Then both answer the same judge-style requests (`choice_logprobs`: a shared instruction, two
responses, "A" or "B"), reporting calls a second, the largest difference in log P(A) and how often the picks agree.

`--random-weights` gives the model's config (and tokenizer) freshly initialised weights (seed 0): the same shapes
and the same work, for a machine the weights cannot be sent to (the GPU machine here takes 64 MiB). Such a model
stops at no end-of-text, so every row runs to `--max-tokens`; timings then hold, texts mean nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ROWS = [json.loads(line) for line in (ROOT / "src" / "charter" / "data" / "prompts.jsonl").open()]
PROMPTS = [row["prompt"] for row in ROWS if "prompt" in row]  # single-turn ones
JUDGE = ("You compare two assistant responses against a principle.\n\nPrinciple: choose the response that is more "
         "helpful, honest and harmless, and that refuses clearly harmful requests without lecturing.\n\n")


def random_weights(model: str, folder: Path) -> str:
    """The folder's config and tokenizer with weights initialised from seed 0, saved in `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from charter.providers.local import resolve_local_model

    source = Path(resolve_local_model(model))
    for item in source.iterdir():
        weights = item.name.endswith((".safetensors", ".bin", ".gguf")) or item.name == "model.safetensors.index.json"
        if item.is_file() and not weights:
            shutil.copy(item, folder / item.name)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source)).save_pretrained(folder)
    return str(folder)


def judge_requests(n: int) -> list[list[dict[str, str]]]:
    requests = []
    for i in range(n):
        a, b = PROMPTS[i % len(PROMPTS)], PROMPTS[(7 * i + 3) % len(PROMPTS)]
        text = (f"{JUDGE}Request: {a}\n\nResponse A: I can help with part of that: {b}\n\nResponse B: I would rather "
                f"not answer {a[: 40 + i % 60]}\n\nWhich response is better? Answer A or B.")
        requests.append([{"role": "user", "content": text}])
    return requests


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, work: Any) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    result = work()
    sync(device)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", choices=["bfloat16", "float32"])
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--judge-calls", type=int, default=256)
    parser.add_argument("--judge-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch

    from charter.providers.base import SamplingParams
    from charter.providers.local import LocalModel

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    scratch = Path(tempfile.mkdtemp(prefix="charter-engines-"))
    model = random_weights(args.model, scratch) if args.random_weights else args.model
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; model {args.model}"
          f"{' (random weights)' if args.random_weights else ''}", flush=True)
    results: list[dict[str, Any]] = []
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)

    def engines(batch: int) -> dict[str, LocalModel]:
        made = {}
        for engine in ("charter", "transformers"):
            made[engine] = LocalModel(model, batch_size=batch, device=device, dtype=args.dtype, engine=engine)
            made[engine].load()
        return made

    for batch in [int(b) for b in args.batches.split(",")]:
        models = engines(batch)
        requests = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(max(batch, 4))]
        for m in models.values():  # warm-up: kernels, allocator, the tokenizer
            m.generate_sync(requests[:batch], SamplingParams(temperature=0, max_tokens=8))
        walls: dict[str, list[float]] = {e: [] for e in models}
        outputs: dict[str, Any] = {}
        for _ in range(args.repeats):
            for engine, m in models.items():
                wall, outputs[engine] = timed(device, lambda m=m, r=requests: m.generate_sync(r, params))
                walls[engine].append(wall)
        tokens = {e: sum(c.completion_tokens for c in outputs[e]) for e in models}
        same = sum(a.text == b.text for a, b in zip(outputs["charter"], outputs["transformers"]))
        row = {"what": "generate", "batch": batch, "requests": len(requests), "device": device,
               "dtype": str(models["charter"]._torch_dtype()).removeprefix("torch."), "same_texts": same}
        for engine in models:
            best = min(walls[engine])
            row[engine] = {"walls_s": [round(w, 3) for w in walls[engine]], "tokens": tokens[engine],
                           "tokens_per_s": round(tokens[engine] / best, 1)}
        row["speedup"] = round(row["charter"]["tokens_per_s"] / row["transformers"]["tokens_per_s"], 2)
        results.append(row)
        print(json.dumps(row), flush=True)
        del models
        if device == "cuda":
            torch.cuda.empty_cache()

    models = engines(args.judge_batch)
    requests = judge_requests(args.judge_calls)
    for m in models.values():
        m.choice_logprobs_sync(requests[: args.judge_batch], ["A", "B"])
    walls = {e: [] for e in models}
    probs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for engine, m in models.items():
            wall, probs[engine] = timed(device, lambda m=m: m.choice_logprobs_sync(requests, ["A", "B"]))
            walls[engine].append(wall)
    diffs = [abs(a.raw_logprobs["A"] - b.raw_logprobs["A"]) for a, b in zip(probs["charter"], probs["transformers"])]
    picks = sum((a.probs["A"] > 0.5) == (b.probs["A"] > 0.5) for a, b in zip(probs["charter"], probs["transformers"]))
    row = {"what": "judge", "batch": args.judge_batch, "requests": len(requests), "device": device,
           "prompt_tokens": sum(p.prompt_tokens for p in probs["charter"]),
           "max_logprob_diff": round(max(diffs), 5), "same_picks": picks}
    for engine in models:
        row[engine] = {"walls_s": [round(w, 3) for w in walls[engine]],
                       "calls_per_s": round(len(requests) / min(walls[engine]), 1)}
    row["speedup"] = round(row["charter"]["calls_per_s"] / row["transformers"]["calls_per_s"], 2)
    results.append(row)
    print(json.dumps(row), flush=True)

    print("\n| work | batch | charter | transformers | charter / transformers | same outputs |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        unit = "tokens_per_s" if r["what"] == "generate" else "calls_per_s"
        same = f"{r['same_texts']} of {r['requests']} texts" if r["what"] == "generate" else \
            f"{r['same_picks']} of {r['requests']} picks, log P(A) within {r['max_logprob_diff']}"
        print(f"| {r['what']} | {r['batch']} | {r['charter'][unit]} | {r['transformers'][unit]} | {r['speedup']}x "
              f"| {same} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
