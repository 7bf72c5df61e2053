"""An arena of N models: each answers one prompt set, the judge compares pairs of answers in both orders on a
sparse schedule, and a Bradley–Terry fit puts every model on one log-odds scale with bootstrap intervals.

The arena's files: arena.json, arena.md and arena.svg (scores with their 95% intervals).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from charter.api_args import ConfigArg, public
from charter.concurrency import run_sync
from charter.errors import ConfigError, DatasetError, TooManyFailures
from charter.evals.winrate import (
    ChecklistAggregation,
    ChecklistColumn,
    EvalScoring,
    conversation_id,
    first_violation_lines,
    first_violations,
    judges_steps,
    load_prompts,
    scoring_mode,
)
from charter.judge.judgment import COMBINATIONS, DEFAULT_COMBINATION
from charter.judge.modes import DEFAULT_MODE
from charter.judge.pairwise import combination_lines, combination_summary
from charter.judge.settings import AnswerMode, CombinationName
from charter.records import Judgment, Message, Pair, as_records
from charter.runs.rewards import PAIR_SCORING
from charter.stats.bradley_terry import Comparison, connected, fit, lc_scores
from charter.training import data
from charter.training.output import write_json
from charter.yamlio import ConfigModel, config_with_fields

if TYPE_CHECKING:
    from charter.constitutions.schema import Constitution
    from charter.judge.settings import JudgeSettings


class ArenaConfig(ConfigModel):
    """Settings of `charter eval arena`."""

    models: list[str] = Field(min_length=2)
    """Model strings, or answer files (JSONL rows with prompt and answer) whose answers are already made."""
    prompts: Path
    """Prompts: JSONL/parquet with a prompt or messages column."""
    judge: str = "local:smollm2-135m-instruct"
    """Judge model string."""
    judge_api_key_env: str | None = None
    """The variable holding the judge's key (for a host other than api.openai.com / api.anthropic.com)."""
    panel: list[str] = Field(default_factory=list)
    """More judge models: with any, `judge` and these answer as one panel (charter's `Panel`: P(A) averaged, a
    pair that any member fails is a failed judgment)."""
    out: Path = Path("arena")
    """Folder for arena.json, arena.md, arena.svg, the answers and the call cache."""
    reference: str | None = None
    """The model whose score is 0; the first listed when unset."""
    constitution: str = "harmless"
    """Constitution name or YAML path the judge compares against."""
    judge_mode: AnswerMode = DEFAULT_MODE
    """How the judge answers: a pairwise mode of the table of modes (logprobs, cot or verdict), asked in both
    orders; or `stepwise`, each answer judged once as the next step of its prompt's conversation, recording each
    side's first violating step."""
    principles_per_pair: int = Field(default=1, ge=1)
    """Principles each comparison is judged under (sampled by weight, seeded)."""
    combine: CombinationName = DEFAULT_COMBINATION
    """How a comparison's per-principle votes become one (`JudgeSettings.combine`): `weighted`, their mean, or
    `priority`, the constitution's priority order (with `principles_per_pair` covering its levels)."""
    scoring: EvalScoring = PAIR_SCORING
    checklist_column: ChecklistColumn = "checklist"
    aggregation: ChecklistAggregation = "explicit"
    per_pair: int | None = Field(default=None, ge=1)
    """Prompts each pair of models is compared on; unset: about 2 / (N - 1) of the prompts (each model in about
    two comparisons per prompt), all of them with 3 models or fewer."""
    max_calls: int | None = Field(default=None, ge=2)
    """Most judge calls (2 per comparison and judge: both orders, each panel member); lowers `per_pair` to fit."""
    limit: int | None = Field(default=50, ge=1)
    """Most prompts to use."""
    max_tokens: int = Field(default=128, ge=1)
    """Most tokens per answer."""
    temperature: float = Field(default=0.0, ge=0.0)
    """Sampling temperature of the answers."""
    bootstrap: int = Field(default=200, ge=10)
    """Resamples of the prompts for the intervals."""
    seed: int = 0
    """Seed of prompt sampling, the schedule's rotation and the bootstrap."""
    concurrency: int = Field(default=16, ge=1)
    """Judge calls in flight."""
    human_labels: Path | None = None
    """JSONL of people's verdicts on some comparisons (rows: prompt, model_a, model_b, preferred: a, b or tie):
    adds each labelled pair's prediction-powered win rate (at least 10 matched labels)."""


def schedule(models: list[str], prompt_ids: list[str], per_pair: int) -> list[tuple[int, int, int]]:
    """(prompt index, model i, model j) of every comparison: each pair on the `per_pair` prompts that rank first by
    a hash of the pair and the prompt. A pair keeps its prompts when a model is added, so a grown arena judges
    only the new pairs; over all pairs the prompts rotate, each prompt comparing a different subset."""
    out = []
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            a, b = sorted((models[i], models[j]))
            rank = sorted(range(len(prompt_ids)), key=lambda k: _hash(a, b, prompt_ids[k]))
            out += [(k, i, j) for k in sorted(rank[:per_pair])]
    return out


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def calls_per_comparison(config: ArenaConfig, prompt_steps: int = 0) -> int:
    """Judge calls a comparison makes: both orders, by the judge and each panel member (by checklist: at most one
    for each answer). Judge mode `stepwise` asks one call per step, not per principle: each answer's step and the
    prompt's own `prompt_steps` assistant steps, at most (the call cache answers a step already asked)."""
    if judges_steps(config.scoring, config.judge_mode):
        return (1 + len(config.panel)) * (2 + prompt_steps)
    return 2 * (1 + len(config.panel)) * config.principles_per_pair


def planned_calls(config: ArenaConfig, pairs: list[Pair], constitution: Constitution) -> int:
    """The judge calls judging `pairs` makes. Judge mode `stepwise`: the distinct step prompts the pairs ask (a
    prompt's steps are shared by its pairs and an answer's step by the pairs it is in; the call cache asks each
    once), by the judge and each panel member; otherwise `calls_per_comparison` a pair."""
    from charter.judge.pairwise import principle_key, principles_for
    from charter.judge.steps import step_requests

    if not judges_steps(config.scoring, config.judge_mode):
        return calls_per_comparison(config) * len(pairs)
    settings = _settings(config)
    asked = {
        request
        for pair in pairs
        for request in step_requests(
            constitution, pair, principles_for(constitution, settings, principle_key(pair, settings), config.seed)
        )
    }
    return (1 + len(config.panel)) * len(asked)


def _settings(config: ArenaConfig) -> JudgeSettings:
    from charter.judge.settings import JudgeSettings

    return JudgeSettings(
        mode=config.judge_mode, orders="both", principles_per_pair=config.principles_per_pair, combine=config.combine
    )


def pairs_per_pair(config: ArenaConfig, n_prompts: int, prompt_steps: int = 0) -> int:
    """Prompts per pair: `per_pair`, else the default, lowered to fit `max_calls` (under judge mode `stepwise`, with
    up to `prompt_steps` assistant steps in a prompt)."""
    n_pairs = len(config.models) * (len(config.models) - 1) // 2
    k = config.per_pair or min(n_prompts, math.ceil(2 * n_prompts / (len(config.models) - 1)))
    if config.max_calls is not None:
        each = calls_per_comparison(config, prompt_steps)
        k = min(k, config.max_calls // (each * n_pairs))
        if k < 1:
            raise ConfigError(
                f"max_calls: {config.max_calls} is fewer than {each} calls for each of the {n_pairs} pairs"
            )
    return min(k, n_prompts)


def _answer_file(spec: str) -> Path | None:
    path = Path(spec)
    return path if path.suffix in (".jsonl", ".parquet") and path.exists() else None


def model_name(spec: str) -> str:
    """A model's name in the arena: the model string, or an answer file's stem."""
    path = _answer_file(spec)
    return path.stem if path else spec


def read_answers(path: Path, prompts: list[list[dict[str, Any]]]) -> list[str]:
    """An answer file's answers in the order of the prompts, matched on the prompt's whole conversation (a row's
    `prompt` as messages, or its `prompt_id`); a row whose prompt is one text matches the prompt of that one user
    message, else the one prompt ending in that message."""
    rows = [(n, row) for n, row in enumerate(data.read_rows(str(path)), 1)]
    for n, row in rows:
        if not isinstance(row.get("answer"), str) or row.get("prompt") is None:
            raise DatasetError(f"{path}: row {n}: needs prompt and answer (a string)")
    found = prompt_matches(path, [(n, row, row["answer"]) for n, row in rows], prompts)
    missing = [p[-1]["content"] for k, p in enumerate(prompts) if k not in found]
    if missing:
        raise DatasetError(f"{path}: no answer to {len(missing)} prompts, the first: {missing[0][:60]!r}")
    return [found[k] for k in range(len(prompts))]


def prompt_matches(path: Path, rows: list[tuple[int, dict, Any]], prompts: list[list[dict[str, Any]]]) -> dict:
    """prompt index -> the value of the row naming that prompt, for (row number, row, value) rows: by `prompt_id`
    (a conversation's identity), by `prompt` given as messages (the whole conversation), or by `prompt` given as one
    text (the prompt of that one user message, else the one prompt ending in it; two prompts ending in it is an
    error naming the row, never a guess)."""
    ids = {conversation_id(p): k for k, p in enumerate(prompts)}
    ends: dict[str, list[int]] = {}
    for k, p in enumerate(prompts):
        ends.setdefault(p[-1]["content"], []).append(k)
    found = {}
    for n, row, value in rows:
        prompt, given = row.get("prompt"), row.get("prompt_id")
        if isinstance(given, str):
            k = ids.get(given)
        else:
            messages = data.message_dicts(prompt, "user", f"{path}: row {n}: prompt")
            k = ids.get(conversation_id(messages))
            if k is None and isinstance(prompt, str) and len(ends.get(prompt, ())) > 1:
                raise DatasetError(f"{path}: row {n}: prompt: {len(ends[prompt])} prompts end in this message; name "
                                   "the conversation (prompt as messages, or prompt_id)")  # fmt: skip
            if k is None and isinstance(prompt, str) and prompt in ends:
                k = ends[prompt][0]
        if k is not None:
            found[k] = value
    return found


async def _answers(spec: str, prompts: list, config: ArenaConfig, cache: str, meter: Any) -> list[str]:
    from charter.providers import SamplingParams, get_model

    path = _answer_file(spec)
    if path is not None:
        return read_answers(path, prompts)
    model = get_model(spec, role="policy", cache=cache, meter=meter)
    try:
        params = SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed)
        return [c.text.strip() for c in await model.generate([as_records(p) for p in prompts], params)]
    finally:
        await model.aclose()


async def _judge(config: ArenaConfig, pairs: list[Pair], cache: str, meter: Any) -> dict[str, Judgment]:
    from charter.constitutions import load_constitution
    from charter.judge.pairwise import judge_many, judgments_by_pair
    from charter.providers import get_model

    constitution = load_constitution(config.constitution)
    settings = _settings(config)
    from charter.judge.panel import Panel

    keys = [config.judge_api_key_env] + [None] * len(config.panel)
    judges = [
        get_model(j, role="judge", cache=cache, meter=meter, api_key_env=key)
        for j, key in zip([config.judge, *config.panel], keys)
    ]
    model: Any = Panel(judges) if len(judges) > 1 else judges[0]
    if scoring_mode(config.scoring, config.judge_mode).needs_context:
        from charter.evals.winrate import judge_by_checklist

        return await judge_by_checklist(model, constitution, pairs, str(config.prompts), config, close=True)
    judged = judge_many(model, constitution, pairs, settings, config.seed, config.concurrency)
    return await judgments_by_pair(judged, close=model)


async def arena_async(config: ArenaConfig) -> dict[str, Any]:
    """The arena; writes OUT/arena.json, arena.md and arena.svg and returns the summary (see `arena`)."""
    from charter.constitutions import load_constitution
    from charter.providers.usage import UsageMeter

    if scoring_mode(config.scoring, config.judge_mode).needs_context and config.panel:
        raise ConfigError(f"panel: scoring {config.scoring} takes one judge")
    if config.panel and COMBINATIONS[config.combine].recorded:
        raise ConfigError(f"panel: a panel pools its members' mean votes; combine {config.combine} takes one judge")
    names = [model_name(m) for m in config.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    reference = config.reference or names[0]
    if reference not in names and reference not in config.models:
        raise ConfigError(f"reference: {reference!r} is not one of the models {names}")
    ref = names.index(reference) if reference in names else config.models.index(reference)
    prompts = load_prompts(str(config.prompts), config.limit, config.seed)
    config.out.mkdir(parents=True, exist_ok=True)
    cache, meter = str(config.out / "calls.sqlite"), UsageMeter()
    answers = [await _answers(m, prompts, config, cache, meter) for m in config.models]
    ids = [_hash(orjson_dumps(p))[:16] for p in prompts]
    prompt_steps = max(sum(m["role"] == "assistant" for m in p) for p in prompts)
    per_pair = pairs_per_pair(config, len(prompts), prompt_steps)
    planned = schedule(names, ids, per_pair)
    pairs = _pairs(planned, prompts, ids, names, answers)
    constitution = load_constitution(config.constitution)
    calls = planned_calls(config, pairs, constitution)
    all_calls = planned_calls(config, _pairs(schedule(names, ids, len(prompts)), prompts, ids, names, answers),
                              constitution)  # fmt: skip
    judged = await _judge(config, pairs, cache, meter)
    comparisons, failed = [], 0
    for (k, i, j), pair in zip(planned, pairs):
        r = judged.get(pair.pair_id)
        if r is None or r.status != "ok" or r.p_a is None:
            failed += 1  # a failed judgment is left out and counted, never a tie
            continue
        comparisons.append(Comparison(k, i, j, float(r.p_a), float(len(pair.a) - len(pair.b))))
    if not comparisons:
        first = next((r.failure for r in judged.values() if r.failure is not None), None)
        why = f"; the first: {first.kind}: {first.message}" if first is not None else ""
        raise TooManyFailures(f"no judgment succeeded ({failed} failed{why}): nothing to rank")
    summary = _summary(config, names, ref, answers, comparisons, failed, len(prompts), per_pair, meter)
    summary["calls"], summary["design"]["all_pairs_calls"] = calls, all_calls
    summary["combined"] = combination_summary(judged.values())
    if judges_steps(config.scoring, config.judge_mode):
        summary["first_violations"] = first_violations(
            {name: [judged.get(p.pair_id) for p in pairs if name in (p.a_model, p.b_model)] for name in names},
            {
                name: ["a" if p.a_model == name else "b" for p in pairs if name in (p.a_model, p.b_model)]
                for name in names
            },
        )
    if config.human_labels is not None:
        summary["human_labels"] = human_win_rates(config.human_labels, names, prompts, comparisons)

    write_report(config.out, summary)
    return summary


def _pairs(
    planned: list[tuple[int, int, int]], prompts: list, ids: list[str], names: list[str], answers: list[list[str]]
) -> list[Pair]:
    """The comparisons of a schedule: on prompt k, model i's answer as `a` and model j's as `b`."""
    return [
        Pair(pair_id=f"arena-{k}-{i}-{j}", prompt_id=ids[k], prompt=[Message.model_validate(m) for m in prompts[k]],
             a=answers[i][k], b=answers[j][k], a_source="policy", b_source="policy", a_model=names[i],
             b_model=names[j])
        for k, i, j in planned
    ]  # fmt: skip


PREFERRED = {"a": 1.0, "tie": 0.5, "b": 0.0}


def human_win_rates(path: Path, names: list[str], prompts: list, comparisons: list[Comparison]) -> list[dict]:
    """Per pair with people's labels: the judge's P(i better) on every prompt of the pair, corrected by the labels
    (prediction-powered inference), and the labels' own rate; None for a pair with fewer than 10 matched labels."""
    from charter.agreement.summary import MIN_LABELS
    from charter.stats.ppi import ppi_mean

    labels: dict[tuple[int, int, int], float] = {}
    for n, row in enumerate(data.read_rows(str(path)), 1):
        a, b, preferred = row.get("model_a"), row.get("model_b"), row.get("preferred")
        known = row.get("prompt") is not None or isinstance(row.get("prompt_id"), str)
        found = prompt_matches(path, [(n, row, True)], prompts) if known else {}
        if a not in names or b not in names or not found or preferred not in PREFERRED:
            raise DatasetError(f"{path}: row {n}: needs prompt (of the arena; or its prompt_id), model_a, model_b "
                               f"(arena models) and preferred: a, b or tie")  # fmt: skip
        i, j, share = names.index(a), names.index(b), PREFERRED[preferred]
        labels[(next(iter(found)), *((i, j) if i < j else (j, i)))] = share if i < j else 1 - share
    out = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            mine = [c for c in comparisons if (c.i, c.j) == (i, j)]
            matched = [(c.p_i, labels[(c.prompt, i, j)]) for c in mine if (c.prompt, i, j) in labels]
            if not matched:
                continue
            row: dict[str, Any] = {"model": names[i], "against": names[j], "matched": len(matched), "ppi": None,
                                   "human": None}  # fmt: skip
            if len(matched) >= MIN_LABELS:
                judge_all, judged, human = [c.p_i for c in mine], [m[0] for m in matched], [m[1] for m in matched]
                row["ppi"] = ppi_mean(judge_all, judged, human).within(0, 1).model_dump()
                row["human"] = ppi_mean(judge_all, judged, human, method="human").within(0, 1).model_dump()
            out.append(row)
    return out


def orjson_dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def _fitted_models(
    names: list[str], ref: int, comparisons: list[Comparison]
) -> tuple[dict[int, int], list[Comparison]]:
    """The models some decided comparison reaches (model index -> index in the fit) and the comparisons in those
    indexes.

    Raises:
        DatasetError: The reference has no decided comparison, or the decided comparisons split the models into
            groups that never meet (their scores would not be on one scale).
    """
    present = sorted({c.i for c in comparisons} | {c.j for c in comparisons})
    if ref not in present:
        raise DatasetError(f"the reference {names[ref]} has no decided comparison: nothing to score against")
    at = {m: k for k, m in enumerate(present)}
    fitted = [c._replace(i=at[c.i], j=at[c.j]) for c in comparisons]
    if not connected(len(present), [(c.i, c.j) for c in fitted]):
        raise DatasetError("the decided comparisons do not join all the models: their scores are not on one scale")
    return at, fitted


def _summary(
    config: ArenaConfig,
    names: list[str],
    ref: int,
    answers: list[list[str]],
    comparisons: list[Comparison],
    failed: int,
    n_prompts: int,
    per_pair: int,
    meter: Any,
) -> dict[str, Any]:
    n = len(names)
    at, fitted = _fitted_models(names, ref, comparisons)
    result = fit(len(at), fitted, at[ref], bootstrap=config.bootstrap, seed=config.seed)
    lc, length_coef = lc_scores(len(at), fitted, at[ref]) if len(fitted) >= 10 else (None, None)
    models = []
    for m in range(n):
        mine = [(c.p_i if c.i == m else 1 - c.p_i) for c in comparisons if m in (c.i, c.j)]
        k = at.get(m)  # None: no decided comparison reached the model, so it is unranked, never given a score
        models.append({
            "model": names[m],
            **{key: None if k is None else result[key][k]
               for key in ("score", "ci_low", "ci_high", "rank", "rank_low", "rank_high")},
            "wins": sum(p > 0.5 for p in mine), "losses": sum(p < 0.5 for p in mine),
            "ties": sum(p == 0.5 for p in mine),
            "lc_score": float(lc[k]) if lc is not None and k is not None else None,
            "mean_length": sum(len(a) for a in answers[m]) / len(answers[m]),
        })  # fmt: skip
    n_pairs, each = n * (n - 1) // 2, calls_per_comparison(config)
    return {
        "models": sorted(models, key=lambda row: (row["rank"] is None, row["rank"] or 0)),
        "reference": names[ref],
        "judge": config.judge,
        "panel": config.panel,
        "judge_mode": config.judge_mode,
        "combine": config.combine,
        "scoring": config.scoring,
        "constitution": config.constitution,
        "prompts": str(config.prompts),
        "prompts_used": n_prompts,
        "design": {
            "kind": "sparse round-robin" if per_pair < n_prompts else "all pairs",
            "per_pair": per_pair,
            "pairs": n_pairs,
            "comparisons": n_pairs * per_pair,
            "all_pairs_comparisons": n_pairs * n_prompts,
            "all_pairs_calls": each * n_pairs * n_prompts,
            "orders": "one"
            if scoring_mode(config.scoring, config.judge_mode).needs_context
            or judges_steps(config.scoring, config.judge_mode)
            else "both",
        },
        "calls": each * n_pairs * per_pair,
        "judged": len(comparisons),
        "failures": failed,
        "cost": meter.prior_cost + meter.total_cost,
        "length_coefficient": length_coef,
        "ci_method": f"percentile bootstrap over prompts ({config.bootstrap} resamples) spanned with the "
        "profile-likelihood interval under a normal(0, 10) prior on each score",
    }


@public
def arena(config: ConfigArg[ArenaConfig] | None = None, **fields: Any) -> dict[str, Any]:
    """Rank N models on one Bradley–Terry scale, judged pairwise in both orders on a sparse schedule.

    `arena(models=[...], prompts=..., judge=..., out=...)` or `arena(ArenaConfig(...))`. Every answer and judgment
    goes through the call cache in OUT/calls.sqlite: a re-run is free, and adding a model judges only its new pairs.

    Args:
        config: The settings, as an `ArenaConfig`, a dict of its fields or a YAML file; None to take them all from
            `fields`.
        **fields: `ArenaConfig` fields; with a dict `config`, they override its keys.

    Returns:
        The summary written to OUT/arena.json: `models` (per model: score against the reference on a log-odds
        scale, its 95% interval (None for the reference, whose score is 0 by definition), rank and rank range,
        wins/losses/ties, the length-controlled score, the answers' mean length), the judge, prompts, design,
        calls and cost; with `human_labels`, each labelled pair's prediction-powered and people-only win rates.

    Raises:
        ArgumentError: A field is not a valid `ArenaConfig` field (`judge_mode` not a pairwise mode, among
            others), or an argument is of the wrong type.
        ConfigError: The settings do not validate; `reference` is not a model; `max_calls` is below 2 per pair
            and judge; a model is listed twice.
        DatasetError: The prompts, an answer file or the labels cannot be read or lack a column.
        TooManyFailures: No judgment succeeded (exit code 3).
        UnknownModel: A model string names no known provider.
        MissingAPIKey: The variable holding a remote model's key is unset.
        MissingExtra: choix or scikit-learn (the `agreement` extra) is not installed, or a model's provider needs
            an extra that is not installed.
        ConstitutionError: `constitution` is neither a bundled name nor a valid constitution file.
        ProviderError: A model failed to answer for good.
    """
    config = config_with_fields(ArenaConfig, config, fields)
    return run_sync(arena_async(config))


def write_report(out: Path, summary: dict[str, Any]) -> None:
    """Write OUT/arena.json, OUT/arena.md and OUT/arena.svg."""
    write_json(out / "arena.json", summary)
    (out / "arena.md").write_text(markdown(summary), encoding="utf-8")
    plot(summary, out / "arena.svg")


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def markdown(summary: dict[str, Any]) -> str:
    """The ranking as a markdown table, with the design and what an overlapping rank range means."""
    d = summary["design"]
    orders = "in both orders" if d["orders"] == "both" else "once a comparison"
    lines = [
        "## Arena",
        "",
        f"{len(summary['models'])} models on {summary['prompts_used']} prompts from `{summary['prompts']}`, judged "
        f"by `{summary['judge']}` {orders}. Design: {d['kind']}, each pair on {d['per_pair']} prompts "
        f"({d['comparisons']} comparisons, {summary['calls']} judge calls; all pairs on every prompt would be "
        f"{d['all_pairs_comparisons']} comparisons, {d['all_pairs_calls']} calls). {summary['failures']} failed "
        "judgments left out.",
        "",
        f"Scores are Bradley–Terry log-odds of beating `{summary['reference']}` (score 0 by definition), with 95% "
        f"intervals ({summary['ci_method']}). Models whose rank ranges overlap are not told apart by this arena.",
        "",
        "| rank (range) | model | score | 95% CI | LC score | W / L / T | mean length |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in summary["models"]:
        if m["rank"] is None:
            lines.append(
                f"| unranked | `{m['model']}` | no decided comparison | | | 0 / 0 / 0 | {m['mean_length']:.0f} |"
            )
            continue
        interval = "reference" if m["ci_low"] is None else f"{_f(m['ci_low'])} – {_f(m['ci_high'])}"
        lines.append(
            f"| {m['rank']} ({m['rank_low']}–{m['rank_high']}) | `{m['model']}` | {_f(m['score'])} | {interval} | "
            f"{_f(m['lc_score'])} | {m['wins']} / {m['losses']} / {m['ties']} | {m['mean_length']:.0f} |"
        )
    for h in summary.get("human_labels") or []:
        if h["ppi"] and h["human"]:
            ppi, alone = h["ppi"], h["human"]
            lines += ["", f"`{h['model']}` against `{h['against']}` with people's labels on {h['matched']} "
                      f"comparisons: win rate {ppi['value']:.3f} [{ppi['low']:.3f}, {ppi['high']:.3f}] "
                      f"prediction-powered, {alone['value']:.3f} [{alone['low']:.3f}, {alone['high']:.3f}] from "
                      "the labels alone."]  # fmt: skip
    if not summary.get("human_labels"):
        lines += [
            "",
            "How far people agree with this judge is not measured here: label some comparisons "
            "(`--human-labels`) or spot-check the judge before reading these scores as people's preferences.",
        ]
    if summary.get("combined"):
        lines += ["", *combination_lines(summary["combined"])]
    if summary.get("first_violations"):
        lines += ["", *first_violation_lines(summary["first_violations"])]
    lines += ["", "![scores with 95% intervals](arena.svg)", ""]
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Scores with their 95% intervals, best at the top (matplotlib SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in reversed(summary["models"]) if m["score"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rows) + 1.2))
    try:
        y = list(range(len(rows)))
        scores = [m["score"] for m in rows]
        err = [  # the reference has no interval: its score is 0 by definition
            [0.0 if m["ci_low"] is None else m["score"] - m["ci_low"] for m in rows],
            [0.0 if m["ci_high"] is None else m["ci_high"] - m["score"] for m in rows],
        ]
        ax.errorbar(scores, y, xerr=err, fmt="o", capsize=3)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(y, [m["model"] for m in rows])
        ax.set_xlabel(f"Bradley–Terry score (log-odds against {summary['reference']})")
        fig.tight_layout()
        fig.savefig(path, format="svg")
    finally:
        plt.close(fig)
