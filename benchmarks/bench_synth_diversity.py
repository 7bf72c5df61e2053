"""Generation that keeps diversity: `charter synth` with its tail-reaching settings against a random subset of the
same size of what the writer writes.

The writer is simulated, with a known head-heavy distribution over real prompts: the shared red-team prompts
(DoNotAnswer + HarmBench) and MT-Bench, each source's prompts ranked in a seeded order with Zipf weights
1 / rank^1.1, sampled at temperature T as weights^(1/T) (a cold writer returns to its head). Three in ten outputs
are near-copies ("Please, ..." or "... Explain briefly."). A Self-Instruct call shows seeds of one bucket (the
writer then draws from that bucket's source); with a single bucket it draws from the pool of both sources, in
proportion to their sizes.

For N kept prompts, each arm over `--seeds` seeds (the synth seed, which seeds every call):

- `random`: N of the writer's outputs at its temperature (0.7), no filter (a random subset of the same size);
- `dedup`: `charter synth` at T = 0.7 with its filters (exact, ROUGE-L 0.7, embedding cosine 0.9);
- `schedule`: the same with `temperatures: [0.7, 1.0, 1.3]` by call;
- `schedule+quotas`: and one quota per source (`seeds.category_column: source`, `mix: {red-team: 1, mt-bench: 1}`).

Figures (mean over the seeds, 95% t-interval of the mean): the Vendi score of the kept prompts' MiniLM-L6
embeddings, distinct-2, the distinct real prompts behind them, the share from MT-Bench (the small source), the
coverage radius of the pool (the largest cosine distance from a pool prompt to its nearest kept one; lower covers
better), and the writer calls it took to keep N. Embeddings are MiniLM-L6 (`--embedder hashed`: the hashed test
embedder, for a quick look).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_synth_diversity.py --data ../shared/data --n 100 --seeds 10
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diversity import mean_interval  # noqa: E402 - the t-interval of the selection benchmark

SOURCES = {
    "red-team": ("red_team_donotanswer.jsonl", "red_team_harmbench.jsonl"),
    "mt-bench": ("helpful_mtbench.jsonl",),
}
ZIPF = 1.1
#: the writer's own temperature (a common API default); the schedule goes above it
WRITER_T = 0.7
NEAR = ("Please, {}", "{} Explain briefly.")


def load(data: Path) -> dict[str, list[str]]:
    out = {}
    for source, names in SOURCES.items():
        texts = []
        for name in names:
            for line in (data / "prompts" / name).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    texts.append(" ".join(json.loads(line)["prompt"].split()))
        out[source] = list(dict.fromkeys(texts))
    return out


class Writer:
    """The simulated writer: a seeded Zipf head per source, sharpened or flattened by the temperature."""

    def __init__(self, pools: dict[str, list[str]]) -> None:
        self.pools = pools
        self.weights = {}
        for source, texts in pools.items():
            ranks = np.random.default_rng(7).permutation(len(texts)) + 1
            self.weights[source] = 1.0 / ranks.astype(float) ** ZIPF
        self.all = [(s, i) for s, texts in pools.items() for i in range(len(texts))]

    def write(self, source: str | None, seed: int, temperature: float) -> str:
        rng = np.random.default_rng(seed)
        if source is None:  # one bucket: a source in proportion to its size
            sizes = np.array([len(self.pools[s]) for s in self.pools], dtype=float)
            source = list(self.pools)[rng.choice(len(sizes), p=sizes / sizes.sum())]
        w = self.weights[source] ** (1.0 / max(temperature, 1e-3))
        text = self.pools[source][rng.choice(len(w), p=w / w.sum())]
        if rng.random() < 0.3:
            text = NEAR[int(rng.integers(2))].format(text)
        return text

    def script(self, messages, params) -> str:  # noqa: ANN001 - the scripted provider's signature
        found = re.search(r"\(category: ([\w-]+)\)", messages[-1].content)
        return self.write(found.group(1) if found else None, params.seed, params.temperature)


def base_prompt(text: str) -> str:
    for form in NEAR:
        head, tail = form.split("{}")
        if text.startswith(head) and text.endswith(tail) and len(text) > len(head) + len(tail):
            text = text[len(head) : len(text) - len(tail)] if tail else text[len(head) :]
    return text


def seeds_file(pools: dict[str, list[str]], path: Path) -> Path:
    rows = [{"prompt": t, "source": s} for s, texts in pools.items() for t in texts[-8:]]  # tail prompts, as seeds
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def kept_prompts(arm: str, writer: Writer, seeds: Path, n: int, seed: int, out: Path) -> tuple[list[str], int]:
    from charter.prompts import PromptsConfig
    from charter.providers.scripted import ScriptedModel
    from charter.synth.api import synthesize
    from charter.synth.config import SynthConfig

    if arm == "random":
        rng = random.Random(seed)
        return [writer.write(None, rng.randrange(2**31), WRITER_T) for _ in range(n)], n
    by_source = arm == "schedule+quotas"
    config = SynthConfig(
        writer={"model": "scripted:bench-writer", "params": {"temperature": WRITER_T, "max_tokens": 64}},
        seeds=PromptsConfig(path=str(seeds), category_column="source" if by_source else "no-such-column"),
        methods=["self_instruct"],
        n=n,
        mix={"red-team": 1, "mt-bench": 1} if by_source else None,
        temperatures=[0.7, 1.0, 1.3] if arm.startswith("schedule") else None,
        filters={"embedding_model": "bench", "max_chars": 4000},
        max_calls_per_prompt=20,
        include_seeds=False,
        seed=seed,
    )
    result = synthesize(config, out / f"{arm}-{seed}.jsonl", writer=ScriptedModel("bench-writer"))
    return [row["prompt"] for row in result.rows], result.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--embedder", choices=["minilm", "hashed"], default="minilm")
    args = parser.parse_args()

    from charter.preference.selection import coverage_radius
    from charter.providers.embeddings import EMBEDDERS, embed
    from charter.providers.scripted import register_script
    from charter.stats.diversity import distinct_n, vendi_score

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.embeddings import hashed_embed

    cache: dict[str, np.ndarray] = {}
    model = embed if args.embedder == "minilm" else lambda texts: hashed_embed(texts, dim=384)

    def cached(texts):  # noqa: ANN001, ANN202
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            cache.update(zip(new, np.asarray(model(new))))
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)

    EMBEDDERS["bench"] = cached
    pools = load(args.data)
    writer = Writer(pools)
    register_script("bench-writer", writer.script)
    pool = [t for texts in pools.values() for t in texts]
    mt = set(pools["mt-bench"])
    started = time.perf_counter()
    pool_vectors = cached(pool)
    took = time.perf_counter() - started
    print(f"pool: {len(pool)} prompts ({len(pools['mt-bench'])} MT-Bench), embedded in {took:.1f} s")
    arms = ["random", "dedup", "schedule", "schedule+quotas"]
    figures: dict[str, dict[str, list[float]]] = {a: {} for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        seeds = seeds_file(pools, Path(tmp) / "seeds.jsonl")
        for arm in arms:
            started = time.perf_counter()
            for seed in range(args.seeds):
                texts, calls = kept_prompts(arm, writer, seeds, args.n, seed, Path(tmp))
                assert len(texts) == args.n, (arm, seed, len(texts))
                bases = [base_prompt(t) for t in texts]
                vectors = cached(texts)
                found = figures[arm]
                for key, value in (
                    ("vendi", vendi_score(vectors)),
                    ("calls", float(calls)),
                    ("distinct_2", distinct_n(texts, 2)),
                    ("distinct_prompts", float(len(set(bases)))),
                    ("mt_bench_share", sum(b in mt for b in bases) / len(bases)),
                    (
                        "radius",
                        coverage_radius(
                            np.vstack([pool_vectors, vectors]), list(range(len(pool), len(pool) + len(texts)))
                        ),
                    ),
                ):
                    found.setdefault(key, []).append(float(value))
            print(f"{arm}: {time.perf_counter() - started:.1f} s for {args.seeds} seeds")
    print()
    head = "Vendi score | distinct-2 | distinct real prompts | MT-Bench share | coverage radius | writer calls"
    print(f"| arm (N = {args.n}, {args.seeds} seeds) | {head} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arm in arms:
        cells = []
        for key, digits in (
            ("vendi", 2),
            ("distinct_2", 3),
            ("distinct_prompts", 1),
            ("mt_bench_share", 3),
            ("radius", 3),
            ("calls", 1),
        ):
            mean, low, high = mean_interval(figures[arm][key])
            cells.append(f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]")
        print(f"| {arm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
