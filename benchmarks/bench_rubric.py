"""One-call rubric (judge mode `rubric`) against per-principle scores (mode `score`) on the shared HHH pairs.

    .venv/bin/python benchmarks/bench_rubric.py [--limit 117] [--local-limit 6] [--principles 3]

The same seeded rows (the human-preferred response drawn as `a` or `b` per row, as `charter agreement eval` does),
the same principles per pair, judged in each mode with a fresh meter and no call cache: calls, prompt and
completion tokens, the cost at an illustrative price (2.50 / 10.00 USD per million input / output tokens, the list
price of a mid-size hosted judge, applied to the tokens each judge counts: words for the scripted judge, the
tokenizer's tokens for the local one; neither bills anything itself), failed judgments, and
agreement with the human label (ties count as half; exact Clopper-Pearson interval on the decided rows).

Judges: `scripted:length-rater` (a consistent scripted judge that scores a response by its length, the same score
under every principle, in both modes: the agreement must come out equal, only the calls and tokens differ) and the
embedded `local:smollm2-135m-instruct` on a small slice (a 135M model is at chance on these pairs; the local
provider has no constrained decoding, so a rubric reply it fails to write as JSON is a recorded failure).
Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from charter.agreement.evaluate import load_pairs_file, select, to_pair
from charter.constitutions import load_constitution
from charter.judge.pairwise import judge_many
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import read_rating, read_rubric_ids, read_scale
from charter.providers import get_model
from charter.providers.base import Messages, SamplingParams
from charter.providers.scripted import register_script
from charter.providers.usage import Price, UsageMeter
from charter.stats.intervals import exact_interval

HHH = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "human_preferences" / "hhh_harmless_helpful.jsonl"
)
PRICE = Price(input=2.5, output=10.0)


def _length_score(response: str, scale: int) -> int:
    return min(scale, 1 + len(response.split()) // 15)


def _length_rater(messages: Messages, params: SamplingParams) -> str:
    last = messages[-1].content
    rated = read_rating(last)
    if rated is None:
        return "A"
    score = _length_score(rated, read_scale(last))
    ids = read_rubric_ids(last)
    return str(score) if ids is None else json.dumps({pid: score for pid in ids})


register_script("length-rater", _length_rater)


async def _measure(judge: str, settings: JudgeSettings, pairs: list, humans: dict[str, str]) -> dict:
    meter = UsageMeter()
    model = get_model(judge, meter=meter, role="judge")
    constitution = load_constitution("harmless")
    start = time.perf_counter()
    judgments = [j async for j in judge_many(model, constitution, pairs, settings, seed=0, concurrency=8)]
    wall = time.perf_counter() - start
    await model.aclose()
    ok = [(j.pair_id, j.p_a) for j in judgments if j.status == "ok" and j.p_a is not None]
    points = sum(0.5 if p == 0.5 else float((p > 0.5) == (humans[pid] == "a")) for pid, p in ok)
    decided = [(pid, p) for pid, p in ok if p != 0.5]
    right = sum((p > 0.5) == (humans[pid] == "a") for pid, p in decided)
    tally = [t for (role, _), t in meter.tallies.items() if role == "judge"]
    return {
        "calls": sum(t.calls for t in tally),
        "prompt_tokens": sum(t.prompt_tokens for t in tally),
        "completion_tokens": sum(t.completion_tokens for t in tally),
        "cost": sum(t.prompt_tokens * PRICE.input + t.completion_tokens * PRICE.output for t in tally) / 1e6,
        "failed": len(judgments) - len(ok),
        "rows": len(judgments),
        "agree_ties_half": points / len(ok) if ok else None,
        "agree_decided": (right, len(decided)),
        "wall_s": wall,
    }


def _row(judge: str, how: str, m: dict) -> str:
    right, n = m["agree_decided"]
    if n:
        low, high = exact_interval(right, n)
        decided = f"{right / n:.3f} [{low:.3f}, {high:.3f}] (n={n})"
    else:
        decided = "n/a (n=0)"
    half = "n/a" if m["agree_ties_half"] is None else f"{m['agree_ties_half']:.3f}"
    return (
        f"| `{judge}` | {how} | {m['rows'] - m['failed']}/{m['rows']} | {m['calls']} | {m['calls'] / m['rows']:.1f} "
        f"| {m['prompt_tokens']} | {m['completion_tokens']} | {m['cost']:.4f} | {decided} | {half} "
        f"| {m['wall_s']:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="One-call rubric against per-principle scores (HHH).")
    parser.add_argument("--limit", type=int, default=117, help="rows for the scripted judge")
    parser.add_argument("--local-limit", type=int, default=6, help="rows for the embedded model (0: skip it)")
    parser.add_argument("--principles", type=int, default=3, help="principles per pair")
    args = parser.parse_args()
    rows = load_pairs_file(HHH)
    print(
        "| judge | mode | judged | calls | calls / pair | prompt tokens | completion tokens | cost USD (2.50/10.00) "
        "| agreement, decided [CP 95%] | agreement, ties half | wall s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    plans = [("scripted:length-rater", args.limit, [("score", "verdict"), ("rubric", "verdict")])]
    if args.local_limit:
        plans.append(
            (
                "local:smollm2-135m-instruct",
                args.local_limit,
                [("score", "logprobs"), ("score", "verdict"), ("rubric", "verdict")],
            )
        )
    for judge, limit, modes in plans:
        built = [to_pair(r, 0) for r in select(rows, limit, 0)]
        pairs, humans = [p for p, _ in built], {p.pair_id: h for p, h in built}
        for mode, rating in modes:
            settings = JudgeSettings(mode=mode, rating=rating, principles_per_pair=args.principles, max_retries=0)
            how = f"{mode} ({rating})" if mode == "score" else mode
            print(_row(judge, how, asyncio.run(_measure(judge, settings, pairs, humans))), flush=True)


if __name__ == "__main__":
    main()
