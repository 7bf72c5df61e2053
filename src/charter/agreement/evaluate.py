"""`charter agreement eval`: judge an existing human-labeled pair set and measure agreement.

Each row has `prompt` (text or messages), `chosen` (the human-preferred response) and `rejected`.
Which of the two becomes the pair's `a` is drawn per row (seeded), so with `--orders one` the judge
sees the human-preferred response first half of the time, and "first shown wins" is a fair baseline.
With `--mode score` the judge rates each response alone (1..scale per principle) and the pair's pick is the
higher score; the summary counts the judge calls made and answered from the cache, so modes compare on cost too.
Several judges make a panel (Verga et al. 2024, "Replacing Judges with Juries"): each judges every row, the panel's
P(A) is their mean, and the summary gives each member's own agreement and calls beside the panel's, and how far the
members agree with each other.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from charter.agreement.report import judge_label, longer_label
from charter.agreement.summary import Baselines, Consistency
from charter.errors import ArgumentError, DatasetError
from charter.judge.modes import DEFAULT_MODE, DEFAULT_RATING
from charter.judge.panel import pool
from charter.judge.settings import JudgeMode, Orders, RatingMode
from charter.records import Judgment, Message, Pair
from charter.records.base import as_messages, last_text
from charter.stats import agreement as stats
from charter.stats.agreement import HumanHuman, PairwiseFigures
from charter.tables import iter_jsonl

if TYPE_CHECKING:
    from charter.providers.usage import UsageMeter


class PairRow(TypedDict):
    """One row of a human-labeled pair file, checked."""

    id: str
    """The row's `id`, or row-N (its line number) when it has none."""
    prompt: list[Message]
    """The prompt as messages."""
    chosen: str
    """The text of the response the human preferred."""
    rejected: str
    """The text of the other response."""


class TokenCounts(TypedDict):
    """Tokens of the successful judgments."""

    prompt_tokens: int
    """Prompt tokens of the judge calls."""
    completion_tokens: int
    """Completion tokens of the judge calls."""


class CallCounts(TypedDict):
    """The judge's calls, as its usage meter counted them (every call, including those of failed judgments)."""

    calls: int
    """Calls answered by the model (each request of a batch counts as one)."""
    cache_hits: int
    """Calls answered from the call cache instead."""
    retries: int
    """Transport retries of calls (a retried call counts once in `calls`)."""


class ScoreMeans(TypedDict):
    """Mode `score`: the judge's mean scores of the two responses, over the judged rows and their principles."""

    chosen: float
    """Mean score of the human-preferred responses."""
    rejected: float
    """Mean score of the other responses."""
    tied: int
    """Judged rows whose two responses scored exactly the same (the judge's pick is then a tie)."""


class PanelMember(TypedDict):
    """One judge of a panel, on its own."""

    judge: str
    """The model."""
    judged: int
    """Rows it judged successfully."""
    judge_vs_human: PairwiseFigures
    """Its own pick against the human choice, on the rows the whole panel judged."""
    judge_calls: CallCounts
    """Its calls and cache hits."""
    tokens: TokenCounts
    """Its tokens on the rows it judged."""


class PanelFigures(TypedDict):
    """A panel of judges: each member's figures, and how far they agree with each other."""

    pooling: str
    """How the members' P(A) are pooled: mean."""
    members: list[PanelMember]
    """Each judge on its own."""
    between_judges: HumanHuman | None
    """The members' picks against each other: pairwise agreement and Krippendorff's alpha (nominal) with 95%
    intervals."""


class EvalSummary(TypedDict):
    """Agreement of the judge with the human choice on a pair file's judged rows."""

    rows: int
    """Rows judged (after `limit`)."""
    judged: int
    """Rows whose judgment succeeded: the figures rest on these."""
    failures: int
    """Rows whose judgment failed, left out of the figures."""
    judge_vs_human: PairwiseFigures
    """The judge's pick (P(A) > 0.5: a, < 0.5: b, exactly 0.5: tie) against the human choice."""
    baselines: Baselines
    """Trivial judges against the human choice."""
    position_consistency: Consistency
    """How often the judge's two presentation orders agreed (n = 0 with one order, and in mode `score`, where each
    response is rated alone)."""
    p_human_choice_mean: float | None
    """Mean probability the judge gave the human-preferred response; None when nothing was judged."""
    tokens: TokenCounts
    """Tokens spent on the successful judgments."""
    judge_calls: CallCounts | None
    """The judge's calls and cache hits (all rows, failed ones included); None when not counted."""
    score_means: ScoreMeans | None
    """Mode `score`: the mean scores of the chosen and rejected responses; None in the pairwise modes."""
    panel: PanelFigures | None
    """With several judges: each member's own figures and the agreement between them; the figures above are the
    panel's (mean P(A)); None with one judge."""


class EvalReport(EvalSummary):
    """An `EvalSummary` with the settings it was made with: what `charter agreement eval --json` writes."""

    pairs_file: str
    """The pair file."""
    judge: str
    """The judge model (a panel's members joined with " + ")."""
    mode: JudgeMode
    """logprobs, cot, verdict or score."""
    orders: Orders
    """both or one (always one in mode `score`: each response is rated alone)."""
    scale: int | None
    """Mode `score`: the top of the rating scale (scores run 1..scale); None in the pairwise modes."""
    rating: RatingMode | None
    """Mode `score`: how a score is read (logprobs, cot or verdict); None in the pairwise modes."""
    constitution: str
    """Bundled constitution name or YAML file."""
    limit: int | None
    """The seeded subset size, or None for every row."""
    seed: int
    """Seed of the subset, the presentation order and the bootstrap."""
    wall_s: float
    """Seconds the judging and the figures took."""


def load_pairs_file(path: str | Path) -> list[PairRow]:
    """Rows {id, prompt (messages), chosen, rejected} from a JSONL file; one-line errors name the line.

    Args:
        path: A JSONL file, one object with `prompt`, `chosen` and `rejected` (text or messages) per line,
            and optionally `id`.

    Returns:
        The rows in file order.

    Raises:
        DatasetError: The file is missing, has no rows, or a line is not such an object.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    rows = []
    for n, obj in iter_jsonl(path, DatasetError):
        where = f"{path}:{n}"
        if not {"prompt", "chosen", "rejected"} <= set(obj):
            raise DatasetError(f"{where}: expected an object with prompt, chosen and rejected")
        rows.append(
            PairRow(
                id=str(obj.get("id", f"row-{n}")),
                prompt=as_messages(obj["prompt"], f"{where}: prompt"),
                chosen=last_text(as_messages(obj["chosen"], f"{where}: chosen", role="assistant")),
                rejected=last_text(as_messages(obj["rejected"], f"{where}: rejected", role="assistant")),
            )
        )
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def select(rows: list[PairRow], limit: int | None, seed: int) -> list[PairRow]:
    """A seeded subset of `limit` rows (file order kept), or all rows.

    Args:
        rows: The rows of a pair file.
        limit: How many to keep; None or 0 (or at least as many as there are) keeps all.
        seed: Seed of the draw.

    Returns:
        The kept rows, in their original order.
    """
    if not limit or limit >= len(rows):
        return rows
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [r for i, r in enumerate(rows) if i in keep]


def to_pair(row: PairRow, seed: int) -> tuple[Pair, str]:
    """The judge's pair for a row, and the human label in the pair's terms.

    Args:
        row: A row of a pair file.
        seed: Seed of the per-row draw of which response becomes the pair's `a`.

    Returns:
        The pair (its id the row's) and 'a' or 'b': the side holding the human-preferred response.
    """
    swap = random.Random(f"{seed}:{row['id']}").random() < 0.5
    a, b = (row["rejected"], row["chosen"]) if swap else (row["chosen"], row["rejected"])
    return Pair(pair_id=row["id"], prompt=row["prompt"], a=a, b=b), ("b" if swap else "a")


async def _judge_all(
    model: Any, constitution: Any, pairs: list[Pair], settings: Any, seed: int, concurrency: int
) -> dict[str, Judgment]:
    from charter.judge.pairwise import judge_many
    from charter.progress import progress_bar

    out: dict[str, Judgment] = {}
    with progress_bar() as bar:
        task = bar.add_task(f"judging ({settings.mode}, orders={settings.orders})", total=len(pairs))
        async for record in judge_many(model, constitution, pairs, settings, seed=seed, concurrency=concurrency):
            out[record.pair_id] = record
            bar.advance(task)
    return out


def call_counts(meter: UsageMeter) -> CallCounts:
    """The calls, cache hits and retries a usage meter counted, over all its roles and models."""
    tallies = list(meter.tallies.values())
    return {
        "calls": sum(t.calls for t in tallies),
        "cache_hits": sum(t.cached for t in tallies),
        "retries": sum(t.retries for t in tallies),
    }


def score_means(ok: list[Pair], humans: dict[str, str], records: dict[str, Judgment]) -> ScoreMeans | None:
    """Mode `score`: the mean scores of the chosen and the rejected responses; None when no vote has scores."""
    chosen, rejected, tied = [], [], 0
    for pair in ok:
        votes = [(v.score_a, v.score_b) for v in records[pair.pair_id].principles]
        scores = [(sa, sb) for sa, sb in votes if sa is not None and sb is not None]
        if not scores:
            continue
        a = float(np.mean([sa for sa, _ in scores]))
        b = float(np.mean([sb for _, sb in scores]))
        chosen.append(a if humans[pair.pair_id] == "a" else b)
        rejected.append(b if humans[pair.pair_id] == "a" else a)
        tied += a == b
    if not chosen:
        return None
    return {"chosen": float(np.mean(chosen)), "rejected": float(np.mean(rejected)), "tied": tied}


def summarise(
    pairs: list[Pair],
    humans: dict[str, str],
    records: dict[str, Judgment],
    samples: int,
    seed: int,
    calls: CallCounts | None = None,
) -> EvalSummary:
    """Agreement figures for judged rows; failed judgments are counted and left out.

    Args:
        pairs: The pairs the judge was given.
        humans: pair id -> the human label in the pair's terms ('a' or 'b').
        records: pair id -> the judgment; a pair without one counts as failed.
        samples: Bootstrap resamples per figure.
        seed: Seed of the resampling.
        calls: The judge's call counts (see `call_counts`), reported as they are; None when not counted.

    Returns:
        The figures, baselines, position consistency, token and call counts, and (mode `score`) mean scores.
    """
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
        "baselines": Baselines(
            longer_wins=figures(code([longer_label(p) for p in ok])),
            first_shown_wins=figures(np.zeros(len(ok), dtype=int)),
        ),
        "position_consistency": Consistency(rate=float(np.mean(flags)) if flags else None, n=len(flags)),
        "p_human_choice_mean": float(
            np.mean([p_a[p.pair_id] if humans[p.pair_id] == "a" else 1 - p_a[p.pair_id] for p in ok])
        )
        if ok
        else None,
        "tokens": {
            "prompt_tokens": sum(int(records[p.pair_id].prompt_tokens) for p in ok),
            "completion_tokens": sum(int(records[p.pair_id].completion_tokens) for p in ok),
        },
        "judge_calls": calls,
        "score_means": score_means(ok, humans, records),
        "panel": None,
    }


def panel_figures(
    judges: list[str],
    pairs: list[Pair],
    humans: dict[str, str],
    members: list[dict[str, Judgment]],
    calls: list[CallCounts],
    samples: int,
    seed: int,
) -> PanelFigures:
    """Each member's figures on the rows the whole panel judged, and the members against each other."""
    both = [
        p for p in pairs if all(p.pair_id in m and m[p.pair_id].status == "ok" for m in members)
    ]  # the panel's rows
    out: list[PanelMember] = []
    picks: dict[str, dict[str, int]] = {}
    for judge, records, counted in zip(judges, members, calls):
        alone = summarise(both, humans, records, samples, seed, counted)
        out.append(
            PanelMember(
                judge=judge,
                judged=sum(1 for r in records.values() if r.status == "ok"),
                judge_vs_human=alone["judge_vs_human"],
                judge_calls=counted,
                tokens=alone["tokens"],
            )
        )
        picks[f"{len(picks) + 1}:{judge}"] = {
            p.pair_id: stats.CODES[judge_label(float(records[p.pair_id].p_a or 0.0), 0.0)] for p in both
        }
    return PanelFigures(pooling="mean", members=out, between_judges=stats.human_human(picks, samples, seed))


def evaluate(
    pairs_file: str | Path,
    judge: str | list[str],
    mode: JudgeMode = DEFAULT_MODE,
    orders: Orders = "both",
    constitution: str = "harmless",
    limit: int | None = None,
    seed: int = 0,
    bootstrap_samples: int = 1000,
    concurrency: int = 64,
    cache: str | None = None,
    api_key_env: str | None = None,
    scale: int = 5,
    rating: RatingMode = DEFAULT_RATING,
) -> EvalReport:
    """Judge every (prompt, chosen, rejected) row and report agreement with the human choice.

    Which response becomes the pair's `a` is drawn per row (seeded), so the judge sees the human-preferred
    response first about half of the time.

    Args:
        pairs_file: A JSONL file of human-labeled pairs (see `load_pairs_file`).
        judge: The judge model, PROVIDER:MODEL; or a list of them, a panel whose P(A) is the members' mean.
        mode: How the judge decides: logprobs, cot or verdict (pairwise), or score (each response rated alone on
            1..scale per principle; the pick is the higher score).
        orders: Judge each pair in both presentation orders or in one (mode score: ignored, reported as one).
        constitution: A bundled constitution name or a YAML file.
        limit: Judge a seeded subset of this many rows; None for all.
        seed: Seed of the subset, the presentation order, the judge and the bootstrap.
        bootstrap_samples: Bootstrap resamples per figure.
        concurrency: Judge calls in flight at once.
        cache: A call cache file; None for none.
        api_key_env: The variable holding the judge's key, for a host other than api.openai.com /
            api.anthropic.com.
        scale: Mode score: the top of the rating scale, 2 to 10 (at most 9 with rating logprobs).
        rating: Mode score: how a score is read: logprobs (expected score over the score tokens), cot or verdict.

    Returns:
        The agreement summary with the settings it was made with (with a panel, each member's figures too).

    Raises:
        ArgumentError: `scale` is out of range for `rating` (mode score), or `judge` is an empty list.
        DatasetError: The pair file is missing, has no rows, or has a malformed row.
        UnknownModel: `judge` names no known provider.
        ConstitutionError: `constitution` is neither a bundled name nor a readable constitution file.
    """
    from charter.constitutions import load_constitution
    from charter.judge.modes import MODES
    from charter.judge.settings import JudgeSettings
    from charter.providers import get_model
    from charter.providers.cache import CallCache
    from charter.providers.usage import UsageMeter

    entry = MODES.get(mode)
    scored = entry is not None and entry.kind.rate is not None  # a rating kind: each response rated on a scale
    reply = None if entry is None else entry.reply or entry.replies.get(rating)
    by_tokens = reply is not None and reply.logprobs
    if scored and not 2 <= scale <= (9 if by_tokens else 10):
        top = f"9 with rating {rating} (each score one token)" if by_tokens else "10"
        raise ArgumentError("scale", f"{scale}: use 2 to {top}")
    rows = select(load_pairs_file(pairs_file), limit, seed)
    built = [to_pair(r, seed) for r in rows]
    pairs, humans = [p for p, _ in built], {p.pair_id: h for p, h in built}
    settings = JudgeSettings(mode=mode, orders="one" if scored else orders, scale=scale, rating=rating)
    judges = [judge] if isinstance(judge, str) else list(judge)
    if not judges:
        raise ArgumentError("judge", "name at least one judge model")
    call_cache = CallCache(Path(cache).expanduser()) if cache else None
    meters = [UsageMeter() for _ in judges]
    started = time.perf_counter()

    async def go() -> list[dict[str, Judgment]]:
        constitution_ = load_constitution(constitution)
        out = []
        for spec, meter in zip(judges, meters):  # one judge after another, each with its own meter and progress bar
            model = get_model(spec, cache=call_cache, meter=meter, role="judge", api_key_env=api_key_env)
            try:
                out.append(await _judge_all(model, constitution_, pairs, settings, seed, concurrency))
            finally:
                await model.aclose()
        return out

    members = asyncio.run(go())
    counts = [call_counts(meter) for meter in meters]
    if len(judges) == 1:
        summary = summarise(pairs, humans, members[0], bootstrap_samples, seed, counts[0])
    else:
        total = CallCounts(
            calls=sum(c["calls"] for c in counts),
            cache_hits=sum(c["cache_hits"] for c in counts),
            retries=sum(c["retries"] for c in counts),
        )
        pooled = pool(members, " + ".join(judges))
        summary = summarise(pairs, humans, pooled, bootstrap_samples, seed, total)
        summary["panel"] = panel_figures(judges, pairs, humans, members, counts, bootstrap_samples, seed)
    return EvalReport(
        **summary,
        pairs_file=str(pairs_file),
        judge=" + ".join(judges),
        mode=mode,
        orders=settings.orders,
        scale=scale if scored else None,
        rating=rating if scored else None,
        constitution=constitution,
        limit=limit,
        seed=seed,
        wall_s=round(time.perf_counter() - started, 1),
    )
