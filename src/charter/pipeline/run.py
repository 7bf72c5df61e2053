"""Stage orchestration: prompts -> critique chains -> pairs -> judgments -> datasets -> report,
then optional training stages. Every item is written to the run store as it finishes, under the
fingerprint of the settings that made it, so a run resumes where it stopped (no lost rows, no
duplicated rows, no repeated model calls) and a changed setting recomputes exactly what it changes.

Everything that can be checked is checked before the run directory is written. A failed item is recorded
and the run goes on; a stop (the budget, a provider error every later call would share, too many failures)
is recorded in the store with its reason, and the dataset and report are written for what is done."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charter.checklist.store import check_checklist_config, check_prompt_checklist
from charter.constitutions import Constitution, load_constitution
from charter.errors import (
    CharterError,
    ConfigError,
    Interrupted,
    RunStoreError,
    probe_writable,
    wanted,
)
from charter.interrupt import StopRequest
from charter.judge.panel import Panel
from charter.pipeline.config import RoleConfig, RunConfig
from charter.pipeline.executors import Executor, LocalExecutor, guarded_stage
from charter.pipeline.prompts import PromptSet, load_prompts, sync_prompt_set
from charter.pipeline.settings import check_credentials, dataset_settings, run_fingerprints, upgrade_run
from charter.pipeline.work import Work
from charter.preference import dataset
from charter.preference.diversity import measure_run
from charter.preference.manifest import DatasetSettings
from charter.providers import CallCache, ManagedModel, UsageMeter, get_model, parse_model_string
from charter.providers.batch import BatchModel
from charter.providers.config import config_roles
from charter.providers.embeddings import Prefetch
from charter.providers.prices import model_id_of, resolve_price
from charter.records import Prompt
from charter.runs.batches import StoredJournal
from charter.runs.counts import set_stage
from charter.runs.files import RunFiles, RunLock, holder, run_dir_errors
from charter.runs.history import record_config
from charter.runs.store import STORE_FILE, RunStore, peek_meta
from charter.runs.usage import UsageLedger, stored_usage
from charter.verify import resolve, verifier_name

log = logging.getLogger("charter.run")


@dataclass
class RunResult:
    """Where a run's outputs are, and its counts."""

    run_dir: Path
    preferences: Path | None = None
    sft: Path | None = None
    report: Path | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def check_config(config: RunConfig, constitution: Constitution) -> None:
    """Everything that can be checked before a model call: model strings, principle ids."""
    for role in config.model_roles:
        parse_model_string(role.model)
    known = set(constitution.principle_ids)
    for where, ids in (
        ("critique.principles", config.critique.principles),
        ("judge.principles", config.judge.principles),
    ):
        for pid in ids or []:
            if pid not in known:
                raise ConfigError(f"{where}: unknown principle id '{pid}' (constitution '{constitution.name}')")
    check_checklist_config(config, constitution)


class VerifierUnknown(ConfigError):
    """A prompt names a verifier charter does not know: refused even where an unreadable source only warns."""


def checked_prompts(config: RunConfig, first_start: bool) -> PromptSet | None:
    """The prompt source, read and checked (encoding, JSON, columns, emptiness, size) before anything is written.

    On a resume with `on_change: keep` a source that cannot be read (a Hub dataset offline, a broken file) only
    warns: the run has its prompt set. A prompt file that does not exist is an error even then: a mistyped path
    must not pass for the stored prompts."""
    resolved: set[str] = set()
    path = config.prompts.path
    if path and not Path(path).expanduser().exists():
        raise ConfigError(
            f"prompts.path: {path}: no such prompt file (check the path; the run's stored prompts are "
            "never used in place of a missing file)"
        )

    def known_verifier(prompt: Prompt) -> None:  # an unknown verifier fails here, not when the dataset is written
        name = verifier_name(prompt.verifier, prompt.reference, config.filters.verifier)
        if name is not None and name not in resolved:
            try:
                resolve(name)
            except ConfigError as exc:
                raise VerifierUnknown(f"prompts ({prompt.source}): {exc}") from None
            resolved.add(name)
        check_prompt_checklist(config.checklist, prompt)  # a bad checklist column names its prompt here

    try:
        prompts = load_prompts(config.prompts, stream=True, check=known_verifier)  # checked in one pass, not held
    except VerifierUnknown:
        raise
    except ConfigError as exc:
        if first_start or config.prompts.on_change != "keep":
            raise
        log.warning(f"{exc}; the run keeps its stored prompt set")
        return None
    if not prompts.rows and (first_start or config.prompts.on_change == "replace"):
        raise ConfigError(f"prompts: no usable prompts (counts: {prompts.counts})")
    return prompts


def check_same_run(meta: dict[str, Any], config: RunConfig, constitution: Constitution) -> None:
    """A run directory holds one run: refuse one made by a config of another name, or with another constitution."""
    run_dir = config.run_dir()
    stored_name = (meta.get("config") or {}).get("name")
    if stored_name is not None and stored_name != config.name:
        raise RunStoreError(
            f"{run_dir} holds the run '{stored_name}', not '{config.name}': give this config its own "
            f"output_dir (or name: {stored_name} to go on with that run)"
        )
    stored_hash = (meta.get("constitution") or {}).get("hash")
    if stored_hash and stored_hash != constitution.hash:
        raise RunStoreError(
            f"{run_dir}: the constitution changed since this run started (hash {stored_hash[:12]} -> "
            f"{constitution.short_hash}); use a new output_dir"
        )


def check_run_dir(config: RunConfig, constitution: Constitution) -> None:
    """Before anything is written: the run directory can be made and written (its data/ and report/ too), holds no
    other run, and no live process is running it."""
    run_dir = config.run_dir()
    for folder in (run_dir, run_dir / "data", run_dir / "report"):
        if folder.exists() or folder == run_dir:
            probe_writable(folder, "write the run directory" if folder == run_dir else f"write {folder.name}/")
    check_same_run(peek_meta(run_dir, "config", "constitution"), config, constitution)
    found = holder(run_dir)
    if found is not None and found.alive is not False:
        RunLock(run_dir).acquire()  # raises RunLocked naming the holder; a free lock is given back at once
        RunLock(run_dir).release()


#: what writing the datasets and measuring their diversity loads on first use, and `warm_build_modules` before it
#: (pyarrow loads pandas, where it is installed, with its first array): 1-2 s of a fresh process
BUILD_MODULES = ("pyarrow.parquet", "pandas", "scipy.special")


def warm_build_modules() -> threading.Thread:
    """Import `BUILD_MODULES` in a background thread while the run's calls wait on their providers, so that the
    dataset build after the last call does not start by loading them. Imports only: nothing is computed or written,
    and a module that is not installed is left to fail where it is used."""

    def load() -> None:
        with contextlib.suppress(ImportError):
            import pyarrow.parquet  # noqa: F401
        with contextlib.suppress(ImportError):
            import pandas  # noqa: F401
        with contextlib.suppress(ImportError):
            import scipy.special  # noqa: F401

    thread = threading.Thread(target=load, name="charter-warm-imports", daemon=True)
    thread.start()
    return thread


#: the text fields of a run's dataset (prompt, chosen, rejected, response): the prefetch embeds up to this many times
#: `diversity.embed_sample` texts
PREFETCH_FIELDS = 4


class Runner:
    """Runs (or resumes) one run directory; `executor` runs its per-prompt work (this process by default; see
    charter.pipeline.api for the one a run config's `execution.engine` asks for)."""

    stop: StopRequest
    """How a stop (Ctrl-C, SIGTERM) reaches the run (set by `arun`)."""
    forecasts: bool = True
    """Whether a start stores the run's cost forecast (a Ray shard's driver does it for the whole run)."""

    def __init__(self, config: RunConfig, config_source: str | None = None, executor: Executor | None = None) -> None:
        self.executor: Executor = executor or LocalExecutor()
        self.stats: Callable[[], str] = lambda: ""
        """Calls, failures, retries and cost so far, for progress lines (set once the models are made)."""
        if self.executor.engine != config.execution.engine:
            raise ConfigError(
                f"execution.engine: {config.execution.engine}: this runner was given the {self.executor.engine} "
                "executor (charter.pipeline.api.runner_for picks the right one)"
            )
        self.config = config
        self.constitution = load_constitution(config.constitution)
        check_config(config, self.constitution)
        self.run_dir = config.run_dir()
        self.config_source = config_source
        self.fingerprints = run_fingerprints(config, self.constitution)
        self.prefetch: Prefetch | None = None
        """Embeds the dataset's texts while the calls go on (made with the first texts)."""
        self.warming: threading.Thread | None = None
        """Loads the dataset build's modules while the calls go on (started with the first texts)."""
        self.started = time.monotonic()
        """When this invocation of the run started: `diversity.embed_share` is a share of the time since."""

    @property
    def in_flight(self) -> int:
        """Prompts in flight at once: `concurrency`, or with a batch API every prompt (up to `batch.in_flight`), so
        that each step of every item goes out in one batch round."""
        config = self.config
        if any(config.batch.for_role(role) for role in config.model_roles):
            return max(config.concurrency, config.batch.in_flight)
        return config.concurrency

    @property
    def synthesizing(self) -> bool:
        """Whether the run synthesizes its prompts (a `synth` stage): its `prompts` are then the seeds."""
        return "synth" in self.config.stages and self.config.synth is not None

    def prepare(self) -> PromptSet | None:
        """Every check that needs no model call, before the run directory is written (also `--dry-run`).
        Returns the prompt set to use; None when it is kept from the store or comes from the synth stage."""
        check_credentials(self.config, self.config_source)
        check_run_dir(self.config, self.constitution)
        self.executor.check(self.config)
        audit = self.config.judge.audit
        if audit is not None and audit.pairs:
            from charter.agreement.audit import pairs_from_file

            pairs_from_file(audit.pairs)  # a missing or malformed pair file fails here, naming its line
        first_start = not (self.run_dir / STORE_FILE).exists()
        if self.synthesizing:
            from charter.pipeline.prompts import check_synth

            check_synth(self.config)
            return None
        return checked_prompts(self.config, first_start=first_start)

    # -- set-up ---------------------------------------------------------------------------------
    def _open_store(self) -> RunStore:
        with run_dir_errors(self.run_dir, "open the run store"):
            store = RunStore(self.run_dir, create=True)
        try:
            check_same_run(
                {"config": store.run_config(), "constitution": store.meta("constitution")},
                self.config,
                self.constitution,
            )
        except BaseException:
            store.close()
            raise
        return store

    def _open_cache(self) -> CallCache | None:
        return CallCache(Path(self.config.cache).expanduser()) if self.config.cache else None

    def _init_meta(self, store: RunStore) -> DatasetSettings:
        if store.meta("run_id") is None:
            store.set_meta(run_id=uuid.uuid4().hex[:12], created_at=dataset.now_iso())
        config = self.config.model_dump(mode="json")
        changes = record_config(store, config, self.fingerprints)
        settings = dataset_settings(self.config, self.constitution, store.meta("run_id"), store.meta("created_at"))
        store.set_meta(settings=settings, constitution=settings.constitution)
        files = RunFiles(self.run_dir)
        files.write_config(config)
        files.write_constitution(self.constitution)
        if changes:
            shown = "; ".join(f"{c['key']}: {c['old']!r} -> {c['new']!r}" for c in changes[:5])
            more = f" (and {len(changes) - 5} more)" if len(changes) > 5 else ""
            log.info(
                f"config changed since the last start: {shown}{more}; items made with the old settings "
                "are kept in the store and left out of the dataset"
            )
        return settings

    def _models(
        self, store: RunStore, ledger: UsageLedger, cache: CallCache | None
    ) -> tuple[ManagedModel, ManagedModel, ManagedModel | Panel, ManagedModel | None, ManagedModel | None]:
        """The policy, critic, judge (a `Panel` of the members' models for a panel), auditor (the judge, metered as
        `audit`; none for a panel, which the audit does not take) and the prompt writer (synth)."""
        config = self.config
        meter = self.meter = UsageMeter(config.prices, config.budget, sink=ledger.record)
        meter.stop = self.stop  # a stop lets the calls in flight finish and starts no new one
        prior = stored_usage(store)  # every call every earlier process paid for, recorded as it was answered
        meter.prior_cost = sum(r.cost_usd for r in prior)
        meter.prior_tokens = sum(r.prompt_tokens + r.completion_tokens for r in prior)
        models = {model_id_of(role.model) for role in config_roles(config)}
        sources = {model: resolve_price(meter.prices, model)[1] for model in sorted(models)}
        store.set_meta(price_sources={**(store.meta("price_sources") or {}), **sources})  # what priced the calls
        if cache is not None:
            cache.before_commit.append(ledger.flush)
        built: dict[Any, Any] = {}

        def model(role: str, spec: RoleConfig) -> ManagedModel:
            batched = config.batch.for_role(spec)
            key = (
                spec.model,
                spec.api_key_env,
                repr(sorted(spec.options.items())),
                spec.limits.model_dump_json(),
                batched,
            )
            if key not in built:  # one backend per distinct model and limits (a local model is loaded once)
                built[key] = spec.backend()
                built[key].stop_request = self.stop  # a local model stops between its batches and steps
                if batched:  # through the provider's batch API; the run store remembers the batches
                    built[key] = BatchModel(built[key], config.batch, journal=StoredJournal(store), report=log.info)
            return get_model(built[key], cache=cache, meter=meter, role=role)

        self.role_model = model  # a side stage's own metered model (the constitution test)
        writer = model("synth", config.synth.writer) if config.synth is not None and self.synthesizing else None
        judge = config.judge
        if judge.models is not None:
            panel = Panel([model("judge", member) for member in judge.models], judge.weights)
            return model("policy", config.policy), model("critic", config.critic_role), panel, None, writer
        return (
            model("policy", config.policy),
            model("critic", config.critic_role),
            model("judge", judge),
            model("audit", judge),
            writer,
        )

    # -- the work ---------------------------------------------------------------------------------
    async def arun(self, stop: StopRequest | None = None) -> RunResult:
        """Run (or resume) the run. `stop` is how Ctrl-C or SIGTERM reach it (see `run`): a stop requested there
        ends the run cleanly with `Interrupted`, after the calls in flight finish into the cache."""
        self.stop = stop or StopRequest(self.config.stop_grace_s)
        self.started = time.monotonic()
        loaded = self.prepare()  # raises before anything is written
        with wanted("create the run directory", self.run_dir):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir):  # one process per run directory: a second one is refused, with its holder
            return await self._locked(loaded)

    async def _locked(self, loaded: PromptSet | None) -> RunResult:
        store = self._open_store()
        cache: CallCache | None = None
        stop: CharterError | None = None
        try:
            cache = self._open_cache()
            for note in upgrade_run(store, self.config, self.constitution, cache):
                log.info(note)
            settings = self._init_meta(store)
            for note in self.sync_prompts(store, loaded):
                log.warning(note)
            loaded = None  # the store holds the prompt set now; a million prompts need not stay in memory
            await self._forecast(store)
            stop = await self._run_stages(store, cache)
            with run_dir_errors(self.run_dir, "write the dataset"):
                result = self._build(store, settings)
        finally:
            if self.prefetch is not None:
                self.prefetch.close()
            store.close()
            if cache is not None:
                cache.close()
        if stop is None:
            try:
                await self._training_stages(result)
            except Interrupted as exc:  # a stop during training: no model from a training cut short
                stop = exc
        if self.config.report:  # after training, so the win rate is in it; after a stop, for what is done
            from charter.pipeline.report.write import write_report

            with run_dir_errors(self.run_dir, "write the report"):
                result.report = write_report(self.run_dir)[1]
        if stop is not None:
            raise stop
        return result

    async def _forecast(self, store: RunStore) -> None:
        """Before the first call: the run's cost forecast, stored for its report (beside what it is billed), and a
        warning where the budget is below it."""
        if not self.forecasts:
            return
        from charter.pipeline.forecast.estimate import run_forecast

        found = await run_forecast(self.config, self.constitution, store=store)
        store.set_meta(forecast=found)
        if found.budget:
            log.warning(found.budget)

    def sync_prompts(self, store: RunStore, loaded: PromptSet | None) -> list[str]:
        """Bring the stored prompt set in line with the source (a synth stage brings its own)."""
        return [] if self.synthesizing else sync_prompt_set(store, self.config.prompts, loaded)

    async def _run_stages(self, store: RunStore, cache: CallCache | None) -> CharterError | None:
        """Critique and judge every prompt in use; returns the error that stopped them early, if one did."""
        ledger = UsageLedger(store)
        policy, critic, judge, auditor, writer = self._models(store, ledger, cache)
        work = Work(
            self.config, self.constitution, self.fingerprints, store, (policy, critic, judge), store.start_session()
        )
        section = self.config.checklist
        checklist_writer = self.role_model("checklist", section.model) if section and section.model else None
        work.use_checklists(checklist_writer)
        # the calls behind an item are in the usage and the cache before the item is in the store
        work.writer.before_flush += [ledger.flush] + ([policy.cache.flush] if policy.cache is not None else [])
        audit = self.config.judge.audit if "judge" in self.config.stages else None
        testing = self.config.judge.constitution_test is not None and "judge" in self.config.stages
        tester = self.role_model("constitution_test", self.config.judge) if testing else None
        work.on_texts = self._prefetch_texts
        if self.executor.engine != "local":  # the shards make the texts: the build is prepared here meanwhile, and
            self._prepare_build()  # the embeddings made at the end under the same bound (`diversity.embed_share`)
        self.stats = lambda: f"{work.counts['failed']} failed, {self.meter.describe()}"
        try:
            stop = await self._synth(store, writer) if writer is not None else None
            if stop is None and audit is not None and audit.pairs:
                stop = await self._audit(store, auditor)
            if stop is None:
                stop = await self._process(store, work)
            if stop is None and audit is not None and not audit.pairs:
                stop = await self._audit(store, auditor)
            if stop is None and tester is not None:
                stop = await self._constitution_test(store, tester)
            return stop
        finally:
            judges = [m for m in judge.members if isinstance(m, ManagedModel)] if isinstance(judge, Panel) else [judge]
            used = (policy, critic, *judges, auditor, tester, writer, checklist_writer)
            for m in {id(x.inner): x for x in used if x is not None}.values():
                await m.aclose()  # flushes the cache, whose commit flushes the ledger first
            ledger.flush()

    async def _side_stage(
        self, store: RunStore, name: str, label: str, work: Callable[[Any], Awaitable[tuple[str, dict]]]
    ) -> CharterError | None:
        """Run one stage outside the per-prompt work (synth, audit) with a progress bar: its status and counts go
        to the store; a budget stop or a provider error every later call would share is returned, not raised."""
        set_stage(store, name, "running")
        counts: dict = {}
        ended = "done"

        async def body(progress: Any) -> str:
            status, found = await self.stop.guard(work(progress))
            counts.update(found)
            return status

        def record(status: str, stop: CharterError | None) -> CharterError | None:
            nonlocal ended
            ended = status
            set_stage(store, name, status, {**counts, "reason": str(stop) if stop else counts.get("reason")})
            return stop

        stop = await guarded_stage(self.stop, self.stats, body, record)
        log.info(f"{label}: {counts.get('reason')}" if stop is None else f"{label} {ended}: {stop}")
        return stop

    async def _audit(self, store: RunStore, model: ManagedModel | None) -> CharterError | None:
        """The judge audit (judge.audit): before judging on a human pair file, else after, on the run's own pairs.
        Its calls are metered (role `audit`) and count against the budget."""
        assert model is not None  # the config refuses an audit of a panel
        from charter.pipeline.optional_stages import audit_run_judge

        async def work(progress: Any) -> tuple[str, dict]:
            task = None

            def start(total: int) -> None:
                nonlocal task
                task = progress.add_task("judge audit", total=total)

            report, note = await audit_run_judge(
                store,
                model,
                self.config.judge,
                self.constitution,
                self.config.seed,
                self.config.concurrency,
                on_pair=lambda: progress.advance(task),
                start=start,
            )
            return ("skipped" if report is None else "done"), {"reason": note}

        return await self._side_stage(store, "audit", "judge audit", work)

    async def _constitution_test(self, store: RunStore, model: ManagedModel) -> CharterError | None:
        """The constitution test (judge.constitution_test), after judging, on the run's own pairs. Its calls are
        metered (role `constitution_test`) and count against the budget."""
        from charter.pipeline.optional_stages import run_constitution_test

        async def work(progress: Any) -> tuple[str, dict]:
            progress.add_task("constitution test", total=None)
            result, note = await run_constitution_test(
                store, model, self.config.judge, self.constitution, self.config.seed, self.config.concurrency
            )
            return ("skipped" if result is None else "done"), {"reason": note}

        return await self._side_stage(store, "constitution_test", "constitution test", work)

    async def _synth(self, store: RunStore, model: ManagedModel) -> CharterError | None:
        """Prompt synthesis (the `synth` stage): the run's prompts are the seeds; the synthesized set, written to
        RUN_DIR/synth/prompts.jsonl, becomes the run's prompt set. Unchanged settings reuse the file."""
        from charter.pipeline.prompts import synth_stage

        synth = self.config.synth
        assert synth is not None  # a synth stage runs only with its section

        async def work(progress: Any) -> tuple[str, dict]:
            task = progress.add_task("synthesizing prompts", total=synth.n)
            note, counts = await synth_stage(
                self.config,
                self.constitution,
                store,
                model,
                lambda kept: progress.update(task, completed=sum(kept.values())),
            )
            return "done", {**counts, "reason": note}

        return await self._side_stage(store, "synth", "prompt synthesis", work)

    async def _process(self, store: RunStore, work: Work) -> CharterError | None:
        """Critique and judge every prompt in use, where the executor runs them (this process, or Ray shards)."""
        return await self.stop.guard(self.executor.process(self, store, work))

    def _prefetch_texts(self, texts: list[str]) -> None:
        """Embed the texts for the dataset's diversity figures in the background, while the calls go on (from the
        first texts of a session that makes any); with the first texts, load what the dataset build will need."""
        self._prepare_build()
        if self.prefetch is not None:
            self.prefetch.add(texts)

    def _prepare_build(self) -> None:
        """Once a run: load the dataset build's modules, and start the worker that embeds for its diversity figures
        (its model loads now), in the background while the calls go on."""
        if self.warming is None:
            self.warming = warm_build_modules()
        model = self.config.diversity.embedding_model
        if self.prefetch is None and model is not None:
            self.prefetch = Prefetch(model, PREFETCH_FIELDS * self.config.diversity.embed_sample)

    def _build(self, store: RunStore, settings: DatasetSettings) -> RunResult:
        """Write the preference and SFT datasets of the settings in effect."""
        manifest = dataset.write(store, settings)
        share = self.config.diversity.embed_share
        if self.prefetch is not None and share is not None:  # the embeddings' wait: bounded by a share of the run
            now = time.monotonic()
            self.prefetch.deadline = now + share * (now - self.started)
        measure_run(store, self.config.diversity, self.config.seed, self.prefetch)  # once a build: status, card read it
        files = RunFiles(self.run_dir)
        return RunResult(
            self.run_dir, files.dataset_path("preferences"), files.dataset_path("sft"), counts=dict(manifest.counts)
        )

    async def _training_stages(self, result: RunResult) -> None:
        from charter.pipeline.optional_stages import run_training_stages

        await asyncio.to_thread(run_training_stages, self.config, result, self.stop)
