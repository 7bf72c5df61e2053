"""`charter agreement eval`: judge an existing human-labeled pair set and measure agreement.

Each row has `prompt` (text or messages), `chosen` (the human-preferred response) and `rejected`.
Which of the two becomes the pair's `a` is drawn per row (seeded), so with `--orders one` the judge
sees the human-preferred response first half of the time, and "first shown wins" is a fair baseline.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from charter.agreement import stats
from charter.agreement.report import judge_label, longer_label
from charter.errors import DatasetError
from charter.messages import as_messages, last_text
from charter.preference.config import JudgeMode, Orders
from charter.records import Judgment, Pair
from charter.tables import iter_jsonl


def load_pairs_file(path: str | Path) -> list[dict]:
    """Rows {id, prompt (messages), chosen, rejected} from a JSONL file; one-line errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    rows = []
    for n, obj in iter_jsonl(path, DatasetError):
        where = f"{path}:{n}"
        if not {"prompt", "chosen", "rejected"} <= set(obj):
            raise DatasetError(f"{where}: expected an object with prompt, chosen and rejected")
        rows.append(
            {
                "id": str(obj.get("id", f"row-{n}")),
                "prompt": as_messages(obj["prompt"], f"{where}: prompt"),
                "chosen": last_text(as_messages(obj["chosen"], f"{where}: chosen", role="assistant")),
                "rejected": last_text(as_messages(obj["rejected"], f"{where}: rejected", role="assistant")),
            }
        )
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def select(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """A seeded subset of `limit` rows (file order kept), or all rows."""
    if not limit or limit >= len(rows):
        return rows
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [r for i, r in enumerate(rows) if i in keep]


def to_pair(row: dict, seed: int) -> tuple[Pair, str]:
    """The judge's pair for a row, and the human label in the pair's terms."""
    swap = random.Random(f"{seed}:{row['id']}").random() < 0.5
    a, b = (row["rejected"], row["chosen"]) if swap else (row["chosen"], row["rejected"])
    return Pair(pair_id=row["id"], prompt=row["prompt"], a=a, b=b), ("b" if swap else "a")


async def _judge_all(
    model: Any, constitution: Any, pairs: list[Pair], settings: Any, seed: int, concurrency: int
) -> dict[str, Judgment]:
    from charter.preference.judge import judge_many
    from charter.progress import progress_bar

    out: dict[str, Judgment] = {}
    with progress_bar() as bar:
        task = bar.add_task(f"judging ({settings.mode}, orders={settings.orders})", total=len(pairs))
        async for record in judge_many(model, constitution, pairs, settings, seed=seed, concurrency=concurrency):
            out[record.pair_id] = record
            bar.advance(task)
    return out


def summarise(
    pairs: list[Pair], humans: dict[str, str], records: dict[str, Judgment], samples: int, seed: int
) -> dict[str, Any]:
    """Agreement figures for judged rows; failed judgments are counted and left out."""
    ok = [p for p in pairs if p.pair_id in records and records[p.pair_id].status == "ok"]
    p_a = {p.pair_id: float(records[p.pair_id].p_a or 0.0) for p in ok}
    ids = np.array([p.pair_id for p in ok], dtype=object).astype(str)
    code = lambda labels: np.array([stats.CODES[x] for x in labels], dtype=int)  # noqa: E731
    human = code([humans[p.pair_id] for p in ok])
    judge = code([judge_label(p_a[p.pair_id], 0.0) for p in ok])
    flags = [records[p.pair_id].position_consistent for p in ok]
    flags = [f for f in flags if f is not None]
    figures = lambda pred: stats.pairwise_figures(human, pred, ids, samples, seed)  # noqa: E731
    return {
        "rows": len(pairs),
        "judged": len(ok),
        "failures": len(pairs) - len(ok),
        "judge_vs_human": figures(judge),
        "baselines": {
            "longer_wins": figures(code([longer_label(p) for p in ok])),
            "first_shown_wins": figures(np.zeros(len(ok), dtype=int)),
        },
        "position_consistency": {"rate": float(np.mean(flags)) if flags else None, "n": len(flags)},
        "p_human_choice_mean": float(
            np.mean([p_a[p.pair_id] if humans[p.pair_id] == "a" else 1 - p_a[p.pair_id] for p in ok])
        )
        if ok
        else None,
        "tokens": {
            k: sum(int(getattr(records[p.pair_id], k)) for p in ok) for k in ("prompt_tokens", "completion_tokens")
        },
    }


def evaluate(
    pairs_file: str | Path,
    judge: str,
    mode: JudgeMode = "logprobs",
    orders: Orders = "both",
    constitution: str = "harmless",
    limit: int | None = None,
    seed: int = 0,
    bootstrap_samples: int = 1000,
    concurrency: int = 64,
    cache: str | None = None,
    api_key_env: str | None = None,
) -> dict[str, Any]:
    """Judge every (prompt, chosen, rejected) row and report agreement with the human choice. `api_key_env` names
    the variable holding the judge's key, for a host other than api.openai.com / api.anthropic.com."""
    from charter.constitutions import load_constitution
    from charter.preference.config import JudgeSettings
    from charter.providers import get_model
    from charter.providers.cache import CallCache

    rows = select(load_pairs_file(pairs_file), limit, seed)
    built = [to_pair(r, seed) for r in rows]
    pairs, humans = [p for p, _ in built], {p.pair_id: h for p, h in built}
    settings = JudgeSettings(mode=mode, orders=orders)
    model = get_model(
        judge, cache=CallCache(Path(cache).expanduser()) if cache else None, role="judge", api_key_env=api_key_env
    )
    started = time.perf_counter()

    async def go() -> dict[str, Judgment]:
        try:
            return await _judge_all(model, load_constitution(constitution), pairs, settings, seed, concurrency)
        finally:
            await model.aclose()

    records = asyncio.run(go())
    summary = summarise(pairs, humans, records, bootstrap_samples, seed)
    summary.update(
        pairs_file=str(pairs_file),
        judge=judge,
        mode=mode,
        orders=orders,
        constitution=constitution,
        limit=limit,
        seed=seed,
        wall_s=round(time.perf_counter() - started, 1),
    )
    return summary
