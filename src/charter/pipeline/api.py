"""The Python API of the pipeline: `run`, and the stages usable alone with the same semantics.

Stages take and return records (charter.records): `critique_chains` gives Chains, `judge_pairs` takes
Pairs (or `{prompt, a, b}` dicts) and gives Judgments, `build_preferences` gives PreferenceRows.

Starting a run: the runner with the executor its config's `execution.engine` asks for, and the synchronous `run_sync`
that lets Ctrl-C and SIGTERM stop it cleanly (charter.interrupt). A run's provider batches: list them, cancel them
(`charter batches list|cancel RUN_DIR`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict, cast

from pydantic import ValidationError

from charter.api_args import ConfigArg, Kinds, Range, public
from charter.concurrency import bounded_map
from charter.constitutions import Constitution, load_constitution
from charter.critique.chain import chain_fingerprint, run_chain
from charter.critique.config import CritiqueConfig
from charter.errors import ArgumentError, ConfigError, DatasetError
from charter.interrupt import StopRequest
from charter.judge.pairwise import judge_many, judgments_by_pair
from charter.judge.settings import JudgeSettings
from charter.pipeline.config import RunConfig, load_run_config
from charter.pipeline.executors import Executor, LocalExecutor
from charter.pipeline.forecast.estimate import Forecast, run_forecast
from charter.pipeline.prompts import prompt_id
from charter.pipeline.run import Runner, RunResult, check_config, checked_prompts
from charter.pipeline.shards import RayExecutor
from charter.preference.config import FiltersConfig
from charter.preference.dataset import now_iso
from charter.preference.filters import apply_filters
from charter.preference.rows import preference_row
from charter.providers import ChatModel, ManagedModel, SamplingParams, get_model
from charter.providers.batch import cancel_batches
from charter.providers.config import DEFAULT_MODEL
from charter.records import Chain, Judgment, Message, Pair, PreferenceRow, Provenance, fingerprint
from charter.records.base import as_messages
from charter.runs.batches import BatchState, set_batch_state, stored_batches
from charter.runs.store import STORE_FILE, open_store
from charter.yamlio import config_from, dotted, from_arguments


def _problem(exc: ValidationError) -> tuple[tuple, str]:
    """The first error of a validation: where, and what (in the words the config errors use)."""
    err = exc.errors()[0]
    if err["type"] == "extra_forbidden":
        return err["loc"], "unknown argument"
    return err["loc"], err["msg"].removeprefix("Value error, ")


class PreferenceCounts(TypedDict):
    """The counts `build_preferences` returns beside its rows: the rows before the filters, how many each filter
    dropped (in the order they apply; each row is dropped by at most one), and the rows kept."""

    preferences_before_filters: int
    """Rows made from the successful judgments, before any filter."""
    dropped_not_best_vs_worst: NotRequired[int]
    """Rows that are not the best-vs-worst pair of their prompt's samples (only with strategy `best_vs_worst`)."""
    dropped_failed_verification: NotRequired[int]
    """Rows whose chosen response failed the prompt's verifier (only where some row was verified)."""
    dropped_ties: int
    """Ties (P(chosen) = 0.5), with `filters.drop_ties`."""
    dropped_low_confidence_calibrated: int
    """Rows whose calibrated confidence is below the threshold."""
    dropped_low_confidence: int
    """Rows whose judge confidence, P(chosen) - 0.5, is below `filters.min_confidence`."""
    dropped_inconsistent: int
    """Rows whose two presentation orders disagreed, with `filters.drop_inconsistent`."""
    dropped_duplicates: int
    """Exact duplicates of a row kept before, with `filters.dedupe`."""
    dropped_principle_cap: int
    """Rows over `filters.max_per_principle`."""
    dropped_length_balance: NotRequired[int]
    """Rows dropped to hold `filters.length_balance` (only with it)."""
    dropped_diversity: NotRequired[int]
    """Rows not picked by `filters.diversity` (only with it)."""
    preferences: int
    """Rows kept."""
    calibrated: int
    """Kept rows with a calibrated probability."""


#: What `run` takes as its config; it loads a file itself, to name it in its errors.
RUN_CONFIG_KINDS = Kinds(RunConfig, dict, str, Path, said="a RunConfig, a dict of its fields or a YAML file's path")


@public
def run(
    config: Annotated[RunConfig | dict[str, Any] | str | Path, RUN_CONFIG_KINDS], overrides: list[str] | None = None
) -> RunResult:
    """Run (or resume) a run from a RunConfig or a run config YAML file.

    From the main thread, Ctrl-C and SIGTERM stop it cleanly while it runs (`Interrupted`; see charter.interrupt).
    A run that stops early keeps what it finished; the same call resumes it.

    Args:
        config: A `RunConfig`, a dict of its fields, or the path of a run config YAML file (relative paths in it
            resolve against it).
        overrides: `--set`-style `key.sub=value` items applied on top of the file; ignored for a `RunConfig`.

    Returns:
        The run directory, the paths of the preference and SFT datasets, the counts, the report and the results
        of the training stages that ran.

    Raises:
        ConfigError: The file cannot be read or does not validate; a principle id is unknown; the prompt source
            is unreadable or has no usable prompt; a role's model settings are unusable.
        ArgumentError: An override is not `key=value`, or an argument is of the wrong type.
        ConstitutionError: The constitution is neither a bundled name nor a valid constitution file.
        UnknownModel: A model string names no known provider.
        MissingAPIKey: The variable holding a remote role's key is unset.
        MissingExtra: A stage needs an optional dependency that is not installed.
        RunStoreError: The output directory holds another run or a run with another constitution, another live
            process is running it, or its store cannot be read.
        StorageError: The call cache cannot be opened.
        FileSystemError: The run directory or one of its files cannot be written.
        FatalProviderError: A provider error every later call would share (authentication, an unknown model).
        BudgetExceeded: The budget was reached.
        TooManyFailures: More items failed than `max_failures` allows.
        Interrupted: Ctrl-C or SIGTERM stopped the run.
        TrainingError: A training stage (`reward_model`, `dpo`) cannot use its model or settings.
        DatasetError: A training or `eval` stage cannot use its data or prompts.
    """
    source = str(config) if isinstance(config, str | Path) else None
    return run_sync(config_from(RunConfig, config, "config", lambda path: load_run_config(path, overrides)), source)


@public
def estimate(
    config: ConfigArg[RunConfig],
    overrides: list[str] | None = None,
) -> Forecast:
    """Forecast a run's calls, tokens and cost per role and model, low, expected and high, before anything is called
    (what `charter run --dry-run --json` prints).

    Each prompt counted is walked through the stages' own functions with stand-in models, so the calls are those the
    run would send; tokens are counted by the model's tokenizer where one is at hand offline, else by the heuristic
    `forecast.counter` names; input is laid against the providers' prompt caches and priced with the table the run
    prices its calls with (batch roles at the batch price). No key is needed and nothing is written.

    Args:
        config: A `RunConfig`, a dict of its fields, or the path of a run config YAML file (relative paths in it
            resolve against it).
        overrides: `--set`-style `key.sub=value` items applied on top of the file; ignored for a `RunConfig`.

    Returns:
        The forecast: a row per role and model and their total, each figure low, expected and high, with what it
        assumes, what it leaves out, and the warning of a budget below it.

    Raises:
        ConfigError: The file cannot be read or does not validate; a principle id is unknown; the prompt source
            is unreadable or has no usable prompt.
        ArgumentError: An override is not `key=value`, or an argument is of the wrong type.
        ConstitutionError: The constitution is neither a bundled name nor a valid constitution file.
        UnknownModel: A model string names no known provider.
        RunStoreError: The run directory's stored prompt set cannot be read (a resumed run whose source cannot).
    """
    config = config_from(RunConfig, config, "config", lambda path: load_run_config(path, overrides))
    constitution = load_constitution(config.constitution)
    check_config(config, constitution)
    synthesizing = "synth" in config.stages and config.synth is not None
    first_start = not (config.run_dir() / STORE_FILE).exists()
    prompts = None if synthesizing else checked_prompts(config, first_start=first_start)
    return asyncio.run(run_forecast(config, constitution, prompts))


def _model(model: str | ChatModel, role: str) -> ChatModel:
    return model if isinstance(model, ManagedModel) else get_model(model, role=role)


async def _closing(models: Iterable[ChatModel], work: Any) -> Any:
    try:
        return await work
    finally:
        for model in {id(m): m for m in models}.values():
            await model.aclose()


@public
def critique_chains(
    prompts: Iterable[str | list[dict] | list[Message]],
    constitution: str | Constitution = "harmless",
    policy: str | ChatModel = DEFAULT_MODEL,
    critic: str | ChatModel | None = None,
    rounds: Annotated[int, Range(ge=1)] = 1,
    principles: list[str] | None = None,
    params: SamplingParams | None = None,
    seed: int = 0,
    concurrency: Annotated[int, Range(ge=1)] = 64,
) -> list[Chain]:
    """SL-CAI chains for prompts: an initial response, then critique and revision rounds, one chain per prompt.

    Args:
        prompts: The prompts, each a string or a list of `{role, content}` messages (dicts or `Message`s).
        constitution: A bundled constitution's name, a constitution YAML file, or a `Constitution`.
        policy: The model that writes the initial responses: a model string or a `ChatModel` (closed when done).
        critic: The model that critiques and revises; None uses `policy`.
        rounds: Critique-revision rounds per prompt (at least 1).
        principles: Principle ids to use, cycled over the rounds; None samples one per round by weight.
        params: Sampling for the policy and the critic; None uses the defaults of `SamplingParams`.
        seed: Seed of the principle sampling.
        concurrency: Prompts in flight at once.

    Returns:
        One chain per prompt, in input order.

    Raises:
        ConstitutionError: `constitution` is neither a bundled name nor a valid constitution file.
        DatasetError: A prompt is empty, or neither a string nor a list of `{role, content}` messages.
        UnknownModel: A model string names no known provider.
        MissingAPIKey: The variable holding a remote model's key is unset.
        MissingExtra: A model's provider needs an optional dependency that is not installed.
        ConfigError: A model's settings are unusable (e.g. a base URL that is not its provider's API and no
            key variable).
        ProviderError: A model call failed for good (retries spent, or a rejected prompt); there is no partial
            result.
        ArgumentError: `rounds` or `concurrency` is below 1, `principles` names a principle the constitution does
            not have, or an argument is of the wrong type.
    """
    const = load_constitution(constitution)
    config = from_arguments(CritiqueConfig, rounds=rounds, principles=principles)
    unknown = [p for p in principles or [] if p not in const.principle_ids]
    if unknown:
        raise ArgumentError(
            "principles",
            f"{', '.join(map(repr, unknown))} not in constitution {const.name!r} "
            f"(its principles: {', '.join(const.principle_ids)})",
        )
    params = params or SamplingParams()
    items = [as_messages(p, f"prompts[{i}]") for i, p in enumerate(prompts)]

    async def go() -> list[Chain]:
        pol = _model(policy, "policy")
        crit = _model(critic, "critic") if critic else pol
        chain_fp = chain_fingerprint(config, const, pol.served_id, params, crit.served_id, params, seed)
        chains: dict[str, Chain] = {}

        async def one(messages: list[Message]) -> Chain:
            return await run_chain(
                pol, crit, const, prompt_id(messages), messages, config, params, params, seed, chain_fp
            )

        async def collect() -> list[Chain]:
            async for chain in bounded_map(one, items, concurrency):
                chains[chain.prompt_id] = chain
            return [chains[prompt_id(m)] for m in items]

        return await _closing([pol, crit], collect())

    return asyncio.run(go())


def as_pairs(pairs: Sequence[Pair | dict[str, Any]]) -> list[Pair]:
    """Pairs from records or `{pair_id?, prompt, a, b}` dicts (a prompt is a string or a message list)."""
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, Pair):
            out.append(pair)
            continue
        where = f"pairs[{i}]"
        missing = [k for k in ("prompt", "a", "b") if k not in pair]
        if missing:
            raise DatasetError(f"{where}: missing {', '.join(missing)}")
        try:
            record = Pair.model_validate(
                {
                    **pair,
                    "pair_id": str(pair.get("pair_id", f"pair-{i}")),
                    "prompt": as_messages(pair["prompt"], f"{where}.prompt"),
                }
            )
        except ValidationError as exc:
            loc, message = _problem(exc)
            raise DatasetError(f"{where}.{dotted(loc)}: {message}") from None
        out.append(record)
    ids = [p.pair_id for p in out]
    if len(set(ids)) != len(ids):
        raise DatasetError("pairs: pair ids must be unique")
    return out


@public
def judge_pairs(
    pairs: Sequence[Pair | dict[str, Any]],
    judge: str | ChatModel = DEFAULT_MODEL,
    constitution: str | Constitution = "harmless",
    settings: ConfigArg[JudgeSettings] | None = None,
    seed: int = 0,
    concurrency: Annotated[int, Range(ge=1)] = 64,
    **setting_fields: Any,
) -> list[Judgment]:
    """Judge pairs under the constitution: the probability that the judge prefers `a` to `b`, for each pair.

    Args:
        pairs: `Pair` records, or dicts with `prompt` (a string or a message list), `a`, `b` and optionally
            `pair_id` (default `pair-INDEX`).
        judge: The judge: a model string or a `ChatModel` (closed when done).
        constitution: A bundled constitution's name, a constitution YAML file, or a `Constitution`.
        settings: How the judge compares (mode, orders, principles): `JudgeSettings`, a dict of its fields or a
            YAML file; None builds them from `setting_fields`.
        seed: Seed of the principle sampling.
        concurrency: Pairs in flight at once.
        **setting_fields: `JudgeSettings` fields (`mode="cot"`, `orders="one"`, ...), used when `settings` is None.

    Returns:
        One judgment per pair, in input order. A judgment whose calls failed for good or whose answer could not be
        read has status `failed` and carries its failure, never a made-up probability.

    Raises:
        ConstitutionError: `constitution` is neither a bundled name nor a valid constitution file.
        DatasetError: A pair dict lacks `prompt`, `a` or `b`, has an empty or malformed prompt, a field of the wrong
            type, or two pairs share an id.
        ConfigError: `settings` does not validate, `settings.principles` names a principle the constitution does
            not have, or the judge's settings are unusable.
        UnknownModel: `judge` names no known provider.
        MissingAPIKey: The variable holding the judge's key is unset.
        MissingExtra: The judge's provider needs an optional dependency that is not installed.
        LogprobsUnsupported: Mode `logprobs` with a judge that returns no token probabilities.
        FatalProviderError: A provider error every later call would share (authentication, an unknown model).
        ArgumentError: A `setting_fields` value is not valid (or not a `JudgeSettings` field), `concurrency` is
            below 1, or an argument is of the wrong type.
    """
    const = load_constitution(constitution)
    settings = (
        config_from(JudgeSettings, settings, "settings")
        if settings is not None
        else from_arguments(JudgeSettings, **setting_fields)
    )
    items = as_pairs(pairs)

    async def go() -> list[Judgment]:
        model = _model(judge, "judge")

        async def collect() -> list[Judgment]:
            out = await judgments_by_pair(judge_many(model, const, items, settings, seed, concurrency))
            return [out[p.pair_id] for p in items]

        return await _closing([model], collect())

    return asyncio.run(go())


@public
def build_preferences(
    pairs: Sequence[Pair | dict[str, Any]],
    judgments: Sequence[Judgment],
    filters: ConfigArg[FiltersConfig] | None = None,
    strategy: Literal["all", "best_vs_worst"] = "all",
    constitution: str | Constitution = "harmless",
    provenance: Provenance | None = None,
) -> tuple[list[PreferenceRow], PreferenceCounts]:
    """Preference rows (TRL format) from pairs and their successful judgments, through the dataset filters.

    Args:
        pairs: The judged pairs: `Pair` records or dicts, as `judge_pairs` takes them.
        judgments: Their judgments; failed ones, and those of no pair given, are left out.
        filters: The dataset filters (confidence, ties, consistency, dedupe, per-principle cap): `FiltersConfig`, a
            dict of its fields or a YAML file; None uses the defaults.
        strategy: `all`, or `best_vs_worst` to keep only the best-vs-worst pair of each prompt's samples.
        constitution: The constitution recorded in the rows' provenance (when `provenance` is None).
        provenance: The provenance of every row; None says the rows came from the Python API (run id
            `python-api`) with `constitution`.

    Returns:
        The kept rows, in judgment order, and the counts: rows before the filters, dropped by each filter, and kept.

    Raises:
        DatasetError: A pair dict lacks `prompt`, `a` or `b`, has an empty or malformed prompt, a field of the wrong
            type, or two pairs share an id.
        ConstitutionError: `constitution` is neither a bundled name nor a valid constitution file.
        ConfigError: `filters` does not validate.
        ArgumentError: `strategy` is neither `all` nor `best_vs_worst`, or an argument is of the wrong type.
    """
    by_id = {p.pair_id: p for p in as_pairs(pairs)}
    filters = config_from(FiltersConfig, filters, "filters") if filters is not None else FiltersConfig()
    if provenance is None:
        const = load_constitution(constitution)
        models = {p.a_model for p in by_id.values() if p.a_model} | {p.b_model for p in by_id.values() if p.b_model}
        provenance = Provenance(
            run_id="python-api",
            created_at=now_iso(),
            constitution_name=const.name,
            constitution_hash=const.hash,
            policy_model=", ".join(sorted(models)) or None,
            settings_fingerprint=fingerprint(
                {
                    "judge": sorted({j.fingerprint for j in judgments}),
                    "strategy": strategy,
                    "filters": filters.model_dump(mode="json"),
                }
            ),
        )
    rows = [
        preference_row(by_id[j.pair_id], j, provenance) for j in judgments if j.status == "ok" and j.pair_id in by_id
    ]
    kept, counts = apply_filters(rows, filters, strategy)
    return kept, cast(PreferenceCounts, counts)


def executor_for(config: RunConfig) -> Executor:
    """Where the run's per-prompt work runs: this process, or Ray shards."""
    return RayExecutor() if config.execution.engine == "ray" else LocalExecutor()


def runner_for(config: RunConfig, config_source: str | None = None) -> Runner:
    """The runner of a run config, with its executor."""
    return Runner(config, config_source, executor_for(config))


def run_sync(config: RunConfig, config_source: str | None = None) -> RunResult:
    """Run (or resume) a whole run, synchronously. From the main thread, Ctrl-C and SIGTERM stop it cleanly while it
    runs (`Interrupted`, exit 130 or 143; see charter.interrupt); the handlers before are put back after."""
    runner = runner_for(config, config_source)
    stop = StopRequest(config.stop_grace_s)
    with stop.signals():
        return asyncio.run(runner.arun(stop))


def run_batches(run_dir: str | Path, open_only: bool = False) -> list[BatchState]:
    """The batches a run submitted, oldest first (open: not yet ended at the provider, as last seen)."""
    store = open_store(run_dir)
    try:
        return stored_batches(store, open_only=open_only)
    finally:
        store.close()


def open_batches_note(run_dir: str | Path) -> str | None:
    """What to tell a user who interrupts a run with batches still running at the provider, if it has any."""
    try:
        count = len(run_batches(run_dir, open_only=True))
    except Exception:  # noqa: BLE001 - no store yet: nothing was submitted
        return None
    if not count:
        return None
    return (
        f"{count} provider batch{'es' if count > 1 else ''} still running; the same command collects "
        f"{'them' if count > 1 else 'it'} (nothing is submitted twice); `charter batches cancel {run_dir}` "
        "cancels them"
    )


def cancel_run_batches(run_dir: str | Path) -> dict[str, str]:
    """Cancel a run's open batches at their providers; returns each batch's state after the request."""
    store = open_store(run_dir)
    try:
        config = RunConfig.model_validate(store.run_config())
        pending = stored_batches(store, open_only=True)
        by_model: dict[str, list[str]] = {}
        for batch in pending:
            by_model.setdefault(batch["model"], []).append(batch["batch_id"])
        states: dict[str, str] = {}
        for model_id, ids in by_model.items():
            states.update(asyncio.run(cancel_batches(_backend(config, model_id), ids)))
        for batch_id, state in states.items():
            set_batch_state(store, batch_id, state)
        return states
    finally:
        store.close()


def _backend(config: RunConfig, model_id: str) -> Any:
    """The backend of the run's role that uses this model (its key, base URL and limits)."""
    for role in config.model_roles:
        backend = role.backend()
        if backend.model_id == model_id:
            return backend
    raise ConfigError(f"no role of the run's config uses {model_id}; cannot cancel its batches")
