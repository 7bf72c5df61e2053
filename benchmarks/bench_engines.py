"""The local provider's engines side by side on one device: charter's decoder against `transformers`' `generate`,
and against ctranslate2 where it is installed (`pip install ctranslate2`; not a dependency of charter).

    .venv/bin/python benchmarks/bench_engines.py [--device auto|cpu|cuda] [--dtype bfloat16|float32]
        [--engines charter,transformers,ct2:int8_float32,ct2:float32] [--batches 1,16,64] [--max-tokens 128]
        [--judge-calls 256] [--model PATH] [--random-weights] [--json F]

For each batch size, one `LocalModel` per engine answers the same greedy requests (the bundled prompts, cycled),
alternated engine by engine after a warm-up, and the generated tokens a second are reported with how many texts
came out the same as charter's. Then all answer the same judge-style requests (`choice_logprobs`: a shared
instruction, two responses, "A" or "B"), reporting calls a second, the largest difference in log P(A) and how often
the picks agree with charter's.

`ct2:<compute type>` converts the model folder with ctranslate2's `TransformersConverter` (quantised to that compute
type: `int8_float32` is int8 products with float32 activations) and runs it through `ctranslate2.Generator`, behind
the calls `LocalModel` makes: the same chat template and tokens, greedy decoding to the same end tokens, and for the
judge the full-vocabulary log-probabilities after the whole prompt (`return_logits_vocab`; in a batch of unequal
prompts ctranslate2 runs the longer ones' extra tokens as forced decoding steps, each with its own logits, so the
last of them is the one), the prompts' common start given as its cached `static_prompt`.

`--random-weights` gives the model's config (and tokenizer) freshly initialised weights (seed 0): the same shapes
and the same work, for a machine the weights cannot be sent to. Such a model
stops at no end-of-text, so every row runs to `--max-tokens`; timings then hold, texts mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
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
JUDGE = (
    "You compare two assistant responses against a principle.\n\nPrinciple: choose the response that is more "
    "helpful, honest and harmless, and that refuses clearly harmful requests without lecturing.\n\n"
)


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
        text = (
            f"{JUDGE}Request: {a}\n\nResponse A: I can help with part of that: {b}\n\nResponse B: I would rather "
            f"not answer {a[: 40 + i % 60]}\n\nWhich response is better? Answer A or B."
        )
        requests.append([{"role": "user", "content": text}])
    return requests


class CT2Engine:
    """`generate_sync` and `choice_logprobs_sync` of a `LocalModel` (whose tokenizer and chat template it uses)
    through a ctranslate2 conversion of the same folder."""

    def __init__(self, local: Any, compute_type: str, batch: int, device: str, folder: Path) -> None:
        import torch

        try:
            import ctranslate2
            from ctranslate2.converters import TransformersConverter
        except ImportError:
            raise SystemExit(
                f"bench_engines.py: --engines ct2:{compute_type} needs ctranslate2: .venv/bin/pip install ctranslate2"
            ) from None

        from charter.providers.local import resolve_local_model

        local.load()
        self.local, self.batch = local, batch
        self.model_id = f"ct2:{compute_type}"
        target = folder / f"ct2-{compute_type}"
        if not target.exists():
            TransformersConverter(resolve_local_model(local.name)).convert(str(target), quantization=compute_type)
        threads = torch.get_num_threads() if device == "cpu" else 0  # the threads charter's engines use
        self.generator = ctranslate2.Generator(
            str(target), device=device, compute_type=compute_type, intra_threads=threads, inter_threads=1
        )

    def _tokens(self, requests: list[Any]) -> list[list[str]]:
        tokenizer = self.local.tokenizer
        return [tokenizer.convert_ids_to_tokens(self.local._encode(r)) for r in requests]

    def generate_sync(self, requests: list[Any], params: Any) -> list[Any]:
        from charter.providers.base import Completion

        tokenizer = self.local.tokenizer
        results = self.generator.generate_batch(
            self._tokens(requests),
            max_batch_size=self.batch,
            beam_size=1,
            sampling_topk=1,
            max_length=params.max_tokens,
            include_prompt_in_result=False,
            end_token=sorted(self.local._eos_ids()),
        )
        return [
            Completion(
                tokenizer.decode(r.sequences_ids[0], skip_special_tokens=True),
                self.model_id,
                completion_tokens=len(r.sequences_ids[0]),
            )
            for r in results
        ]

    def choice_logprobs_sync(self, requests: list[Any], options: list[str]) -> list[Any]:
        import numpy as np
        import torch

        from charter.providers.base import ChoiceProbs, normalise

        tokens = self._tokens(requests)
        shared = min(len(os.path.commonprefix(tokens)), min(len(row) for row in tokens) - 1)
        results = self.generator.generate_batch(
            [row[shared:] for row in tokens],
            static_prompt=tokens[0][:shared] or None,
            max_batch_size=self.batch,
            beam_size=1,
            max_length=1,
            include_prompt_in_result=False,
            return_logits_vocab=True,
        )
        variants = {o: sorted(self.local._first_tokens(o)) for o in options}
        out = []
        for row, result in zip(tokens, results):
            logprobs = torch.log_softmax(torch.from_numpy(np.asarray(result.logits[0][-1])).float().reshape(-1), -1)
            raw = {o: float(logprobs[ids].logsumexp(0)) for o, ids in variants.items()}
            out.append(ChoiceProbs(normalise(raw, options), self.model_id, len(row), raw))
        return out


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
    parser.add_argument(
        "--engines",
        default="charter,transformers",
        help="charter, transformers, ct2:<compute type> (ctranslate2, if installed); charter first",
    )
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
    print(
        f"device: {where}; torch {torch.__version__}; model {args.model}"
        f"{' (random weights)' if args.random_weights else ''}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)

    names = args.engines.split(",")
    if names[0] != "charter":
        parser.error("--engines must start with charter: the others are compared with it")

    def engines(batch: int) -> dict[str, Any]:
        made: dict[str, Any] = {}
        for engine in names:
            if engine.startswith("ct2:"):
                local = LocalModel(model, batch_size=batch, device=device, dtype=args.dtype, engine="charter")
                made[engine] = CT2Engine(local, engine.removeprefix("ct2:"), batch, device, scratch)
            else:
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
        row = {
            "what": "generate",
            "batch": batch,
            "requests": len(requests),
            "device": device,
            "dtype": str(models["charter"]._torch_dtype()).removeprefix("torch."),
            "engines": {},
        }
        for engine in models:
            best = min(walls[engine])
            row["engines"][engine] = {
                "walls_s": [round(w, 3) for w in walls[engine]],
                "tokens": tokens[engine],
                "tokens_per_s": round(tokens[engine] / best, 1),
                "same_as_charter": sum(a.text == b.text for a, b in zip(outputs["charter"], outputs[engine])),
            }
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
    row = {
        "what": "judge",
        "batch": args.judge_batch,
        "requests": len(requests),
        "device": device,
        "prompt_tokens": sum(p.prompt_tokens for p in probs["charter"]),
        "engines": {},
    }
    for engine in models:
        pairs = list(zip(probs["charter"], probs[engine]))
        row["engines"][engine] = {
            "walls_s": [round(w, 3) for w in walls[engine]],
            "calls_per_s": round(len(requests) / min(walls[engine]), 1),
            "max_logprob_diff": round(max(abs(a.raw_logprobs["A"] - b.raw_logprobs["A"]) for a, b in pairs), 5),
            "same_picks": sum((a.probs["A"] > 0.5) == (b.probs["A"] > 0.5) for a, b in pairs),
        }
    results.append(row)
    print(json.dumps(row), flush=True)

    print("\n| work | batch | engine | rate | engine / charter | same outputs as charter |")
    print("|---|---:|---|---:|---:|---|")
    for r in results:
        unit = "tokens_per_s" if r["what"] == "generate" else "calls_per_s"
        for engine, e in r["engines"].items():
            same = (
                f"{e['same_as_charter']} of {r['requests']} texts"
                if r["what"] == "generate"
                else f"{e['same_picks']} of {r['requests']} picks, log P(A) within {e['max_logprob_diff']}"
            )
            rate = f"{e[unit]} {'tokens' if unit == 'tokens_per_s' else 'calls'}/s"
            print(
                f"| {r['what']} | {r['batch']} | {engine} | {rate} | "
                f"{e[unit] / r['engines']['charter'][unit]:.2f}x | {same} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
