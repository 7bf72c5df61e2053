"""An arena: N models answer one prompt set, charter's judge compares pairs of them in both orders, and a
Bradley–Terry fit puts every model on one scale with intervals by bootstrap over prompts.

The design is sparse: each pair of models is compared on `prompts_per_pair` of the prompts (all of them for
`prompts_per_pair: null`), the prompts with the lowest hash of (prompt, the two models). A pair's prompts therefore
do not depend on the other models, so adding a model to an arena asks only the new pairs (every answer and judgment
is a call the call cache answers on a re-run). Scores are log-odds against the reference model (the first listed
unless `reference` names another): a model one point above the reference beats it with probability
sigmoid(1) = 0.73 on a prompt like these. The length-controlled scores take out the effect of answer length on the
judge's verdicts (AlpacaEval 2's regression on the length difference).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from charter.api_args import public
from charter.errors import ConfigError, DatasetError
from charter.judge.settings import JudgeConfig
from charter.records import Judgment, Message, Pair, as_records
from charter.stats.ranking import ALPHA, connected, ranked_bootstrap
from charter.training import data
from charter.yamlio import ConfigModel

#: Answer files: a JSONL/JSON/parquet file of made answers stands for a model in `models`.
ANSWER_SUFFIXES = (".jsonl", ".json", ".parquet")
#: |P(a better) - 0.5| below this counts as a tie in the wins/losses/ties tally (the fit uses the soft P itself).
TIE_BAND = 0.1


class ArenaConfig(ConfigModel):
    """Rank several models on one prompt set with charter's pairwise judge (`charter eval arena`)."""

    models: list[str] = Field(min_length=2)
    """The models: model strings (they answer the prompts, greedily, through the call cache) or answer files
    (JSONL/JSON/parquet rows with `prompt` and `answer`, matched to the prompts by their text)."""
    prompts: str
    """The prompts: a JSONL/parquet file with a `prompt` (string or messages) or `messages` column."""
    judge: JudgeConfig = JudgeConfig(model="local:smollm2-135m-instruct", mode="logprobs")
    """The pairwise judge (a comparison mode; both orders are always asked)."""
    constitution: str = "harmless"
    """The constitution the judge compares against: a bundled name or a YAML path."""
    reference: str | None = None
    """The model whose score is 0 (one of `models`); default: the first."""
    prompts_per_pair: int | None = Field(default=None, ge=1)
    """Prompts each pair of models is compared on (the lowest hashes of prompt and pair); null: every prompt, all
    pairs. Default for more than two models: 2P/(N-1) rounded up, so that each prompt carries about N comparisons
    instead of N(N-1)/2."""
    limit: int | None = Field(default=100, ge=1)
    """Most prompts (a seeded sample); null: all."""
    max_calls: int | None = Field(default=None, ge=1)
    """Refuse an arena that plans more judge calls than this (answers not counted)."""
    bootstrap_samples: int = Field(default=500, ge=50)
    """Resamples of the prompts for the intervals."""
    max_tokens: int = Field(default=256, ge=1)
    """Most tokens per answer."""
    seed: int = 0
    """Seed of the prompt sample, the principle draws and the bootstrap."""
    cache: str | None = "~/.cache/charter/calls.sqlite"
    """The call cache (null: none). A model folder retrained in place keeps its path: use another cache then."""
    concurrency: int = Field(default=16, ge=1)
    """Judge calls in flight at once."""
    out: Path = Path("arena")
    """Where arena.json, arena.md and arena.svg go."""

    @field_validator("models")
    @classmethod
    def _distinct(cls, models: list[str]) -> list[str]:
        if len(set(models)) != len(models):
            raise ValueError("a model is listed twice")
        return models


def _hash(*parts: str) -> int:
    return int(hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12], 16)


def _name(spec: str) -> str:
    path = Path(spec)
    return path.stem if path.suffix in ANSWER_SUFFIXES else spec


def design(prompt_ids: list[str], models: list[str], prompts_per_pair: int | None) -> list[tuple[str, int, int]]:
    """The comparisons: (prompt id, model i, model j) with i < j, each pair on its `prompts_per_pair` prompts of
    lowest hash (every prompt for None)."""
    planned = []
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            ranked = sorted(prompt_ids, key=lambda p: _hash(p, models[i], models[j]))
            chosen = set(ranked if prompts_per_pair is None else ranked[:prompts_per_pair])
            planned += [(p, i, j) for p in prompt_ids if p in chosen]
    return planned


def _per_pair(config: ArenaConfig, prompts: int) -> int | None:
    if config.prompts_per_pair is not None or "prompts_per_pair" in config.model_fields_set:
        return config.prompts_per_pair
    n = len(config.models)
    return None if n <= 3 else min(prompts, math.ceil(2 * prompts / (n - 1)))


def _answers_from_file(spec: str, prompts: list[list[dict[str, str]]]) -> list[str]:
    rows = data.read_rows(spec)
    by_text: dict[str, str] = {}
    for k, row in enumerate(rows):
        if "prompt" not in row or not isinstance(row.get("answer"), str):
            raise DatasetError(f"{spec}: row {k + 1}: an answer row needs `prompt` and `answer` (a string)")
        text = data.message_dicts(row["prompt"], "user", f"{spec}: row {k + 1}")[-1]["content"]
        by_text[text] = row["answer"]
    missing = [p[-1]["content"] for p in prompts if p[-1]["content"] not in by_text]
    if missing:
        raise DatasetError(f"{spec}: no answer to {len(missing)} of the prompts (first: {missing[0][:60]!r})")
    return [by_text[p[-1]["content"]] for p in prompts]


async def _answers(
    spec: str, prompts: list[list[dict[str, str]]], config: ArenaConfig, cache: Any, meter: Any
) -> list[str]:
    if Path(spec).suffix in ANSWER_SUFFIXES:
        return _answers_from_file(spec, prompts)
    from charter.providers import SamplingParams, get_model

    model = get_model(spec, cache=cache, meter=meter, role=f"model {_name(spec)}")
    try:
        params = SamplingParams(temperature=0.0, max_tokens=config.max_tokens, seed=config.seed)
        return [c.text.strip() for c in await model.generate([as_records(p) for p in prompts], params)]
    finally:
        await model.aclose()


async def _judge(config: ArenaConfig, pairs: list[Pair], cache: Any, meter: Any) -> dict[str, Judgment]:
    from charter.constitutions import load_constitution
    from charter.judge.pairwise import judge_many
    from charter.providers import get_model

    settings = config.judge.settings().model_copy(update={"orders": "both"})
    model = get_model(config.judge.backend(), cache=cache, meter=meter, role="judge")
    try:
        found = {}
        async for record in judge_many(
            model,
            load_constitution(config.constitution),
            pairs,
            settings,
            seed=config.seed,
            concurrency=config.concurrency,
        ):
            found[record.pair_id] = record
        return found
    finally:
        await model.aclose()


def _fit(config: ArenaConfig, names: list[str], judged: list[tuple[str, int, int, float, float]]) -> dict[str, Any]:
    """Scores, intervals and ranks (plain and length-controlled) from (prompt, i, j, p_i, length covariate), over
    the models some decided comparison reaches; a model none reaches is unranked (its fields None), never given
    the prior's score.

    Raises:
        DatasetError: The reference has no decided comparison, or the decided comparisons split the models into
            groups that never meet (their scores would not be on one scale).
    """
    reference = names.index(_name(config.reference)) if config.reference else 0
    present = sorted({i for _, i, _, _, _ in judged} | {j for _, _, j, _, _ in judged})
    if reference not in present:
        raise DatasetError(f"the reference {names[reference]} has no decided comparison: nothing to score against")
    at = {model: k for k, model in enumerate(present)}
    outcomes = [(at[i], at[j], p) for _, i, j, p, _ in judged]
    if not connected(len(present), [(i, j) for i, j, _ in outcomes]):
        raise DatasetError("the decided comparisons do not join all the models: their scores are not on one scale")
    clusters = [prompt for prompt, *_ in judged]
    lengths = [x for *_, x in judged]
    fits = {}
    for kind, covariate in (("plain", None), ("controlled", lengths)):
        found = ranked_bootstrap(
            len(present), outcomes, clusters, at[reference], config.bootstrap_samples, config.seed, ALPHA, covariate
        )
        fits[kind] = {
            key: [found[key][at[k]] if k in at else None for k in range(len(names))]
            if key not in ("beta", "samples")
            else found[key]
            for key in found
        }
    return {"reference": names[reference], **fits}


def _length_covariate(a: str, b: str, scale: float) -> float:
    """AlpacaEval 2's length feature: tanh of the length difference over its spread."""
    return math.tanh((len(a) - len(b)) / scale) if scale > 0 else 0.0


def _tally(names: list[str], judged: list[tuple[str, int, int, float, float]]) -> list[dict[str, int]]:
    counts = [{"wins": 0, "losses": 0, "ties": 0} for _ in names]
    for _, i, j, p, _ in judged:
        if abs(p - 0.5) < TIE_BAND:
            counts[i]["ties"] += 1
            counts[j]["ties"] += 1
        else:
            winner, loser = (i, j) if p > 0.5 else (j, i)
            counts[winner]["wins"] += 1
            counts[loser]["losses"] += 1
    return counts


async def arena_async(config: ArenaConfig) -> dict[str, Any]:
    """The arena; writes arena.json, arena.md and arena.svg into `config.out` and returns what arena.json holds."""
    from charter.evals.arena_report import write_outputs
    from charter.evals.winrate import load_prompts
    from charter.providers.cache import CallCache
    from charter.providers.usage import UsageMeter

    names = [_name(m) for m in config.models]
    if config.reference is not None and _name(config.reference) not in names:
        raise ConfigError(f"reference {config.reference!r} is not one of the models ({', '.join(names)})")
    prompts = load_prompts(config.prompts, config.limit, config.seed)
    prompt_ids = [f"p{_hash(*(m['content'] for m in p)):012x}" for p in prompts]
    per_pair = _per_pair(config, len(prompts))
    planned = design(prompt_ids, config.models, per_pair)
    calls = 2 * len(planned) * config.judge.principles_per_pair
    if config.max_calls is not None and calls > config.max_calls:
        raise ConfigError(
            f"max_calls: the arena plans {calls:,} judge calls ({len(planned):,} comparisons x 2 orders x "
            f"{config.judge.principles_per_pair} principle(s)), over the bound of {config.max_calls:,}: lower "
            "prompts_per_pair or limit, or raise max_calls"
        )
    cache = CallCache(Path(config.cache).expanduser()) if config.cache else None
    meter = UsageMeter({}, None)
    try:
        answers = [await _answers(spec, prompts, config, cache, meter) for spec in config.models]
        index = {p: k for k, p in enumerate(prompt_ids)}
        pairs = [
            Pair(
                pair_id=f"arena-{prompt}-{i}-{j}",
                prompt_id=prompt,
                prompt=[Message.model_validate(m) for m in prompts[index[prompt]]],
                a=answers[i][index[prompt]],
                b=answers[j][index[prompt]],
                a_source=names[i],
                b_source=names[j],
                a_model=config.models[i],
                b_model=config.models[j],
            )
            for prompt, i, j in planned
        ]
        judgments = await _judge(config, pairs, cache, meter)
    finally:
        if cache is not None:
            cache.close()
    spread = float(np.std([len(a) for model in answers for a in model])) or 1.0
    judged, failed = [], 0
    for (prompt, i, j), pair in zip(planned, pairs):
        record = judgments.get(pair.pair_id)
        if record is None or record.status != "ok" or record.p_a is None:
            failed += 1
            continue
        judged.append((prompt, i, j, record.p_a, _length_covariate(pair.a, pair.b, spread)))
    if not judged:
        raise DatasetError("the judge decided no comparison: nothing to rank (every judgment failed)")
    fit = _fit(config, names, judged)
    rows = meter.rows()
    usage = {
        "answer_calls": sum(r.calls for r in rows if r.role != "judge"),
        "judge_calls": sum(r.calls for r in rows if r.role == "judge"),
        "cached_calls": sum(r.cached for r in rows),
        "cost_usd": round(sum(r.cost_usd for r in rows), 6),
    }
    return write_outputs(config, names, answers, judged, failed, planned, per_pair, fit, usage, _tally(names, judged))


@public()
def arena(config: ArenaConfig | dict[str, Any] | str | Path) -> dict[str, Any]:
    """Rank several models on one prompt set: answers, both-order judgments, a Bradley–Terry fit with intervals.

    Args:
        config: The arena: an `ArenaConfig`, a dict of its fields or a YAML file (`models`, `prompts`, `judge`,
            `reference`, `prompts_per_pair`, `limit`, `out`, ...).

    Returns:
        What OUT/arena.json holds: per model its score (log-odds against the reference) with a 95% interval by
        bootstrap over prompts, its rank and rank range, wins/losses/ties and mean answer length; the
        length-controlled scores; the design, the judge calls and the cost. OUT/arena.md and OUT/arena.svg are
        written beside it.

    Raises:
        ConfigError: The reference is not one of the models, or the plan exceeds `max_calls`.
        DatasetError: The prompts or an answer file cannot be read, an answer file lacks a prompt's answer, or the
            judge decided no comparison.
        ProviderError: A model failed to answer for good, or the judge failed for good (a failed judgment is
            counted and left out of the fit instead).
    """
    assert isinstance(config, ArenaConfig)  # @public made it one
    return asyncio.run(arena_async(config))
