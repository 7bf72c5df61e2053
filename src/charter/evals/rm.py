"""Reward-model evaluation, RewardBench style: accuracy on preference pairs per `subset`, with exact (Clopper-Pearson)
95% intervals, and best-of-N accuracy where a prompt has more than two responses.

Two kinds of scorer: a reward of (prompt, response) (`rm_accuracy`), or a probability that one response of a
prompt is better than another (`judged_accuracy`: a judge used as a pairwise reward model), whose failed
comparisons are counted apart, never scored.

`charter eval rm`: a reward model, or a judge used as a pairwise reward model, scored on preference pairs.

The judge compares each row's chosen and rejected responses in both presentation orders (and, on a best-of-N
prompt, every pair of its responses), through the call cache, so that a re-run pays for nothing twice.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import orjson
from pydantic import Field, model_validator

from charter.api_args import ConfigArg, public
from charter.concurrency import run_sync
from charter.errors import DatasetError
from charter.judge.modes import DEFAULT_MODE
from charter.judge.settings import PairwiseMode
from charter.providers.cache import DEFAULT_CACHE
from charter.providers.prices import Price
from charter.records import Judgment, Pair
from charter.records.base import as_messages, last_text
from charter.stats.intervals import exact_interval
from charter.yamlio import ConfigModel, config_with_fields


class Accuracy(TypedDict):
    """Correct orderings out of n, with the exact 95% interval."""

    n: int
    """Pairs (or prompts, for best-of-N) scored."""
    correct: float
    """Pairs the reward model orders as labelled (a tie counts half)."""
    accuracy: float
    """correct / n."""
    ci95: list[float]
    """[low, high] of the exact (Clopper-Pearson) 95% interval."""


def _accuracy(correct: float, n: int) -> Accuracy:
    return {"n": n, "correct": correct, "accuracy": correct / n, "ci95": list(exact_interval(correct, n))}


def _key(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class PairRows:
    """Preference rows grouped by prompt, each prompt and response under a key (its text, or its JSON)."""

    labelled: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(subset, prompt key, chosen key, rejected key) per row, in file order."""
    prompts: dict[str, Any] = field(default_factory=dict)
    """Prompt key -> the prompt as given."""
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Prompt key -> response key -> the response as given, in order of first appearance."""
    rejected: dict[str, set[str]] = field(default_factory=dict)
    """Prompt key -> the keys of its responses rejected in some row."""

    def best_of_n(self) -> dict[str, str]:
        """Prompt key -> its one never-rejected response, for the prompts with more than two responses and
        exactly one response never rejected (the ones best-of-N accuracy is measured on)."""
        out = {}
        for p, found in self.responses.items():
            winners = [r for r in found if r not in self.rejected[p]]
            if len(found) > 2 and len(winners) == 1:
                out[p] = winners[0]
        return out


def group_rows(rows: Sequence[dict[str, Any]]) -> PairRows:
    """The rows grouped by prompt.

    Raises:
        DatasetError: No rows, or a row without prompt, chosen or rejected.
    """
    if not rows:
        raise DatasetError("no preference rows to score")
    grouped = PairRows()
    for i, row in enumerate(rows):
        if any(row.get(k) is None for k in ("prompt", "chosen", "rejected")):
            raise DatasetError(f"row {i}: prompt, chosen and rejected are required")
        p, chosen, rejected = _key(row["prompt"]), _key(row["chosen"]), _key(row["rejected"])
        grouped.prompts[p] = row["prompt"]
        mine = grouped.responses.setdefault(p, {})
        mine.setdefault(chosen, row["chosen"])
        mine.setdefault(rejected, row["rejected"])
        grouped.rejected.setdefault(p, set()).add(rejected)
        grouped.labelled.append((str(row.get("subset") or "all"), p, chosen, rejected))
    return grouped


def _summary(results: dict[str, list[float]], best: list[float]) -> dict[str, Any]:
    every = [x for xs in results.values() for x in xs]
    return {
        "overall": _accuracy(sum(every), len(every)) if every else None,
        "subsets": {name: _accuracy(sum(xs), len(xs)) for name, xs in sorted(results.items()) if xs},
        "best_of_n": _accuracy(sum(best), len(best)) if best else None,
    }


def _ordered(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def rm_accuracy(rows: Sequence[dict[str, Any]], score: Callable[[Any, Any], float]) -> dict[str, Any]:
    """Accuracy of a scorer on preference rows: overall, per `subset`, and best-of-N.

    Args:
        rows: Rows with `prompt`, `chosen`, `rejected` and optionally `subset`.
        score: The reward of (prompt, response).

    Returns:
        `overall` and `subsets` (name -> `Accuracy`), and `best_of_n` (an `Accuracy` over the prompts with more than
        two responses and one response never rejected: the top-scored response is that one), or None without any.

    Raises:
        DatasetError: No rows, or a row without prompt, chosen or rejected.
    """
    grouped = group_rows(rows)
    scores = {
        (p, r): float(score(grouped.prompts[p], response))
        for p, found in grouped.responses.items()
        for r, response in found.items()
    }
    results: dict[str, list[float]] = {}
    for subset, p, chosen, rejected in grouped.labelled:
        results.setdefault(subset, []).append(_ordered(scores[(p, chosen)], scores[(p, rejected)]))
    best = [
        1.0 if max(grouped.responses[p], key=lambda r: scores[(p, r)]) == winner else 0.0
        for p, winner in grouped.best_of_n().items()
    ]
    return _summary(results, best)


#: P(x better than y) for a (prompt key, x key, y key), None where the comparison failed.
Preferences = Mapping[tuple[str, str, str], float | None]


def comparisons_needed(grouped: PairRows) -> list[tuple[str, str, str]]:
    """The comparisons a pairwise scorer makes, one per unordered pair of responses: each row's (chosen,
    rejected), and every pair of responses of a best-of-N prompt (each once, oriented as first seen)."""
    needed: dict[tuple[str, frozenset[str]], tuple[str, str, str]] = {}
    for _, p, chosen, rejected in grouped.labelled:
        needed.setdefault((p, frozenset((chosen, rejected))), (p, chosen, rejected))
    for p in grouped.best_of_n():
        found = list(grouped.responses[p])
        for i, x in enumerate(found):
            for y in found[i + 1 :]:
                needed.setdefault((p, frozenset((x, y))), (p, x, y))
    return list(needed.values())


def _p_better(preferences: Preferences, p: str, x: str, y: str) -> float | None:
    if (p, x, y) in preferences:
        return preferences[(p, x, y)]
    q = preferences[(p, y, x)]
    return None if q is None else 1.0 - q


def judged_accuracy(grouped: PairRows, preferences: Preferences) -> dict[str, Any]:
    """Accuracy of a pairwise scorer: a row is correct when P(chosen better) > 0.5, half at exactly 0.5; a row
    whose comparison failed is left out of n and counted in `failures`. Best-of-N: each response of a prompt
    scores its summed P(beats each other response); the top must be the never-rejected one; a prompt with any
    failed comparison is left out and counted in `best_of_n_failures`; a tie at the top shares the credit.

    Args:
        grouped: The rows (`group_rows`).
        preferences: P(x better than y) for every comparison of `comparisons_needed` (either orientation), None
            for a failed one.

    Returns:
        `rm_accuracy`'s `overall`, `subsets` and `best_of_n` (`overall` is None when every comparison failed),
        with `failures` (rows) and `subset_failures` (subset -> rows), `best_of_n_failures` (prompts) and
        `position_consistency` left to the caller.
    """
    results: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    for subset, p, chosen, rejected in grouped.labelled:
        results.setdefault(subset, [])
        failures.setdefault(subset, 0)
        q = _p_better(preferences, p, chosen, rejected)
        if q is None:
            failures[subset] += 1  # a failed judgment is counted apart, never a tie
        else:
            results[subset].append(_ordered(q, 0.5))
    best, best_failed = [], 0
    for p, winner in grouped.best_of_n().items():
        found = list(grouped.responses[p])
        pairs = {(x, y): _p_better(preferences, p, x, y) for x in found for y in found if x != y}
        if any(q is None for q in pairs.values()):
            best_failed += 1
            continue
        total = {x: sum(q for (a, _), q in pairs.items() if a == x and q is not None) for x in found}
        top = [x for x in found if total[x] == max(total.values())]
        best.append(1.0 / len(top) if winner in top else 0.0)  # a tie at the top shares the credit
    summary = _summary(results, best)
    summary["subsets"] = {name: {**acc, "failures": failures[name]} for name, acc in summary["subsets"].items()}
    for name in sorted(set(failures) - set(summary["subsets"])):
        summary["subsets"][name] = {"n": 0, "correct": 0.0, "accuracy": None, "ci95": None, "failures": failures[name]}
    summary["subsets"] = dict(sorted(summary["subsets"].items()))
    summary["failures"] = sum(failures.values())
    summary["best_of_n_failures"] = best_failed
    return summary


def score_reward_model(model: str, rows: Sequence[dict[str, Any]], max_length: int = 512) -> dict[str, Any]:
    """`rm_accuracy` of a reward model folder (or Hub id) on preference rows.

    Raises:
        TrainingError: `model` is not a sequence-classification reward model.
        DatasetError: No rows, or a row lacks prompt, chosen or rejected.
    """
    from charter.reward_model.scorer import RewardScorer
    from charter.training import data

    scorer = RewardScorer.load(model, max_length=max_length)

    def conversation(prompt: Any, response: Any) -> list[dict[str, str]]:
        return [*data.message_dicts(prompt, "user", "prompt"), *data.message_dicts(response, "assistant", "response")]

    def score(prompt: Any, response: Any) -> float:
        [value] = scorer.score([conversation(prompt, response)])
        return value

    return rm_accuracy(rows, score)


class RmEvalConfig(ConfigModel):
    """Settings of `charter eval rm`: one of `reward_model` or `judge` (a judge used as a pairwise reward model)."""

    reward_model: str | None = None
    """A reward model folder or Hub id (sequence classification, one logit: the reward)."""
    pairs: str
    """The pairs: a JSONL/parquet file or a Hub dataset id, rows with prompt, chosen, rejected and optionally
    subset."""
    judge: str | None = None
    """A judge model string, used as a pairwise reward model: each row's two responses compared in both orders."""
    judge_api_key_env: str | None = None
    """The variable holding the judge's key (for a host other than api.openai.com / api.anthropic.com)."""
    panel: list[str] = Field(default_factory=list)
    """More judge models: with any, `judge` and these answer as one panel (P averaged; a comparison any member
    fails is a failed one)."""
    constitution: str = "harmless"
    """Constitution name or YAML path the judge compares against."""
    judge_mode: PairwiseMode = DEFAULT_MODE
    """How the judge answers: logprobs, cot or verdict; both orders are always asked."""
    principles_per_pair: int = Field(default=1, ge=1)
    """Principles sampled per comparison."""
    limit: int | None = Field(default=None, ge=1)
    """Score at most this many rows, a seeded sample kept in file order (None: all)."""
    seed: int = 0
    """Seed of the row sample and of the principles drawn per comparison."""
    max_length: int = Field(default=512, ge=8)
    """Most tokens of prompt and response a reward model reads."""
    out: Path | None = None
    """Where to write the JSON summary; a judge's call cache is `calls.sqlite` beside it."""
    cache: Path | None = None
    """A judge's call cache file; unset: `calls.sqlite` beside `out`, else ~/.cache/charter/calls.sqlite."""
    concurrency: int = Field(default=16, ge=1)
    """Judge comparisons in flight."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """USD per million tokens by judge model id or bare name, for a judge genai-prices does not price (a
    self-hosted one); unpriced calls cost 0."""

    @model_validator(mode="after")
    def _one_scorer(self) -> RmEvalConfig:
        if (self.reward_model is None) == (self.judge is None):
            raise ValueError(
                "give either a reward model (MODEL, reward_model) or a judge (--judge, judge), not both or neither"
            )
        if self.panel and self.judge is None:
            raise ValueError("panel: needs a judge (--judge)")
        return self

    def cache_path(self) -> str:
        """The judge's call cache file."""
        if self.cache is not None:
            return str(self.cache.expanduser())
        if self.out is not None:
            return str(self.out.parent / "calls.sqlite")
        return str(Path(DEFAULT_CACHE).expanduser())


def _sample(rows: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    if not limit or limit >= len(rows):
        return rows
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [r for i, r in enumerate(rows) if i in keep]


def _pair_id(p: str, x: str, y: str) -> str:
    """The same id in either orientation, so the principles drawn for a comparison do not depend on it."""
    return "rm-" + hashlib.sha256("\x00".join([p, *sorted((x, y))]).encode()).hexdigest()[:24]


def _pairs(grouped: PairRows, needed: list[tuple[str, str, str]]) -> list[Pair]:
    out = []
    for p, x, y in needed:
        prompt = as_messages(grouped.prompts[p], "pairs: prompt")
        a, b = (last_text(as_messages(grouped.responses[p][r], "pairs: response", role="assistant")) for r in (x, y))
        out.append(Pair(pair_id=_pair_id(p, x, y), prompt=prompt, a=a, b=b, a_source="x", b_source="y"))
    return out


async def _judgments(config: RmEvalConfig, pairs: list[Pair], meter: Any) -> dict[str, Judgment]:
    from charter.constitutions import load_constitution
    from charter.judge.pairwise import judge_many, judgments_by_pair
    from charter.judge.panel import Panel
    from charter.judge.settings import JudgeSettings
    from charter.providers import get_model

    constitution = load_constitution(config.constitution)
    settings = JudgeSettings(mode=config.judge_mode, orders="both", principles_per_pair=config.principles_per_pair)
    cache, keys = config.cache_path(), [config.judge_api_key_env] + [None] * len(config.panel)
    judges = [
        get_model(j, role="judge", cache=cache, meter=meter, api_key_env=key)
        for j, key in zip([config.judge, *config.panel], keys)
        if j is not None
    ]
    model: Any = Panel(judges) if len(judges) > 1 else judges[0]
    judged = judge_many(model, constitution, pairs, settings, config.seed, config.concurrency)
    return await judgments_by_pair(judged, close=model)


async def judge_rm_async(config: RmEvalConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The judge's accuracy on the rows (see `evaluate_rm`)."""
    from charter.providers.usage import UsageMeter

    grouped = group_rows(rows)
    needed = comparisons_needed(grouped)
    pairs = _pairs(grouped, needed)
    meter = UsageMeter(prices=config.prices)
    judged = await _judgments(config, pairs, meter)
    preferences: dict[tuple[str, str, str], float | None] = {}
    consistent = []
    for key, pair in zip(needed, pairs):
        j = judged.get(pair.pair_id)
        decided = j is not None and j.status == "ok"
        preferences[key] = j.p_a if decided and j is not None else None  # a failed judgment stays None
        if decided and j is not None and j.position_consistent is not None:
            consistent.append(j.position_consistent)
    tallies = meter.tallies.values()
    return {
        **judged_accuracy(grouped, preferences),
        "judge": config.judge,
        "panel": config.panel,
        "judge_mode": config.judge_mode,
        "constitution": config.constitution,
        "comparisons": len(pairs),
        "position_consistency": sum(consistent) / len(consistent) if consistent else None,  # of the decided ones
        "calls": sum(t.calls for t in tallies),
        "cached_calls": sum(t.cached for t in tallies),
        "cost_usd": meter.total_cost,
        "cache": config.cache_path(),
    }


def _evaluate(config: RmEvalConfig) -> dict[str, Any]:
    from charter.training import data
    from charter.training.output import write_json

    rows = _sample(data.read_rows(config.pairs), config.limit, config.seed)
    if config.reward_model is not None:
        summary = {
            "model": config.reward_model,
            "pairs": config.pairs,
            **score_reward_model(config.reward_model, rows, config.max_length),
        }
    else:
        summary = {"model": None, "pairs": config.pairs, **run_sync(judge_rm_async(config, rows))}
    if config.out is not None:
        write_json(config.out, summary)
    return summary


@public
def evaluate_rm(config: ConfigArg[RmEvalConfig] | None = None, **fields: Any) -> dict[str, Any]:
    """A reward model, or a judge used as a pairwise reward model, scored on preference pairs (RewardBench style).

    `evaluate_rm(reward_model=..., pairs=...)` for a reward model, `evaluate_rm(judge=..., pairs=...)` for a judge. The
    judge compares each row's chosen and rejected responses in both orders: a row is correct when P(chosen
    better) > 0.5, half at exactly 0.5. A failed comparison is left out of n and counted in `failures`. Its calls
    go through the call cache (`calls.sqlite` beside `out`): a re-run pays for nothing twice.

    Args:
        config: The settings, as an `RmEvalConfig`, a dict of its fields or a YAML file; None to take them all
            from `fields`.
        **fields: `RmEvalConfig` fields; with a dict `config`, they override its keys.

    Returns:
        The summary (also written to `out`): `overall` and `subsets` (n, correct, accuracy and its exact 95%
        interval) and `best_of_n` (over the prompts with more than two responses and one never rejected, or None).
        For a judge also: `failures` (rows, and per subset), `best_of_n_failures` (prompts), `position_consistency`
        (the share of comparisons whose two orders agree), `calls` (new judge calls), `cached_calls`, `cost_usd`.

    Raises:
        ArgumentError: A field is not a valid `RmEvalConfig` field, or an argument is of the wrong type.
        ConfigError: The settings do not validate: both or neither of `reward_model` and `judge`.
        DatasetError: The pairs cannot be read, or a row lacks prompt, chosen or rejected.
        TrainingError: `reward_model` is not a sequence-classification reward model.
        UnknownModel: The judge's model string names no known provider.
        MissingAPIKey: The variable holding a remote judge's key is unset.
        ConstitutionError: `constitution` is neither a bundled name nor a valid constitution file.
        ProviderError: The judge failed for good (an unknown model, a bad key).
    """
    return _evaluate(config_with_fields(RmEvalConfig, config, fields))
