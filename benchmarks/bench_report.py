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

from charter.constitutions import Constitution
from charter.pipeline.config import RunConfig
from charter.pipeline.report.write import write_report
from charter.pipeline.settings import dataset_settings
from charter.pipeline.status.record import status
from charter.preference import dataset
from charter.records import Chain, CritiqueRound, Judgment, Message, Pair, Prompt, UsageRow, Vote
from charter.runs.counts import set_stage
from charter.runs.history import record_config
from charter.runs.items import put_chains, put_judgments, put_pairs, put_prompts
from charter.runs.store import RunStore
from charter.runs.usage import add_usage

PRINCIPLES = [f"principle-{i}" for i in range(12)]
WORDS = "the a response is helpful harmless and honest model should refuse explain safely consider".split()
CONSTITUTION = Constitution.model_validate(
    {
        "name": "bench",
        "principles": [
            {"id": p, "description": p, "critique_request": "c", "revision_request": "r", "comparison": "which?"}
            for p in PRINCIPLES
        ],
    }
)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _judgment(rng: random.Random, pair_id: str, fingerprint: str) -> Judgment:
    votes = []
    for pid in rng.sample(PRINCIPLES, 2):
        ab, ba = rng.random(), rng.random()
        votes.append(
            Vote(principle_id=pid, p_a=(ab + ba) / 2, p_a_ab=ab, p_a_ba=ba, consistent=(ab > 0.5) == (ba > 0.5))
        )
    ab, ba = sum(v.p_a_ab for v in votes) / 2, sum(v.p_a_ba or 0.0 for v in votes) / 2
    return Judgment(
        pair_id=pair_id,
        fingerprint=fingerprint,
        status="ok",
        mode="logprobs",
        orders="both",
        judge_model="scripted:cai",
        principle_ids=[v.principle_id for v in votes],
        p_a=(ab + ba) / 2,
        p_a_ab=ab,
        p_a_ba=ba,
        position_consistent=(ab > 0.5) == (ba > 0.5),
        principles=votes,
        prompt_tokens=800,
        completion_tokens=4,
    )


def build_run(run_dir: Path, n: int, seed: int = 0) -> None:
    """A run store of N prompts as the pipeline leaves it (items under the settings' fingerprints), and its dataset."""
    rng = random.Random(seed)
    config = RunConfig.model_validate(
        {
            "policy": "scripted:cai",
            "judge": {"model": "scripted:cai", "principles_per_pair": 2},
            "critique": {"rounds": 2},
            "filters": {"drop_inconsistent": False},
        }
    )
    settings = dataset_settings(config, CONSTITUTION, "bench", "2025-01-01T00:00:00Z")
    fp = settings.fingerprints
    with RunStore(run_dir, create=True) as store:
        store.set_meta(
            run_id="bench",
            created_at="2025-01-01T00:00:00Z",
            settings=settings,
            constitution=settings.constitution,
            prompt_counts={"prompts_total": n, "prompts_used": n},
        )
        record_config(store, config.model_dump(mode="json"), fp)
        prompts = [
            Prompt(prompt_id=f"q{i}", messages=[Message(role="user", content=_text(rng, 20))], source="bench")
            for i in range(n)
        ]
        put_prompts(store, prompts)
        chains, pairs, judgments = [], [], []
        for prompt in prompts:
            initial, final = _text(rng, rng.randint(20, 80)), _text(rng, rng.randint(20, 80))
            rounds = [
                CritiqueRound(principle_id=rng.choice(PRINCIPLES), critique=_text(rng, 30), revision=final)
                for _ in range(2)
            ]
            chains.append(
                Chain(
                    prompt_id=prompt.prompt_id,
                    prompt=prompt.messages,
                    initial=initial,
                    rounds=rounds,
                    final=final,
                    policy_model="scripted:cai",
                    critic_model="scripted:cai",
                    prompt_tokens=300,
                    completion_tokens=200,
                    fingerprint=fp.critique or "",
                )
            )
            pairs.append(
                Pair(
                    pair_id=f"p{prompt.prompt_id}",
                    prompt_id=prompt.prompt_id,
                    kind="revision",
                    prompt=prompt.messages,
                    a=initial,
                    b=final,
                    a_source="initial",
                    b_source="revision",
                    a_model="scripted:cai",
                    b_model="scripted:cai",
                    source_fingerprint=fp.critique,
                )
            )
            judgments.append(_judgment(rng, pairs[-1].pair_id, fp.judge))
        put_chains(store, chains)
        put_pairs(store, pairs)
        put_judgments(store, judgments)
        add_usage(
            store,
            [
                UsageRow(role=r, model="scripted:cai", calls=n, prompt_tokens=300 * n, completion_tokens=50 * n)
                for r in ("policy", "critic", "judge")
            ],
        )
        for stage in ("critique", "judge"):
            set_stage(store, stage, "done")
        dataset.write(store, settings)


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
