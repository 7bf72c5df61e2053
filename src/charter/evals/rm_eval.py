"""`charter eval rm`: a reward model, or a judge used as a pairwise reward model, scored on preference pairs.

The judge compares each row's chosen and rejected responses in both presentation orders (and, on a best-of-N
prompt, every pair of its responses), through the call cache, so that a re-run pays for nothing twice."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import Field, model_validator

from charter.api_args import ConfigArg, Loads, public
from charter.concurrency import run_sync
from charter.evals.rm import PairRows, comparisons_needed, group_rows, judged_accuracy, score_reward_model
from charter.judge.settings import PairwiseMode
from charter.providers.cache import DEFAULT_CACHE
from charter.providers.prices import Price
from charter.records import Judgment, Pair
from charter.records.base import as_messages, last_text
from charter.yamlio import ConfigModel

#: The call cache of a judge when `out` and `cache` are both unset.


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
    judge_mode: PairwiseMode = "logprobs"
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
def evaluate_rm(
    config: Annotated[ConfigArg[RmEvalConfig] | None, Loads(fields="fields")] = None, **fields: Any
) -> dict[str, Any]:
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
    return _evaluate(cast(RmEvalConfig, config))  # loaded by @public
