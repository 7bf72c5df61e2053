"""Dataset diversity: what `filters.diversity` keeps against a random subset of the same size, and what the
selection and the measurement cost at 100,000 rows.

Quality: the shared red-team prompts (red_team_donotanswer.jsonl + red_team_harmbench.jsonl, 1,139 prompts) and
the MT-Bench prompts (helpful_mtbench.jsonl, 80), embedded once with MiniLM-L6. For each seed, N prompts picked by
greedy k-center and by the greedy Vendi maximiser (seeded first pick), against N drawn at random with the same
seed: the Vendi score (order 1, MiniLM cosine kernel), distinct-2 and the coverage radius (the largest cosine
distance from a prompt of the pool to its nearest kept one). Mean over the seeds with a 95% t-interval of the mean.

Scale (each part in a process of its own, for its peak RSS): 100,000 synthetic preference rows (random words,
prompt 10-30 words, chosen 40-120, rejected 20-80, drawn from the shared prompts' vocabulary) in a JSONL file,
measured by `charter.diversity` with its defaults (10,000-text samples, 1,000 for self-BLEU and MiniLM) and without
embeddings; and `filters.diversity` over the same rows as a
dataset write does it (`DiverseSelection`: texts to a scratch SQLite file, embedded in blocks, N picked), with
the hashed 384-dimension embedder of `tests.support.embeddings` standing in for MiniLM (the same d, so the same
selection cost; MiniLM's own rate on the real prompts is reported beside it).

    .venv/bin/python benchmarks/bench_diversity.py --data ../shared/data --rows 100000 --size 1000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POOLS = {
    "red team (DoNotAnswer + HarmBench)": ("red_team_donotanswer.jsonl", "red_team_harmbench.jsonl"),
    "MT-Bench": ("helpful_mtbench.jsonl",),
}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompts(data: Path, names: tuple[str, ...]) -> list[str]:
    out = []
    for name in names:
        for line in (data / "prompts" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(" ".join(json.loads(line)["prompt"].split()))
    return list(dict.fromkeys(out))


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    a = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), float(a.mean() - half), float(a.mean() + half)


def pick(method: str, vectors: np.ndarray, n: int, seed: int) -> list[int]:
    from charter.preference.selection import k_center, vendi_greedy

    if method == "random":
        return [int(i) for i in np.random.default_rng(seed).choice(len(vectors), n, replace=False)]
    return (k_center if method == "k_center" else vendi_greedy)(vectors, n, seed)


def pool_figures(texts: list[str], vectors: np.ndarray, n: int, seeds: int) -> dict:
    """Per method, each figure's mean over the seeds with its 95% t-interval."""
    from charter.preference.selection import coverage_radius
    from charter.stats.diversity import distinct_n, vendi_score

    rows = {}
    for method in ("k_center", "vendi", "random"):
        figures: dict[str, list[float]] = {"vendi": [], "distinct_2": [], "radius": []}
        for seed in range(seeds):
            chosen = pick(method, vectors, n, seed)
            figures["vendi"].append(vendi_score(vectors[chosen]) or 0.0)
            figures["distinct_2"].append(distinct_n([texts[i] for i in chosen], 2) or 0.0)
            figures["radius"].append(coverage_radius(vectors, chosen) or 0.0)
        rows[method] = {k: mean_interval(v) for k, v in figures.items()}
    return rows


def quality(data: Path, sizes: dict[str, int], seeds: int) -> dict:
    from charter.providers.embeddings import embed
    from charter.stats.diversity import vendi_score

    results, rates = {}, []
    for pool, names in POOLS.items():
        texts = prompts(data, names)
        embed(texts[:8])  # the model loaded before the clock starts
        start = time.perf_counter()
        vectors = np.asarray(embed(texts))
        rates.append(len(texts) / (time.perf_counter() - start))
        methods = pool_figures(texts, vectors, sizes[pool], seeds)
        results[pool] = {"pool": len(texts), "n": sizes[pool], "methods": methods, "pool_vendi": vendi_score(vectors)}
    return {"pools": results, "minilm_texts_per_s": float(np.mean(rates))}


def synthetic_rows(path: Path, rows: int, words: list[str], seed: int = 0) -> None:
    """Rows of random words drawn from `words` (the shared prompts' vocabulary: real words, tokenised as text is)."""
    rng = random.Random(seed)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choices(words, k=rng.randint(low, high)))

    with path.open("w", encoding="utf-8") as out:
        for _ in range(rows):
            row = {
                "prompt": [{"role": "user", "content": text(10, 30)}],
                "chosen": [{"role": "assistant", "content": text(40, 120)}],
                "rejected": [{"role": "assistant", "content": text(20, 80)}],
            }
            out.write(json.dumps(row) + "\n")


def scale_measure(path: Path, embeddings: bool) -> dict:
    import charter

    before = peak_mib()
    start = time.perf_counter()
    report = charter.diversity(path, embedding_model="minilm-l6" if embeddings else None)
    seconds = time.perf_counter() - start
    chosen = report.fields["chosen"]
    return {
        "seconds": seconds,
        "peak_mib": peak_mib(),
        "peak_before_mib": before,
        "sample": chosen.sample,
        "texts": chosen.texts,
        "vendi_n": chosen.vendi.n,
        "self_bleu_n": chosen.self_bleu.n,
    }


def scale_select(path: Path, size: int, method: str) -> dict:
    from types import SimpleNamespace

    from charter.preference.config import DiversityFilter
    from charter.preference.selection import DiverseSelection
    from charter.providers.embeddings import EMBEDDERS

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.embeddings import hashed_embed

    EMBEDDERS["minilm-l6"] = lambda texts: hashed_embed(texts, dim=384)
    before = peak_mib()
    config = DiversityFilter(size=size, method=method, field="chosen")  # type: ignore[arg-type]
    selection = DiverseSelection(path.with_suffix(f".{method}.sqlite"), config)
    start = time.perf_counter()
    with path.open(encoding="utf-8") as rows:
        for line in rows:  # what `add` reads of a preference row: the field and whether it is calibrated
            row = json.loads(line)
            selection.add(SimpleNamespace(chosen=row["chosen"], p_chosen_calibrated=None))  # type: ignore[arg-type]
    counts: dict[str, int] = {}
    kept = selection.choose(None, counts)
    seconds = time.perf_counter() - start
    selection.close()
    return {"seconds": seconds, "peak_mib": peak_mib(), "peak_before_mib": before, "kept": len(kept or [])}


def estimator_costs(path: Path) -> dict:
    """CPU seconds of each estimator at the default sample sizes, on the `chosen` texts of the rows (10,000 for
    distinct-n, compression and lengths; 1,000 for self-BLEU and the embeddings)."""
    from charter.providers.embeddings import embed
    from charter.stats import diversity as d

    texts = []
    with path.open(encoding="utf-8") as rows:
        for line in rows:
            texts.append(json.loads(line)["chosen"][0]["content"])
            if len(texts) == 10_000:
                break
    few = texts[:1_000]
    out: dict[str, float] = {}

    def timed(name: str, work: Any) -> Any:  # CPU seconds of this process: what a shared machine does not inflate
        start = time.process_time()
        value = work()
        out[name] = round(time.process_time() - start, 3)
        return value

    timed("distinct-1/2/3 (10,000)", lambda: [d.distinct_n(texts, n) for n in (1, 2, 3)])
    timed("compression ratio (10,000)", lambda: d.compression_ratio(texts))
    timed("length spread (10,000)", lambda: d.length_spread(texts))
    timed("self-BLEU with its jackknife interval (1,000)", lambda: d.bleu_figure(few))
    timed("MiniLM-L6: load the model", lambda: embed(["warm up"]))
    vectors = timed("MiniLM-L6: embed (1,000)", lambda: embed(few))
    timed("Vendi score (1,000 x 384)", lambda: d.vendi_score(vectors))
    timed("mean pairwise cosine (1,000 x 384)", lambda: d.mean_cosine(vectors))
    return out


def run_cost(run_dir: Path) -> dict:
    """CPU seconds the dataset diversity adds to a finished run's process, part by part, after what the run has
    loaded already (torch, transformers, the local provider): the figures without embeddings, importing
    sentence-transformers, loading MiniLM-L6, and the figures with embeddings."""
    import importlib

    out: dict[str, float] = {}

    def timed(name: str, work: Any) -> Any:
        start = time.process_time()
        value = work()
        out[name] = round(time.process_time() - start, 3)
        return value

    timed(
        "(already loaded by the run: torch, transformers, the local provider)",
        lambda: [importlib.import_module(m) for m in ("charter.providers.local", "transformers")],
    )
    from charter.preference.diversity import diversity
    from charter.providers.embeddings import _model

    timed("figures without embeddings", lambda: diversity(run_dir, embedding_model=None))
    timed("import sentence_transformers", lambda: importlib.import_module("sentence_transformers"))
    timed("load MiniLM-L6", lambda: _model("minilm-l6"))
    timed("figures with embeddings (model loaded)", lambda: diversity(run_dir))
    return out


def in_process(part: str, *args: str) -> dict:
    """One scale part in a fresh process (its own peak RSS)."""
    done = subprocess.run(
        [sys.executable, __file__, "--part", part, *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n-red-team", type=int, default=100)
    parser.add_argument("--n-mtbench", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1_000)
    parts = [
        "all",
        "measure",
        "measure-without-embeddings",
        "select-k_center",
        "select-vendi",
        "estimators",
        "rows",
        "run-cost",
    ]
    parser.add_argument("--part", choices=parts, default="all")
    parser.add_argument("--file", type=Path, default=Path("/tmp/bench_diversity_rows.jsonl"))
    args = parser.parse_args()
    if args.part == "rows":  # only write the rows file (for the parts run one at a time)
        vocabulary = sorted({w for pool in POOLS.values() for t in prompts(args.data, pool) for w in t.split()})
        synthetic_rows(args.file, args.rows, vocabulary)
        return
    if args.part == "run-cost":  # --file: a finished run directory (the quickstart's, say)
        print(json.dumps(run_cost(args.file)))
        return
    if args.part == "estimators":
        print(json.dumps(estimator_costs(args.file)))
        return
    if args.part.startswith("measure"):
        print(json.dumps(scale_measure(args.file, args.part == "measure")))
        return
    if args.part.startswith("select-"):
        print(json.dumps(scale_select(args.file, args.size, args.part.removeprefix("select-"))))
        return
    # the scale parts first, from a parent that has loaded no model (a child's peak RSS starts from its parent's)
    vocabulary = sorted({w for pool in POOLS.values() for t in prompts(args.data, pool) for w in t.split()})
    synthetic_rows(args.file, args.rows, vocabulary)
    out = {}
    for part in ("measure", "measure-without-embeddings", "select-k_center", "select-vendi"):
        out[part] = in_process(part, "--file", str(args.file), "--size", str(args.size))
        print(part, json.dumps(out[part]), file=sys.stderr, flush=True)
    args.file.unlink(missing_ok=True)
    sizes = dict(zip(POOLS, (args.n_red_team, args.n_mtbench)))
    out["quality"] = quality(args.data, sizes, args.seeds)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
