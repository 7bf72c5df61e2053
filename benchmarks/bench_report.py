"""How long `charter status` and the run report take on a large run directory.

Builds a run store with N prompts (critique chains of 2 rounds, one revision pair each, a both-order judgment
over 2 principles, a preference parquet of N rows) from format-correct synthetic records, then times
`status()` and `write_report()` (plots included) on it.

    .venv/bin/python benchmarks/bench_report.py --n 1000 10000
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from charter.pipeline.report import write_report
from charter.pipeline.status import status
from charter.pipeline.store import RunStore

PRINCIPLES = [f"principle-{i}" for i in range(12)]
WORDS = "the a response is helpful harmless and honest model should refuse explain safely consider".split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _judgment(rng: random.Random, pair_id: str) -> dict:
    per = []
    for pid in rng.sample(PRINCIPLES, 2):
        ab, ba = rng.random(), rng.random()
        per.append({"principle_id": pid, "p_a": (ab + ba) / 2, "p_a_ab": ab, "p_a_ba": ba,
                    "consistent": (ab > 0.5) == (ba > 0.5), "rationale_ab": None, "rationale_ba": None})
    ab, ba = sum(p["p_a_ab"] for p in per) / 2, sum(p["p_a_ba"] for p in per) / 2
    return {"pair_id": pair_id, "status": "ok", "mode": "logprobs", "orders": "both", "p_a": (ab + ba) / 2,
            "p_a_ab": ab, "p_a_ba": ba, "position_consistent": (ab > 0.5) == (ba > 0.5), "principles": per,
            "principle_ids": [p["principle_id"] for p in per], "judge_model": "scripted:cai",
            "prompt_tokens": 800, "completion_tokens": 4, "error": None, "raw": None}


def build_run(run_dir: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with RunStore(run_dir, create=True) as store:
        store.set_meta(run_id="bench", created_at="2025-01-01T00:00:00Z",
                       constitution={"name": "bench", "version": "1", "hash": "0" * 64, "principles": PRINCIPLES},
                       models={"policy": "scripted:cai", "critic": "scripted:cai", "judge": "scripted:cai"},
                       prompt_counts={"prompts_total": n, "prompts_used": n})
        prompts = [(f"q{i}", i, [{"role": "user", "content": _text(rng, 20)}], "bench") for i in range(n)]
        store.put_prompts(prompts)
        chains, pairs, judgments, prefs = [], [], [], []
        for pid, _, messages, _ in prompts:
            initial, final = _text(rng, rng.randint(20, 80)), _text(rng, rng.randint(20, 80))
            rounds = [{"principle_id": rng.choice(PRINCIPLES), "critique": _text(rng, 30), "revision": final}
                      for _ in range(2)]
            chains.append(((pid,), {"prompt_id": pid, "prompt": messages, "initial": initial, "rounds": rounds,
                                    "final": final, "policy_model": "scripted:cai", "critic_model": "scripted:cai",
                                    "prompt_tokens": 300, "completion_tokens": 200}))
            pair = {"pair_id": f"p{pid}", "prompt_id": pid, "kind": "revision", "prompt": messages, "a": initial,
                    "b": final, "a_source": "initial", "b_source": "revision",
                    "a_model": "scripted:cai", "b_model": "scripted:cai"}
            pairs.append(((pair["pair_id"], pid, "revision"), pair))
            judgment = _judgment(rng, pair["pair_id"])
            judgments.append(((pair["pair_id"], "ok"), judgment))
            a_wins = judgment["p_a"] >= 0.5
            prefs.append({"prompt": messages, "chosen": [{"role": "assistant", "content": initial if a_wins else final}],
                          "rejected": [{"role": "assistant", "content": final if a_wins else initial}],
                          "p_chosen": max(judgment["p_a"], 1 - judgment["p_a"]), "pair_id": pair["pair_id"],
                          "pair_kind": "revision", "principle_ids": judgment["principle_ids"]})
        store.put_records("chains", ("prompt_id",), chains)
        store.put_records("pairs", ("pair_id", "prompt_id", "kind"), pairs)
        store.put_records("judgments", ("pair_id", "status"), judgments)
        store.add_usage([{"role": r, "model": "scripted:cai", "calls": n, "cached": 0, "prompt_tokens": 300 * n,
                          "completion_tokens": 50 * n, "cost_usd": 0.0} for r in ("policy", "critic", "judge")])
        for stage in ("critique", "judge"):
            store.set_stage(stage, "done")
    (run_dir / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(prefs), run_dir / "data" / "preferences.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    print("| prompts (= pairs) | status() s | write_report() s | report.html KiB | peak RSS MiB (process) |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            build_run(run_dir, n)
            t0 = time.perf_counter()
            status(run_dir)
            t1 = time.perf_counter()
            _, html = write_report(run_dir)
            t2 = time.perf_counter()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"| {n:,} | {t1 - t0:.2f} | {t2 - t1:.2f} | {html.stat().st_size / 1024:.0f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
