"""The constitution lab's Python API: `infer_constitution`, `check_constitution`, `learn_rubrics` and `import_spec`
(a spec's questions written by a model) (sync; the CLI calls them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from charter.api_args import AtLeastOne, Range, public
from charter.constitutions import Constitution, load_constitution
from charter.constitutions.markdown import WRITTEN_QUESTIONS, QuestionWriter, SpecImport, read_markdown_spec
from charter.constitutions.schema import Principle
from charter.errors import ArgumentError, NoSignal
from charter.judge.modes import DEFAULT_MODE, pairwise_modes
from charter.judge.settings import JudgeMode, JudgeSettings, Orders
from charter.lab.checks import ConstitutionTest, planned_judgments
from charter.lab.checks import check_constitution as _check
from charter.lab.infer import Inferred, infer
from charter.lab.learner import Learned, LearnOptions, write_outputs, write_report
from charter.lab.rubrics import LearnedRubric, learn
from charter.lab.votes import read_pairs
from charter.progress import progress_bar
from charter.providers import ChatModel, ManagedModel, SamplingParams, UsageMeter, get_model, parse_model_string
from charter.providers.cache import DEFAULT_CACHE, CallCache
from charter.providers.registry import provider
from charter.records.base import user

T = TypeVar("T")
L = TypeVar("L", bound=Learned[Any])
log = logging.getLogger("charter.lab")


def _settings(mode: JudgeMode, orders: Orders) -> JudgeSettings:
    settings = JudgeSettings(mode=mode, orders=orders)
    if settings.rates_alone:
        raise ArgumentError("mode", f"the lab compares pairs: use {', '.join(pairwise_modes())}")
    return settings


Spec = tuple[str | ChatModel, str, dict[str, Any]]


def _with_models(specs: list[Spec], cache: str | None, work: Callable[[list[ManagedModel]], Awaitable[T]]) -> T:
    """Build the models (model string or `ChatModel`, role, backend options; one cache and meter), run `work` with
    them, close them."""
    calls = CallCache(Path(cache).expanduser()) if cache else None
    meter = UsageMeter()

    async def go() -> T:
        models = [get_model(spec, cache=calls, meter=meter, role=role, **options) for spec, role, options in specs]
        try:
            return await work(models)
        finally:
            for model in models:
                await model.aclose()

    try:
        return asyncio.run(go())
    finally:
        if calls is not None:
            calls.close()


def _learn_and_write(
    specs: list[Spec], cache: str | None, work: Callable[[list[ManagedModel]], Awaitable[L]], output: str | Path | None
) -> L:
    """`_with_models`, for a learner: with `output`, its constitution is written there and its report beside it; where
    it found no signal, the report of what was tried still is (the error says where)."""
    try:
        result = _with_models(specs, cache, work)
    except NoSignal as exc:
        if output is None or exc.report is None:
            raise
        md, _ = write_report(exc.report, Path(output))
        raise NoSignal(f"{exc}; report: {md}", exc.report) from None
    if output is not None:
        write_outputs(result, Path(output))
    return result


def _candidate_pool(names: list[str]) -> list[Principle]:
    """The principles of these constitutions, each id prefixed by its constitution where two would clash."""
    out: list[Principle] = []
    seen: set[str] = set()
    for name in names:
        constitution = load_constitution(name)
        for principle in constitution.principles:
            pid = principle.id if principle.id not in seen else f"{constitution.name}.{principle.id}"
            seen.add(pid)
            out.append(principle.model_copy(update={"id": pid}))
    return out


def _proposer_options(model: str | ChatModel, structured_output: bool) -> dict[str, Any]:
    """`structured_output: false` for a model string whose provider has the option (the others are never asked)."""
    if structured_output or not isinstance(model, str):
        return {}
    return (
        {"structured_output": False}
        if "structured_output" in provider(parse_model_string(model).provider).options
        else {}
    )


@public
def infer_constitution(
    pairs: str | Path,
    model: str | ChatModel | None = None,
    *,
    structured_output: bool = True,
    judge: str | ChatModel | None = None,
    mode: JudgeMode = DEFAULT_MODE,
    orders: Orders = "both",
    candidates: str | list[str] | None = None,
    output: str | Path | None = None,
    name: str = "inferred",
    declared: str | None = None,
    max_principles: AtLeastOne = 5,
    proposals: AtLeastOne = 100,
    per_pair: AtLeastOne = 3,
    test_fraction: Annotated[float, Range(ge=0.05, le=0.9)] = 0.3,
    seed: int = 0,
    bootstrap_samples: AtLeastOne = 1000,
    concurrency: AtLeastOne = 64,
    cache: str | None = DEFAULT_CACHE,
) -> Inferred:
    """Infer a constitution from human-labelled pairs (Inverse Constitutional AI).

    Args:
        pairs: A JSONL pair file (prompt, chosen = the human-preferred response, rejected) or a run directory with
            human labels.
        model: The model that proposes principles (PROVIDER:MODEL, or a `ChatModel`, e.g. one from
            `create_backend` with options); None with `candidates`.
        structured_output: Ask an API proposer (openai, anthropic, openai-compatible) for its reply as structured
            output, a JSON Schema; False for a server that rejects that, which then answers in plain text.
        judge: The model whose votes test each candidate on every pair (default: `model`).
        mode: How the judge answers: logprobs, cot or verdict.
        orders: Each comparison in both presentation orders (votes abstain where they disagree) or one.
        candidates: Constitutions (bundled names or YAML files) whose principles are the candidates, instead of
            proposing any: the selection is made among them.
        output: Write the constitution YAML here, and the report beside it (`NAME.report.md`, `.report.json`).
        name: The inferred constitution's name.
        declared: A constitution (bundled name or YAML) to compare with on the held-out pairs.
        max_principles: At most this many principles are kept.
        proposals: Pairs (of the training split) the proposer is asked about.
        per_pair: Principles asked for per pair.
        test_fraction: Share of the pairs held out for the reported agreement.
        seed: Seed of the split, the sample asked, the presentation order and the bootstrap.
        bootstrap_samples: Resamples of the held-out interval.
        concurrency: Calls in flight at once.
        cache: The call cache file (None: none).

    Returns:
        The constitution and its report (candidates with support, for/against/abstain rates and agreement; the
        held-out agreement with a 95% interval beside the declared constitution's and the baselines').

    Raises:
        DatasetError: The pair file is missing or malformed, or a run directory has no decisive labels.
        ArgumentError: Fewer than 10 pairs, or no usable principle was proposed.
        NoSignal: No candidate beats chance on the training pairs: no constitution is written (the report is,
            beside `output`; the error's `report` holds it).
        UnknownModel: A model string names no known provider.
    """
    if model is None and candidates is None:
        raise ArgumentError("model", "name the model that proposes principles, or give candidate constitutions")
    judge = judge or model
    if judge is None:
        raise ArgumentError("judge", "name the judge model that votes on the candidates")
    labelled = read_pairs(pairs, seed)
    settings = _settings(mode, orders)
    against = load_constitution(declared) if declared else None
    pool = None
    if candidates is not None:
        pool = _candidate_pool([candidates] if isinstance(candidates, str) else candidates)

    learning = LearnOptions(proposals, per_pair, test_fraction, seed, concurrency, name)

    async def work(models: list[ManagedModel]) -> Inferred:
        proposer = models[0] if len(models) > 1 or pool is None else None
        return await infer(
            labelled,
            proposer,
            models[-1],
            settings,
            learning,
            candidates=pool,
            declared=against,
            max_principles=max_principles,
            bootstrap_samples=bootstrap_samples,
        )

    proposes = model is not None and pool is None
    if model is not None and proposes and judge != model:
        specs: list[Spec] = [(model, "proposer", _proposer_options(model, structured_output)), (judge, "judge", {})]
    else:
        specs = [(judge, "judge", _proposer_options(judge, structured_output) if proposes else {})]
    return _learn_and_write(specs, cache, work, output)


@public
def check_constitution(
    constitution: str | Constitution,
    pairs: str | Path,
    judge: str | ChatModel,
    *,
    mode: JudgeMode = DEFAULT_MODE,
    orders: Orders = "both",
    inferred: str | None = None,
    min_flip: Annotated[float, Range(ge=0, le=1)] = 0.5,
    target: Annotated[float, Range(ge=0.5, le=1)] = 0.97,
    seed: int = 0,
    bootstrap_samples: AtLeastOne = 1000,
    concurrency: AtLeastOne = 64,
    cache: str | None = DEFAULT_CACHE,
    max_calls: int | None = None,
    progress: bool = False,
) -> ConstitutionTest:
    """Test a constitution's principles under a judge: sensitivity, redundancy and support by people.

    Args:
        constitution: A bundled name, a YAML file or a `Constitution`.
        pairs: A JSONL pair file, or a run directory (its judged pairs; the support by people uses those people
            labelled).
        judge: The judge model (PROVIDER:MODEL, or a `ChatModel`).
        mode: logprobs, cot or verdict.
        orders: both or one.
        inferred: An inferred constitution (YAML) whose principles the declared one may lack.
        min_flip: Flag a principle when the upper end of its negated flip rate's 95% interval is below this.
        target: The share of pairs on which the smallest subset must give the full ensemble's side.
        seed: Seed of the presentation order and the bootstrap.
        bootstrap_samples: Resamples per interval.
        concurrency: Calls in flight at once.
        cache: The call cache file (None: none).
        max_calls: Refuse a test that plans more judge calls than this (None: no bound). The plan is logged
            before any call either way.
        progress: Show progress (a bar in a terminal, timestamped lines otherwise).

    Returns:
        Per principle, the flip rates under negation and a neutral principle and a flag; the vote correlations,
        clusters and the smallest equivalent subset; with labels, each principle against people.
    """
    declared = constitution if isinstance(constitution, Constitution) else load_constitution(constitution)
    labelled = read_pairs(pairs, seed, labelled_only=False)
    settings = _settings(mode, orders)
    other = load_constitution(inferred) if inferred else None
    extra = len(other.principles) if other is not None and any(p.human in ("a", "b") for p in labelled) else 0
    judgments = planned_judgments(len(declared.principles), len(labelled), extra)
    calls = judgments * (2 if orders == "both" else 1)
    plan = (
        f"{calls:,} judge calls: {len(labelled):,} pairs x ({len(declared.principles)} principles, each also "
        f"negated, + the neutral one{f' + {extra} inferred' if extra else ''}) x {2 if orders == 'both' else 1} "
        "order(s)"
    )
    if max_calls is not None and calls > max_calls:
        raise ArgumentError(
            "max_calls", f"the test plans {plan}, over the bound of {max_calls:,}: raise it, or test fewer pairs"
        )
    log.info(f"constitution test of {declared.name}: {plan}")

    async def work(models: list[ManagedModel]) -> ConstitutionTest:
        with progress_bar() if progress else contextlib.nullcontext() as bar:
            task = bar.add_task(f"testing {declared.name}", total=judgments) if bar is not None else None
            return await _check(
                declared,
                labelled,
                models[0],
                settings=settings,
                inferred=other,
                min_flip=min_flip,
                target=target,
                seed=seed,
                bootstrap_samples=bootstrap_samples,
                concurrency=concurrency,
                on_judgment=(lambda: bar.advance(task)) if bar is not None and task is not None else None,
            )

    return _with_models([(judge, "judge", {})], cache, work)


@public
def learn_rubrics(
    pairs: str | Path,
    model: str | ChatModel,
    *,
    structured_output: bool = True,
    judge: str | ChatModel | None = None,
    base: str | Constitution | None = None,
    output: str | Path | None = None,
    name: str = "learned-rubric",
    proposals: AtLeastOne = 100,
    per_pair: AtLeastOne = 3,
    test_fraction: Annotated[float, Range(ge=0.05, le=0.9)] = 0.3,
    keep_threshold: Annotated[float, Range(ge=0.5, le=1)] = 0.75,
    min_decided: AtLeastOne = 3,
    max_criteria: AtLeastOne = 10,
    items_per_call: AtLeastOne = 20,
    seed: int = 0,
    concurrency: AtLeastOne = 64,
    cache: str | None = DEFAULT_CACHE,
) -> LearnedRubric:
    """Learn a rubric (yes/no criteria with weights and gates) from human-labelled pairs.

    A proposer model proposes criteria that tell the preferred response from the other (hard rules, principles,
    pitfalls); the judge answers each about both responses of the proposal pairs (one checklist call a response), and
    a criterion is kept only where its verdicts agree with people (rejection sampling); each kept criterion is then
    validated on held-out pairs, with what it adds to the rubric's agreement with people.

    Args:
        pairs: A JSONL pair file (prompt, chosen = the human-preferred response, rejected) or a run directory with
            human labels.
        model: The model that proposes criteria (PROVIDER:MODEL, or a `ChatModel`).
        structured_output: Ask an API proposer for structured output (a JSON Schema); False for a server that
            rejects it.
        judge: The model that answers the criteria about each response (default: `model`).
        base: A constitution (bundled name, YAML file or `Constitution`) the learned criteria are added to, and
            compared with on the held-out pairs.
        output: Write the constitution YAML here, and the report beside it (`NAME.report.md`, `.report.json`).
        name: The learned constitution's name.
        proposals: Training pairs the proposer is asked about; the criteria are kept or rejected on them.
        per_pair: Criteria asked for per pair.
        test_fraction: Share of the pairs held out for validation.
        keep_threshold: A criterion is kept when it picks the response people preferred on at least this share of
            the proposal pairs it decides (its verdicts on the two responses differ).
        min_decided: ... and decides at least this many of them.
        max_criteria: Keep at most this many (the most consistent first).
        items_per_call: Criteria answered in one judge call.
        seed: Seed of the split, the sample asked and the bootstrap.
        concurrency: Calls in flight at once.
        cache: The call cache file (None: none).

    Returns:
        The constitution and its report: each candidate's consistency on the proposal pairs, each kept criterion's
        held-out agreement (Wilson 95% interval) and what it adds (a betting 95% interval on the per-pair
        differences), the learned rubric's held-out agreement beside the
        base constitution's, and a verdict saying whether it beats chance.

    Raises:
        DatasetError: The pair file is missing or malformed.
        ArgumentError: Fewer than 10 pairs, or no usable criterion was proposed.
        NoSignal: No candidate is consistent with the labels: no constitution is written (the report is, beside
            `output`; the error's `report` holds it).
    """
    labelled = read_pairs(pairs, seed)
    start = base if isinstance(base, Constitution) or base is None else load_constitution(base)
    judge = judge or model

    learning = LearnOptions(proposals, per_pair, test_fraction, seed, concurrency, name)

    async def work(models: list[ManagedModel]) -> LearnedRubric:
        return await learn(
            labelled,
            models[0],
            models[-1],
            learning,
            base=start,
            keep_threshold=keep_threshold,
            min_decided=min_decided,
            max_criteria=max_criteria,
            items_per_call=items_per_call,
        )

    specs: list[Spec] = [(model, "proposer", _proposer_options(model, structured_output))]
    if judge != model:
        specs.append((judge, "judge", _proposer_options(judge, structured_output)))
    return _learn_and_write(specs, cache, work, output)


#: What a model is asked to write for each section of a spec, when the user asks for model-written questions.
QUESTIONS_REQUEST = """A section of a behaviour spec for an AI assistant follows. Write the questions that a critic \
and a judge ask about an assistant's response under this section, each one sentence that keeps the section's meaning: \
no new requirement, none dropped. The section's text will be shown after each question.

Section: {title}

{text}

Answer with a JSON object with four keys and nothing else:
"critique_request": ask the critic how the assistant's last response fails to follow the section;
"revision_request": ask the critic to rewrite the response so that it follows the section;
"comparison": ask which of two responses better follows the section;
"rating": ask how well one response follows the section."""
#: The JSON Schema of the question writer's reply (structured output where the provider has it).
QUESTIONS_SCHEMA = {
    "type": "object",
    "properties": {key: {"type": "string"} for key in WRITTEN_QUESTIONS},
    "required": list(WRITTEN_QUESTIONS),
    "additionalProperties": False,
}


def read_questions(text: str) -> dict[str, str]:
    """The questions in a writer's reply: the first JSON object in it (empty where there is none)."""
    start, end = text.find("{"), text.rfind("}")
    try:
        found = json.loads(text[start : end + 1]) if 0 <= start < end else {}
    except json.JSONDecodeError:
        return {}
    return {key: value for key, value in found.items() if isinstance(value, str)} if isinstance(found, dict) else {}


@public
def import_spec(
    path: str | Path,
    questions_by: str | ChatModel,
    name: str | None = None,
    levels: list[str] | None = None,
    cache: str | None = DEFAULT_CACHE,
) -> SpecImport:
    """Import a Markdown spec (`read_markdown_spec`) with each principle's critique, revision, comparison and rating
    questions written by a model from its section's text, rather than the verbatim questions of the default import.
    Each principle's `source` records `questions: model` and the model; the section's text still follows each question
    and stays the principle's description, verbatim.

    Args:
        path: The Markdown spec.
        questions_by: The model that writes the questions (PROVIDER:MODEL, or a `ChatModel`).
        name: The constitution's name; None uses the spec's front matter, or the file's name.
        levels: The order of the levels, highest first; None takes it from the document.
        cache: The call cache file (None: no cache); the same spec and model ask nothing twice.

    Returns:
        The import: the constitution, its labelled pairs and the sections it skipped.

    Raises:
        ConstitutionError: The spec is not valid, or the model's reply for a section holds no question of the four
            (one line naming the file, the section's line and what is missing).
    """
    verbatim = read_markdown_spec(path, name=name, levels=levels)  # the sections, checked before anything is paid
    sections = [(p.source.heading, p.description) for p in verbatim.constitution.principles if p.source is not None]

    async def write(models: list[ManagedModel]) -> tuple[str, dict[tuple[str, str], dict[str, str]]]:
        [model] = models
        params = SamplingParams(temperature=0.0, max_tokens=600, seed=0, json_schema=QUESTIONS_SCHEMA)
        requests = [[user(QUESTIONS_REQUEST.format(title=title, text=text))] for title, text in sections]
        replies = await model.generate(requests, params)
        return model.served_id, {section: read_questions(r.text) for section, r in zip(sections, replies)}

    served, written = _with_models([(questions_by, "questions", {})], cache, write)
    writer = QuestionWriter(served, lambda title, text: written.get((title, text), {}))
    return read_markdown_spec(path, name=name, levels=levels, questions=writer)


__all__ = ["check_constitution", "import_spec", "infer_constitution", "learn_rubrics"]
