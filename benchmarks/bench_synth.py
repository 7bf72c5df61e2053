"""Prompt synthesis: dedup time at 10,000 and 100,000 prompts, and synthesis throughput.

Dedup input: the shared red-team and helpfulness prompts (../shared/data/prompts, ~1,200 real prompts) and the
bundled set, grown to N by seeded variants: exact copies, case/punctuation changes (normalised duplicates),
a few inserted words (ROUGE-L near-duplicates), prompts spliced from two others with filler words, and
word-salad prompts (new). The same N prompts go through `charter.synth.dedup.Deduper` (MiniLM embeddings,
faiss exact inner-product search in blocks of 1,024, ROUGE-L against the 10 nearest); embedding time and
filtering time are reported apart. Side by side at 2,000 prompts: the naive all-pairs ROUGE-L pass.

Throughput: `charter synth` with a scripted writer at 50 ms per call (an API stand-in, concurrency 16), and
with the embedded SmolLM2-135M on CPU.

    .venv/bin/python benchmarks/bench_synth.py --sizes 10000 100000 --naive 2000 --embedded 24
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

from charter.prompts import PromptsConfig, load_prompts

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompts"
FILLER = ("please", "quickly", "in detail", "for me", "step by step", "if you can", "exactly", "today")


def real_prompts() -> list[str]:
    texts = [p.messages[-1].content for p in load_prompts(PromptsConfig(bundled=True)).rows]
    for path in sorted(SHARED.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            value = row.get("prompt") or row.get("turns") or row.get("text")
            if isinstance(value, list):
                value = value[0]
            if isinstance(value, str) and value.strip():
                texts.append(" ".join(value.split()))
    return list(dict.fromkeys(texts))


def grow(real: list[str], n: int, seed: int = 0) -> list[str]:
    """n prompts: seeded variants of the real ones (copies, near-copies) and new combinations."""
    rng = random.Random(seed)
    vocab = sorted({w for t in real for w in t.lower().split() if w.isalpha()})
    out = []
    for _ in range(n):
        base = rng.choice(real)
        roll = rng.random()
        if roll < 0.10:
            out.append(base)
        elif roll < 0.20:
            out.append(base.upper() if rng.random() < 0.5 else base.rstrip("?.!") + " ?")
        elif roll < 0.35:
            words = base.split()
            for _ in range(2):
                words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
            out.append(" ".join(words))
        elif roll < 0.60:
            other = rng.choice(real).split()
            mine = base.split()
            out.append(" ".join(mine[: len(mine) // 2] + [rng.choice(FILLER)] + other[len(other) // 2 :]))
        else:
            out.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 18))).capitalize() + "?")
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_dedup(texts: list[str]) -> dict:
    from charter.providers.embeddings import embed
    from charter.synth.dedup import Deduper

    started = time.perf_counter()
    vectors = embed(texts, batch_size=256)
    embed_s = time.perf_counter() - started
    cached = {t: v for t, v in zip(texts, vectors)}
    dedup = Deduper(
        rouge_threshold=0.7,
        cosine_threshold=0.9,
        neighbours=10,
        embed=lambda batch: __import__("numpy").stack([cached[t] for t in batch]),
    )
    started = time.perf_counter()
    verdicts = dedup.check(texts)
    check_s = time.perf_counter() - started
    reasons: dict[str, int] = {}
    for v in verdicts:
        reasons[v or "kept"] = reasons.get(v or "kept", 0) + 1
    return {
        "n": len(texts),
        "embed_s": round(embed_s, 1),
        "filter_s": round(check_s, 1),
        "per_1k_filter_s": round(1000 * check_s / len(texts), 2),
        "kept": reasons.get("kept", 0),
        "reasons": reasons,
        "peak_rss_mb": round(peak_mb()),
    }


def naive_rouge(texts: list[str], threshold: float = 0.7) -> dict:
    """The Self-Instruct way: every candidate against every kept prompt, ROUGE-L only."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept: list[str] = []
    started = time.perf_counter()
    for text in texts:
        if all(scorer.score(k, text)["rougeL"].fmeasure < threshold for k in kept):
            kept.append(text)
    return {"n": len(texts), "filter_s": round(time.perf_counter() - started, 1), "kept": len(kept)}


def bench_synth_scripted(n: int) -> dict:
    import asyncio

    from charter.providers.scripted import ScriptedModel, register_script
    from charter.synth.api import synthesize_async
    from charter.synth.config import SynthConfig

    vocab = sorted({w for t in real_prompts() for w in t.lower().split() if w.isalpha()})

    def writer(messages, params) -> str:
        rng = random.Random(params.seed)
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(8, 16))).capitalize() + "?"

    register_script("bench-writer", writer)
    config = SynthConfig(writer={"model": "scripted:bench-writer"}, n=n, batch=32, concurrency=16)
    model = ScriptedModel("bench-writer", latency_s=0.05)
    out = Path("/tmp/bench_synth/scripted.jsonl")
    result = asyncio.run(synthesize_async(config, out, writer=model))
    return {
        "writer": "scripted, 50 ms/call, concurrency 16",
        "n": n,
        "kept": sum(result.achieved.values()),
        "calls": result.calls,
        "wall_s": result.wall_s,
        "calls_per_s": round(result.calls / result.wall_s, 1),
        "kept_per_s": round(sum(result.achieved.values()) / result.wall_s, 1),
        "waterfall": result.waterfall,
    }


def bench_synth_embedded(n: int) -> dict:
    from charter.synth.api import synthesize
    from charter.synth.config import SynthConfig

    config = SynthConfig(
        writer={
            "model": "local:smollm2-135m-instruct",
            "options": {"batch_size": 16},
            "params": {"temperature": 1.0, "max_tokens": 64},
        },
        n=n,
        batch=8,
        concurrency=16,
    )
    result = synthesize(config, Path("/tmp/bench_synth/embedded.jsonl"), cache=None)
    return {
        "writer": "local:smollm2-135m-instruct (CPU, batch 16, 64 tokens)",
        "n": n,
        "kept": sum(result.achieved.values()),
        "calls": result.calls,
        "wall_s": result.wall_s,
        "calls_per_s": round(result.calls / result.wall_s, 2),
        "kept_per_s": round(sum(result.achieved.values()) / result.wall_s, 3),
        "waterfall": result.waterfall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--naive", type=int, default=2000)
    parser.add_argument("--scripted", type=int, default=400)
    parser.add_argument("--embedded", type=int, default=0)
    args = parser.parse_args()
    real = real_prompts()
    print(json.dumps({"real_prompts": len(real)}))
    if args.naive:
        texts = grow(real, args.naive)
        print(json.dumps({"naive_all_pairs_rouge": naive_rouge(texts), "deduper": bench_dedup(texts)}))
    for n in args.sizes:
        print(json.dumps({"deduper": bench_dedup(grow(real, n))}), flush=True)
    if args.scripted:
        print(json.dumps({"synth": bench_synth_scripted(args.scripted)}), flush=True)
    if args.embedded:
        print(json.dumps({"synth": bench_synth_embedded(args.embedded)}), flush=True)


if __name__ == "__main__":
    main()
