"""Spec compliance (`charter eval spec`): a model's answers, or a dataset's responses, judged against a prose spec
section by section, with the judge's agreement with the spec's own labelled examples beside every figure.

What is judged: each response against each section it is meant for. The spec's own example conversations are each
meant for their section; a prompt or dataset row names its `section` (one id or a list), or is judged against every
section chosen (`sections`, default all). The judge rates the response under the section on the rubric's 1..`scale`
(judge mode `score`: the expected score over the score tokens with `rating: logprobs`, the number it writes with
`cot` or `verdict`); the response complies where the score is at least `comply_at`. A rating the judge fails to
give is a recorded failure: left out of compliance and counted, never a score.

Agreement with the spec's authors: the same judge rates, under their section, the GOOD and BAD replies of the
spec's own examples, with the same rubric and threshold. Two figures: `agreement`, the share of labelled pairs
(each GOOD reply against each BAD one, as the import writes them) whose GOOD reply the judge scores above the BAD one
(a tie counts half); `label_agreement`, the share of labelled replies whose verdict (complies or not) is the label
(GOOD complies, BAD does not; OK replies are left out). A section without labelled pairs says so; no number stands
in for it.

Intervals: a figure whose units (responses; examples for agreement) each give one judgment has the exact
(Clopper-Pearson) 95% interval; where a unit gives several (a response judged under several sections of one level,
an example with several pairs), the unit's mean is the observation and the interval is the betting interval of a
bounded mean (`stats.intervals.bounded_mean_interval`), valid at any n.

Roles: the judge sees the spec's conversations with their roles and authority (system, developer, user; a `tool`
message as untrusted data). The model answering them gets `developer` messages as `system` messages and `tool`
messages as user messages that begin `Tool output:`, since a spec's tool output answers no call a provider could
check.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
from pydantic import Field, model_validator

from charter.api_args import ConfigArg, public
from charter.concurrency import bounded_map, run_sync
from charter.constitutions import Constitution, load_constitution
from charter.constitutions.markdown import SpecPair, example_pairs, read_markdown_spec
from charter.errors import ConfigError, DatasetError, JudgeParseError, ProviderError
from charter.judge.judgment import dooms_run
from charter.judge.modes import DEFAULT_RATING, DEFAULT_RATING_MODE
from charter.judge.score import score_one
from charter.judge.settings import JudgeSettings, RatingMode
from charter.providers.prices import Price
from charter.records import Message
from charter.records.base import Role, plain_roles
from charter.stats.intervals import bounded_mean_interval, exact_interval
from charter.tables import read_rows
from charter.yamlio import ConfigModel, config_with_fields

#: The summary's file name in `out` (the report `spec-eval.md` and the judgments `spec-eval.jsonl` lie beside it).
SPEC_EVAL_JSON = "spec-eval.json"
#: The roles a prompt's messages may take: charter's, and the ones a spec's chain of command adds.
SPEC_ROLES = ("system", "developer", "user", "assistant", "tool")
#: A note where a section or level has no labelled pairs: no agreement is invented for it.
NO_PAIRS = "no labelled pairs in the spec"


class SpecEvalConfig(ConfigModel):
    """Settings of `charter eval spec`: one of `model` (its answers are judged) or `dataset` (its responses are)."""

    spec: str
    """The spec: a Markdown spec (imported as `charter constitutions import --from markdown` would), or a
    constitution YAML (an imported spec, or any constitution)."""
    model: str | None = None
    """The model whose answers are judged: it answers the spec's example conversations, or `prompts`."""
    model_api_key_env: str | None = None
    """The variable holding the model's key (for a host other than api.openai.com / api.anthropic.com)."""
    prompts: str | None = None
    """Prompts for `model` (JSONL/parquet: `prompt` or `messages`, optionally `section`); unset: the spec's own
    example conversations, each for its section."""
    dataset: str | None = None
    """Responses to judge instead of a model's: JSONL/parquet rows with `prompt` (a string or messages), `response`
    and optionally `section` (an id or a list of ids)."""
    judge: str = "local:smollm2-135m-instruct"
    """The judge model string."""
    judge_api_key_env: str | None = None
    """The variable holding the judge's key (likewise)."""
    rating: RatingMode = DEFAULT_RATING
    """How the judge's score is read: logprobs (the expected score over the score tokens), cot or verdict."""
    scale: int = Field(default=5, ge=2, le=9)
    """The top of the rubric's scale: scores run 1..scale."""
    comply_at: float = Field(default=4.0, ge=1)
    """A response complies with a section where its score is at least this (at most `scale`)."""
    sections: list[str] | None = None
    """The section ids to judge (unset: every principle of the spec)."""
    limit: int | None = Field(default=None, ge=1)
    """Judge at most this many prompts or rows, a seeded sample kept in order (None: all)."""
    agreement: bool = True
    """Judge the spec's labelled examples too, for the agreement beside every figure."""
    max_tokens: int = Field(default=256, ge=1)
    """Most tokens per answer of `model`."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    """Sampling temperature of `model`'s answers."""
    out: Path = Path("spec-eval")
    """The folder for spec-eval.json, spec-eval.md, spec-eval.jsonl and the judge's call cache (calls.sqlite)."""
    concurrency: int = Field(default=16, ge=1)
    """Judge calls in flight."""
    seed: int = 0
    """Seed of the sample (`limit`) and of the answers."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """USD per million tokens by model id or bare name, for a model genai-prices does not price; unpriced calls
    cost 0."""

    @model_validator(mode="after")
    def _one_source(self) -> SpecEvalConfig:
        if (self.model is None) == (self.dataset is None):
            raise ValueError(
                "give either a model (--model) whose answers are judged or a dataset (--dataset), not both"
            )
        if self.prompts is not None and self.model is None:
            raise ValueError("prompts: for a model's answers (--model); a dataset brings its own prompts")
        if self.comply_at > self.scale:
            raise ValueError(f"comply_at: at most the scale's top ({self.scale}), got {self.comply_at:g}")
        return self


@dataclass
class Item:
    """One response to judge, under the sections it is meant for."""

    key: str
    """Where it comes from: `spec:SECTION:LINE`, or `FILE:ROW`."""
    prompt: list[Message]
    """The conversation before the response."""
    sections: list[str]
    """The sections it is judged under."""
    response: str | None = None
    """The response (None until the model has answered)."""
    failure: str | None = None
    """Why the model gave no answer, where it failed: a failure of each judgment of the item."""


@dataclass
class Verdict:
    """A response's rating under one section, or the failure in its place."""

    score: float | None
    complies: bool | None
    failure: str | None = None


@dataclass
class _Figures:
    """Observations grouped by unit, for one section or level."""

    units: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    ties: int = 0
    """Pairs the judge scored alike (agreement only: each counts half)."""

    def add(self, unit: str, value: float | None) -> None:
        if value is None:
            self.failures += 1
        else:
            self.units.setdefault(unit, []).append(value)
            self.ties += value == 0.5


def load_spec(source: str) -> Constitution:
    """The spec as a constitution: a Markdown spec imported, a YAML constitution (or bundled name) loaded.

    Raises:
        ConstitutionError: No such file or name, or not a valid spec or constitution (one line).
    """
    if Path(source).suffix.lower() in (".md", ".markdown"):
        return read_markdown_spec(source).constitution
    return load_constitution(source)


def _chosen(constitution: Constitution, sections: list[str] | None) -> list[str]:
    if sections is None:
        return constitution.principle_ids
    unknown = [s for s in sections if s not in constitution.principle_ids]
    if unknown:
        raise ConfigError(
            f"sections: no section '{unknown[0]}' in {constitution.name} (it has {len(constitution.principles)})"
        )
    return list(sections)


def as_messages(conversation: Sequence[dict[str, str]] | Sequence[Any]) -> list[Message]:
    """A spec conversation as charter's messages, roles kept: what the judge sees."""
    out = []
    for m in conversation:
        role, content = (m["role"], m["content"]) if isinstance(m, dict) else (m.role, m.content)
        out.append(Message(role=cast(Role, role), content=content))
    return out


def spec_items(constitution: Constitution, sections: list[str]) -> list[Item]:
    """The spec's own example conversations, each once under its section."""
    items, seen = [], set()
    for pid in sections:
        for example in constitution.principle(pid).examples:
            conversation = [m.model_dump() for m in example.conversation]
            key = (pid, orjson.dumps(conversation))
            if key in seen or not conversation:
                continue
            seen.add(key)
            items.append(Item(f"spec:{pid}:{example.line}", as_messages(conversation), [pid]))
    return items


def _row_sections(row: dict[str, Any], where: str, chosen: list[str], known: set[str]) -> list[str]:
    named = row.get("section")
    if named is None:
        return chosen
    named = [named] if isinstance(named, str) else named
    if not isinstance(named, list) or not all(isinstance(s, str) for s in named):
        raise DatasetError(f"{where}: section: expected a section id or a list of them")
    unknown = [s for s in named if s not in known]
    if unknown:
        raise DatasetError(f"{where}: section: no section '{unknown[0]}' in the spec")
    return [s for s in named if s in chosen]


def file_items(source: str, chosen: list[str], known: set[str], responses: bool) -> list[Item]:
    """Prompts (and, with `responses`, their responses) of a JSONL/parquet file, each under its sections.

    Raises:
        DatasetError: No rows; a row without a prompt (`prompt` or `messages`), without a response where one is
            needed, or naming a section the spec does not have (one line naming the file, the row and the key).
    """
    rows = read_rows(source)
    if not rows:
        raise DatasetError(f"{source}: no rows")
    items = []
    for i, row in enumerate(rows):
        where = f"{source}:{i + 1}" if source.endswith(".jsonl") else f"{source}: row {i}"
        key = "prompt" if row.get("prompt") is not None else "messages"
        if row.get(key) is None:
            raise DatasetError(f"{where}: missing key 'prompt' (a string or a message list)")
        prompt = _prompt(row[key], where, key)
        response = row.get("response")
        if responses and (not isinstance(response, str) or not response.strip()):
            what = "missing key 'response'" if response is None else "response: expected a non-empty string"
            raise DatasetError(f"{where}: {what}")
        items.append(Item(f"{Path(source).name}:{i + 1}", prompt, _row_sections(row, where, chosen, known), response))
    return items


def _prompt(value: Any, where: str, key: str) -> list[Message]:
    if isinstance(value, str):
        return [Message(role="user", content=value)]
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and m.get("role") in SPEC_ROLES and isinstance(m.get("content"), str) for m in value
    ):
        roles = ", ".join(SPEC_ROLES)
        raise DatasetError(f"{where}: {key}: expected a string or a list of {{role, content}} messages ({roles})")
    messages = as_messages(value)
    return messages[:-1] if key == "messages" and messages and messages[-1].role == "assistant" else messages


def _sample(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    if not limit or limit >= len(items):
        return items
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [item for i, item in enumerate(items) if i in keep]


def share(figures: _Figures, ties: bool = False) -> dict[str, Any]:
    """A share with its 95% interval at its n: exact where each unit gives one observation, else the betting
    interval of the units' means; with `ties`, how many observations were ties (pair agreement)."""
    values = [v for vs in figures.units.values() for v in vs]
    base = {"n": len(values), "units": len(figures.units), "failures": figures.failures}
    if ties:
        base["ties"] = figures.ties
    if not values:
        return {**base, "value": None, "ci95": None, "interval": None}
    if all(len(vs) == 1 for vs in figures.units.values()):
        low, high = exact_interval(sum(values), len(values))
        return {**base, "value": sum(values) / len(values), "ci95": [low, high], "interval": "exact"}
    means = [sum(vs) / len(vs) for vs in figures.units.values()]
    bounds = bounded_mean_interval(means)
    assert bounds is not None
    return {**base, "value": sum(means) / len(means), "ci95": list(bounds), "interval": "betting"}


def _reply_key(section: str, prompt: list[Message], reply: str) -> str:
    payload = orjson.dumps([section, [m.model_dump() for m in prompt], reply])
    return hashlib.sha256(payload).hexdigest()[:24]


class _Run:
    """One evaluation's models, settings and verdicts."""

    def __init__(self, config: SpecEvalConfig, constitution: Constitution, judge: Any) -> None:
        self.config, self.constitution, self.judge = config, constitution, judge
        self.settings = JudgeSettings(mode=DEFAULT_RATING_MODE, rating=config.rating, scale=config.scale)

    async def rate(self, prompt: list[Message], response: str, section: str) -> Verdict:
        try:
            scored = await score_one(self.judge, self.constitution, prompt, response, section, self.settings)
        except (JudgeParseError, ProviderError) as exc:
            if dooms_run(exc):
                raise
            return Verdict(None, None, f"{type(exc).__name__}: {exc}")
        return Verdict(scored.score, scored.score >= self.config.comply_at)

    async def rate_all(self, asks: list[tuple[list[Message], str, str]]) -> list[Verdict]:
        async def one(index: int) -> tuple[int, Verdict]:
            prompt, response, section = asks[index]
            return index, await self.rate(prompt, response, section)

        out: list[Verdict | None] = [None] * len(asks)
        async for index, verdict in bounded_map(one, range(len(asks)), self.config.concurrency):
            out[index] = verdict
        return [v for v in out if v is not None]


async def _answer(config: SpecEvalConfig, items: list[Item], meter: Any) -> None:
    from charter.providers import SamplingParams, get_model

    assert config.model is not None
    model = get_model(config.model, role="policy", meter=meter, api_key_env=config.model_api_key_env)
    params = SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed)

    async def one(item: Item) -> None:
        try:
            [completion] = await model.generate([plain_roles(item.prompt)], params)
            item.response = completion.text.strip()
        except ProviderError as exc:  # one answer failed: its judgments are failures, the rest go on
            if dooms_run(exc):
                raise
            item.failure = f"the model gave no answer: {exc}"

    try:
        async for _ in bounded_map(one, items, config.concurrency):
            pass
    finally:
        await model.aclose()


def agreement_figures(
    pairs: list[SpecPair], rated: dict[str, Verdict]
) -> tuple[dict[str, _Figures], dict[str, _Figures]]:
    """Per section: pair agreement (units: the spec's examples) and label agreement (units: its labelled replies,
    each once however many pairs it is in)."""
    by_pair: dict[str, _Figures] = {}
    replies: dict[tuple[str, str], tuple[Verdict, bool]] = {}
    for pair in pairs:
        prompt = as_messages(pair.prompt)
        good = rated[_reply_key(pair.section, prompt, pair.chosen)]
        bad = rated[_reply_key(pair.section, prompt, pair.rejected)]
        agreed = None
        if good.score is not None and bad.score is not None:
            agreed = 1.0 if good.score > bad.score else 0.5 if good.score == bad.score else 0.0
        by_pair.setdefault(pair.section, _Figures()).add(pair.label_source, agreed)
        replies[(pair.section, f"{pair.label_source}:{_reply_key(pair.section, prompt, pair.chosen)}")] = (good, True)
        replies[(pair.section, f"{pair.label_source}:{_reply_key(pair.section, prompt, pair.rejected)}")] = (bad, False)
    by_label: dict[str, _Figures] = {}
    for (section, unit), (verdict, wanted) in replies.items():
        complied = None if verdict.complies is None else float(verdict.complies == wanted)
        by_label.setdefault(section, _Figures()).add(unit, complied)
    return by_pair, by_label


def _merge(figures: Sequence[_Figures]) -> _Figures:
    """Several sections' figures as one (a level's): a unit's observations pooled."""
    merged = _Figures()
    for f in figures:
        for unit, values in f.units.items():
            merged.units.setdefault(unit, []).extend(values)
        merged.failures += f.failures
        merged.ties += f.ties
    return merged


async def judge_spec(config: SpecEvalConfig, constitution: Constitution) -> dict[str, Any]:
    """The evaluation's figures (see `evaluate_spec`) and its judgments, one row each."""
    from charter.providers import get_model
    from charter.providers.cache import CallCache
    from charter.providers.usage import UsageMeter

    chosen = _chosen(constitution, config.sections)
    known = set(constitution.principle_ids)
    if config.dataset is not None:
        items = file_items(config.dataset, chosen, known, responses=True)
    elif config.prompts is not None:
        items = file_items(config.prompts, chosen, known, responses=False)
    else:
        items = spec_items(constitution, chosen)
    items = _sample([i for i in items if i.sections], config.limit, config.seed)
    pairs = [p for p in example_pairs(constitution) if p.section in chosen] if config.agreement else []
    meter = UsageMeter(prices=config.prices)
    if config.model is not None and items:
        await _answer(config, items, meter)
    config.out.mkdir(parents=True, exist_ok=True)
    cache = CallCache(config.out / "calls.sqlite")
    judge = get_model(config.judge, role="judge", cache=cache, meter=meter, api_key_env=config.judge_api_key_env)
    try:
        run = _Run(config, constitution, judge)
        answered = [item for item in items if item.failure is None]
        asks = [(item.prompt, item.response or "", s) for item in answered for s in item.sections]
        replies: dict[str, tuple[list[Message], str, str]] = {}
        for pair in pairs:
            prompt = as_messages(pair.prompt)
            for reply in (pair.chosen, pair.rejected):
                replies.setdefault(_reply_key(pair.section, prompt, reply), (prompt, reply, pair.section))
        verdicts = await run.rate_all(asks + list(replies.values()))
    finally:
        await judge.aclose()
        cache.close()
    judged = dict(zip(((item.key, s) for item in answered for s in item.sections), verdicts))
    labelled = dict(zip(replies, verdicts[len(asks) :]))
    rows = []
    for item in items:
        for s in item.sections:
            v = judged.get((item.key, s)) or Verdict(None, None, item.failure)
            rows.append(
                {"item": item.key, "section": s, "score": v.score, "complies": v.complies, "failure": v.failure}
            )
    tallies = meter.tallies.values()
    return {
        "figures": _figures(constitution, chosen, rows, pairs, labelled),
        "items": len(items),
        "judgments": len(rows),
        "failures": sum(r["failure"] is not None for r in rows),
        "labelled_pairs": len(pairs),
        "calls": sum(t.calls for t in tallies),
        "cached_calls": sum(t.cached for t in tallies),
        "cost_usd": meter.total_cost,
        "rows": rows,
    }


def _figures(
    constitution: Constitution,
    chosen: list[str],
    rows: list[dict[str, Any]],
    pairs: list[SpecPair],
    labelled: dict[str, Verdict],
) -> dict[str, Any]:
    compliance: dict[str, _Figures] = {s: _Figures() for s in chosen}
    for row in rows:
        compliance[row["section"]].add(row["item"], None if row["complies"] is None else float(row["complies"]))
    by_pair, by_label = agreement_figures(pairs, labelled)
    counts = {s: sum(p.section == s for p in pairs) for s in chosen}

    def entry(members: list[str]) -> dict[str, Any]:
        paired = [by_pair[s] for s in members if s in by_pair]
        return {
            "compliance": share(_merge([compliance[s] for s in members])),
            "agreement": share(_merge(paired), ties=True) if paired else None,
            "label_agreement": share(_merge([by_label[s] for s in members if s in by_label])) if paired else None,
            "labelled_pairs": sum(counts[s] for s in members),
            "note": None if paired else NO_PAIRS,
        }

    sections = []
    for s in chosen:
        principle = constitution.principle(s)
        title = principle.source.heading if principle.source else s
        sections.append({"id": s, "title": title, "level": principle.level, "hard": principle.hard, **entry([s])})
    sections.sort(key=_worst_first)
    levels = [
        {"level": level, "sections": len(ids), **entry(ids)}
        for level, members in constitution.level_order()
        if (ids := [p.id for p in members if p.id in chosen])
    ]
    return {"overall": entry(chosen), "levels": levels, "sections": sections}


def _worst_first(section: dict[str, Any]) -> tuple[float, float, str]:
    """Lowest compliance first, then the wider-evidenced (more judged) first; sections never judged last."""
    figure = section["compliance"]
    value = figure["value"] if figure["value"] is not None else 2.0
    return value, -figure["n"], section["id"]


def spec_identity(constitution: Constitution, source: str) -> dict[str, Any]:
    """What the report names: the spec's file, version and skipped sections (where it was imported from one), and
    the constitution's name, version and hash."""
    origin = constitution.spec.model_dump() if constitution.spec else None
    return {
        "source": source,
        "origin": origin,
        "constitution": {"name": constitution.name, "version": constitution.version, "hash": constitution.hash},
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cell(figure: dict[str, Any] | None, note: str | None = None) -> str:
    if figure is None:
        return note or "n/a"
    if figure["value"] is None:
        return f"none judged ({figure['failures']} failed)"
    low, high = figure["ci95"]
    failed = f", {figure['failures']} failed" if figure["failures"] else ""
    ties = f", {figure['ties']} ties" if figure.get("ties") else ""
    return f"{_fmt(figure['value'])} [{_fmt(low)}, {_fmt(high)}] n={figure['n']}{ties}{failed}"


def markdown(summary: dict[str, Any]) -> str:
    """The report: the spec, the judge, then compliance per level and per section (worst first), each beside the
    judge's agreement with the spec's labels."""
    spec, figures = summary["spec"], summary["figures"]
    origin, constitution = spec["origin"], spec["constitution"]
    named = (
        f"`{origin['file']}` version {origin['version']} ({origin['sections']} sections, {origin['skipped']} skipped "
        f"by the import)"
        if origin
        else f"`{spec['source']}` (not imported from a prose spec)"
    )
    answers = f"`{summary['model']}`'s answers" if summary["model"] else f"The responses of `{summary['dataset']}`"
    lines = [
        "## Spec compliance",
        "",
        f"Spec {named}; constitution `{constitution['name']}` sha256 `{constitution['hash']}`.",
        "",
        f"{answers} on {summary['items']} prompts ({summary['prompts']}), judged by `{summary['judge']}` "
        f"(score/{summary['rating']} 1..{summary['scale']}; complies at {summary['comply_at']:g} or above): "
        f"{summary['judgments']} judgments, {summary['failures']} failed (left out of compliance). Agreement: the "
        f"same judge on the spec's {summary['labelled_pairs']} labelled pairs (GOOD scored above BAD, a tie half) "
        "and on their replies (GOOD complies, BAD does not). 95% intervals: exact, or the betting interval of a "
        "bounded mean where a unit gives several judgments.",
        "",
        *TABLE_HEAD,
        _row("**all sections**", figures["overall"]),
    ]
    for level in figures["levels"]:
        count = f"{level['sections']} section{'s' if level['sections'] > 1 else ''}"
        lines.append(_row(f"level **{level['level']}** ({count})", level))
    lines += ["", "By section, worst first:", "", *TABLE_HEAD]
    for section in figures["sections"]:
        hard = " (hard)" if section["hard"] else ""
        level = f" · {section['level']}" if section["level"] else ""
        lines.append(_row(f"`{section['id']}`{level}{hard}", section))
    return "\n".join(lines) + "\n"


#: The head of the report's tables.
TABLE_HEAD = (
    "| | compliance [95% CI] n | agreement, pairs [95% CI] n | agreement, labels [95% CI] n |",
    "|---|---|---|---|",
)


def _row(name: str, figure: dict[str, Any]) -> str:
    return (
        f"| {name} | {_cell(figure['compliance'])} | {_cell(figure['agreement'], figure['note'])} | "
        f"{_cell(figure['label_agreement'], figure['note'])} |"
    )


def _evaluate(config: SpecEvalConfig) -> dict[str, Any]:
    from charter.training.output import write_json

    constitution = load_spec(config.spec)
    judged = run_sync(judge_spec(config, constitution))
    rows = judged.pop("rows")
    source = config.dataset or config.prompts or "the spec's example conversations"
    summary = {
        "spec": spec_identity(constitution, config.spec),
        "model": config.model,
        "dataset": config.dataset,
        "prompts": source,
        "judge": config.judge,
        "rating": config.rating,
        "scale": config.scale,
        "comply_at": config.comply_at,
        **judged,
    }
    out = config.out / SPEC_EVAL_JSON
    write_json(out, summary)
    out.with_suffix(".md").write_text(markdown(summary), encoding="utf-8")
    out.with_suffix(".jsonl").write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return {**summary, "written_to": str(out)}


@public
def evaluate_spec(config: ConfigArg[SpecEvalConfig] | None = None, **fields: Any) -> dict[str, Any]:
    """Spec compliance: a model's answers (`model`, on the spec's example conversations or `prompts`) or a dataset's
    responses (`dataset`) judged against a prose spec, section by section (the rules are in the module docstring).

    Args:
        config: The settings, as a `SpecEvalConfig`, a dict of its fields or a YAML file; None to take them all
            from `fields`.
        **fields: `SpecEvalConfig` fields; with a dict `config`, they override its keys.

    Returns:
        The summary (also written to `out/spec-eval.json`, with the report `spec-eval.md` and one judgment a line in
        `spec-eval.jsonl`): `spec` (its file, version, sections skipped by the import, and the constitution's hash),
        `figures` (`overall`, `levels` in order and `sections` worst first, each with `compliance`, `agreement` and
        `label_agreement`: value, 95% `ci95`, `n`, `units`, `failures`; agreement None with a `note` where the spec
        has no labelled pairs), `items`, `judgments`, `failures`, `labelled_pairs`, `calls`, `cached_calls`,
        `cost_usd` and `written_to`.

    Raises:
        ArgumentError: A field is not a valid `SpecEvalConfig` field, or an argument is of the wrong type.
        ConfigError: Both or neither of `model` and `dataset`; `comply_at` above the scale; an unknown section.
        ConstitutionError: No such spec, or not a valid spec or constitution.
        DatasetError: The prompts or dataset cannot be read, or a row lacks its prompt or response, or names no
            section of the spec.
        UnknownModel: A model string names no known provider.
        ProviderError: A model failed for good (an unknown model, a bad key).
    """
    return _evaluate(config_with_fields(SpecEvalConfig, config, fields))
