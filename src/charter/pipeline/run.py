"""Stage orchestration: prompts -> critique chains -> pairs -> judgments -> datasets -> report,
then optional training stages. Every item is written to the run store as it finishes, under the
fingerprint of the settings that made it, so a run resumes where it stopped (no lost rows, no
duplicated rows, no repeated model calls) and a changed setting recomputes exactly what it changes.

Everything that can be checked is checked before the run directory is written. A failed item is recorded
and the run goes on; a stop (the budget, a provider error every later call would share, too many failures)
is recorded in the store with its reason, and the dataset and report are written for what is done."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from charter.concurrency import bounded_map
from charter.constitutions import Constitution, load_constitution
from charter.critique.chain import chain_fingerprint
from charter.errors import BudgetExceeded, CharterError, ConfigError, RunStoreError, TooManyFailures
from charter.pipeline.config import RoleConfig, RunConfig
from charter.pipeline.prompts import PromptSet, load_prompts, sync_prompt_set
from charter.pipeline.work import Work
from charter.preference import dataset
from charter.preference.judge import judge_fingerprint
from charter.preference.manifest import ConstitutionInfo, DatasetSettings
from charter.preference.pairs import samples_fingerprint
from charter.progress import console, progress_bar
from charter.providers import CallCache, ManagedModel, UsageMeter, create_backend, get_model, parse_model_string
from charter.providers.batch import BatchModel
from charter.records import Fingerprints, Prompt, fingerprint
from charter.runs.files import RunFiles
from charter.runs.store import STORE_FILE, RunStore
from charter.runs.usage import UsageLedger
from charter.verify import resolve, verifier_name


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
    for role in ("policy", "critic_role", "judge"):
        parse_model_string(getattr(config, role).model)
    known = set(constitution.principle_ids)
    for where, ids in (("critique.principles", config.critique.principles), ("judge.principles",
                                                                               config.judge.principles)):
        for pid in ids or []:
            if pid not in known:
                raise ConfigError(f"{where}: unknown principle id '{pid}' (constitution '{constitution.name}')")


def check_credentials(config: RunConfig) -> None:
    """Construct each remote backend once: a missing API key fails here, before any call."""
    for role in (config.policy, config.critic_role, config.judge):
        if parse_model_string(role.model).provider in ("openai", "anthropic", "openai-compatible"):
            create_backend(role.model, role.limits, **role.options)


class VerifierUnknown(ConfigError):
    """A prompt names a verifier charter does not know: refused even where an unreadable source only warns."""


def checked_prompts(config: RunConfig, first_start: bool) -> PromptSet | None:
    """The prompt source, read and checked (encoding, JSON, columns, emptiness, size) before anything is written.

    On a resume with `on_change: keep` an unreadable source only warns: the run has its prompt set."""
    resolved: set[str] = set()

    def known_verifier(prompt: Prompt) -> None:  # an unknown verifier fails here, not when the dataset is written
        name = verifier_name(prompt.verifier, prompt.reference, config.filters.verifier)
        if name is not None and name not in resolved:
            try:
                resolve(name)
            except ConfigError as exc:
                raise VerifierUnknown(f"prompts ({prompt.source}): {exc}") from None
            resolved.add(name)

    try:
        prompts = load_prompts(config.prompts, stream=True, check=known_verifier)  # checked in one pass, not held
    except VerifierUnknown:
        raise
    except ConfigError as exc:
        if first_start or config.prompts.on_change != "keep":
            raise
        console.print(f"[yellow]note[/yellow]: {exc}; the run keeps its stored prompt set")
        return None
    if not prompts.rows and (first_start or config.prompts.on_change == "replace"):
        raise ConfigError(f"prompts: no usable prompts (counts: {prompts.counts})")
    return prompts


def model_label(role: RoleConfig) -> str:
    """A role's model as fingerprints name it: the model string, or for a local model its `model_id`, which
    adds the precision its weights run in when that is not float32 (bfloat16 changes outputs)."""
    if parse_model_string(role.model).provider != "local":
        return role.model
    return create_backend(role.model, role.limits, **role.options).model_id


def run_fingerprints(config: RunConfig, constitution: Constitution) -> Fingerprints:
    """The fingerprints of a config's settings: chains, samples, judgments and the dataset."""
    policy, critic, judge_model = (model_label(r) for r in (config.policy, config.critic_role, config.judge))
    critique = chain_fingerprint(config.critique, constitution, policy, config.policy.params,
                                 critic, config.critic_role.params, config.seed) \
        if "revision" in config.pairs.kinds else None
    samples = samples_fingerprint(constitution, policy, config.samples_params(), config.pairs.k) \
        if "samples" in config.pairs.kinds else None
    judge = judge_fingerprint(config.judge.settings(), judge_model, constitution, config.seed)
    data = fingerprint({"critique": critique, "samples": samples, "judge": judge,
                        "pairs": config.pairs.model_dump(mode="json"), "filters": config.filters.model_dump(mode="json")})
    return Fingerprints(critique=critique, samples=samples, judge=judge, dataset=data)


def dataset_settings(config: RunConfig, constitution: Constitution, run_id: str, created_at: str) -> DatasetSettings:
    """Every setting that shapes this config's rows, for the store, the report and the card."""
    fingerprints = run_fingerprints(config, constitution)
    judge = config.judge.settings()
    return DatasetSettings(
        run_id=run_id, created_at=created_at,
        constitution=ConstitutionInfo(name=constitution.name, version=constitution.version, hash=constitution.hash,
                                      principles=constitution.principle_ids),
        fingerprints=fingerprints,
        models={"policy": model_label(config.policy), "critic": model_label(config.critic_role),
                "judge": model_label(config.judge)},
        sampling={"policy": config.policy.params, "critic": config.critic_role.params, "judge": judge.sampling(),
                  **({"samples": config.samples_params()} if fingerprints.samples else {})},
        critique=config.critique if fingerprints.critique else None, judge=judge, pairs=config.pairs,
        filters=config.filters, seed=config.seed,
    )


class Runner:
    """Runs (or resumes) one run directory."""

    def __init__(self, config: RunConfig, config_source: str | None = None) -> None:
        self.config = config
        self.constitution = load_constitution(config.constitution)
        check_config(config, self.constitution)
        self.run_dir = config.run_dir()
        self.config_source = config_source
        self.fingerprints = run_fingerprints(config, self.constitution)

    @property
    def in_flight(self) -> int:
        """Prompts in flight at once: `concurrency`, or with a batch API every prompt (up to `batch.in_flight`), so
        that each step of every item goes out in one batch round."""
        config = self.config
        if any(config.batch.for_role(role) for role in (config.policy, config.critic_role, config.judge)):
            return max(config.concurrency, config.batch.in_flight)
        return config.concurrency

    @property
    def synthesizing(self) -> bool:
        """Whether the run synthesizes its prompts (a `synth` stage): its `prompts` are then the seeds."""
        return "synth" in self.config.stages and self.config.synth is not None

    def prepare(self) -> PromptSet | None:
        """Every check that needs no model call, before the run directory is written (also `--dry-run`).
        Returns the prompt set to use; None when it is kept from the store or comes from the synth stage."""
        check_credentials(self.config)
        if self.config.execution.engine == "ray":
            from charter.pipeline.shards import check_sharding

            check_sharding(self.config)
        audit = self.config.judge.audit
        if audit is not None and audit.pairs:
            from charter.agreement.audit import pairs_from_file

            pairs_from_file(audit.pairs)  # a missing or malformed pair file fails here, naming its line
        first_start = not (self.run_dir / STORE_FILE).exists()
        if self.synthesizing:
            from charter.pipeline.synth import check_synth

            check_synth(self.config)
            return None
        return checked_prompts(self.config, first_start=first_start)

    # -- set-up ---------------------------------------------------------------------------------
    def _open_store(self) -> RunStore:
        store = RunStore(self.run_dir, create=True)
        stored_hash = (store.meta("constitution") or {}).get("hash")
        if stored_hash and stored_hash != self.constitution.hash:
            store.close()
            raise RunStoreError(
                f"{self.run_dir}: the constitution changed since this run started (hash {stored_hash[:12]} -> "
                f"{self.constitution.short_hash}); use a new output_dir"
            )
        return store

    def _init_meta(self, store: RunStore) -> DatasetSettings:
        if store.meta("run_id") is None:
            store.set_meta(run_id=uuid.uuid4().hex[:12], created_at=dataset.now_iso())
        config = self.config.model_dump(mode="json")
        changes = store.record_config(config, self.fingerprints)
        settings = dataset_settings(self.config, self.constitution, store.meta("run_id"), store.meta("created_at"))
        store.set_meta(settings=settings, constitution=settings.constitution)
        files = RunFiles(self.run_dir)
        files.write_config(config)
        files.write_constitution(self.constitution)
        if changes:
            shown = "; ".join(f"{c['key']}: {c['old']!r} -> {c['new']!r}" for c in changes[:5])
            more = f" (and {len(changes) - 5} more)" if len(changes) > 5 else ""
            console.print(f"config changed since the last start: {shown}{more}; items made with the old settings "
                          "are kept in the store and left out of the dataset")
        return settings

    def _models(self, store: RunStore, ledger: UsageLedger) -> tuple[ManagedModel, ManagedModel, ManagedModel,
                                                                    ManagedModel, ManagedModel | None]:
        """The policy, critic, judge, auditor (the judge, metered as `audit`) and the prompt writer (synth)."""
        config = self.config
        meter = UsageMeter(config.prices, config.budget, sink=ledger.record)
        prior = store.usage()  # every call every earlier process paid for, recorded as it was answered
        meter.prior_cost = sum(r.cost_usd for r in prior)
        meter.prior_tokens = sum(r.prompt_tokens + r.completion_tokens for r in prior)
        cache = CallCache(Path(config.cache).expanduser()) if config.cache else None
        if cache is not None:
            cache.before_commit.append(ledger.flush)
        built: dict[Any, Any] = {}

        def model(role: str, spec: RoleConfig) -> ManagedModel:
            batched = config.batch.for_role(spec)
            key = (spec.model, repr(sorted(spec.options.items())), spec.limits.model_dump_json(), batched)
            if key not in built:  # one backend per distinct model and limits (a local model is loaded once)
                built[key] = create_backend(spec.model, spec.limits, **spec.options)
                if batched:  # through the provider's batch API; the run store remembers the batches
                    built[key] = BatchModel(built[key], config.batch, journal=store, report=console.print)
            return get_model(built[key], cache=cache, meter=meter, role=role)

        writer = model("synth", config.synth.writer) if self.synthesizing else None
        return (model("policy", config.policy), model("critic", config.critic_role), model("judge", config.judge),
                model("audit", config.judge), writer)

    # -- the work ---------------------------------------------------------------------------------
    async def arun(self) -> RunResult:
        loaded = self.prepare()  # raises before anything is written
        store = self._open_store()
        stop: CharterError | None = None
        try:
            settings = self._init_meta(store)
            for note in self.sync_prompts(store, loaded):
                console.print(f"[yellow]note[/yellow]: {note}")
            loaded = None  # the store holds the prompt set now; a million prompts need not stay in memory
            stop = await self._run_stages(store)
            result = self._build(store, settings)
        finally:
            store.close()
        if stop is None:
            await self._training_stages(result)
        if self.config.report:  # after training, so the win rate is in it; after a stop, for what is done
            from charter.pipeline.report import write_report

            result.report = write_report(self.run_dir)[1]
        if stop is not None:
            raise stop
        return result

    def sync_prompts(self, store: RunStore, loaded: PromptSet | None) -> list[str]:
        """Bring the stored prompt set in line with the source (a synth stage brings its own)."""
        return [] if self.synthesizing else sync_prompt_set(store, self.config.prompts, loaded)

    async def _run_stages(self, store: RunStore) -> CharterError | None:
        """Critique and judge every prompt in use; returns the error that stopped them early, if one did."""
        ledger = UsageLedger(store)
        policy, critic, judge, auditor, writer = self._models(store, ledger)
        work = Work(self.config, self.constitution, self.fingerprints, store, (policy, critic, judge),
                    store.start_session())
        # the calls behind an item are in the usage and the cache before the item is in the store
        work.writer.before_flush += [ledger.flush] + ([policy.cache.flush] if policy.cache is not None else [])
        audit = self.config.judge.audit if "judge" in self.config.stages else None
        try:
            stop = await self._synth(store, writer) if writer is not None else None
            if stop is None and audit is not None and audit.pairs:
                stop = await self._audit(store, auditor)
            if stop is None:
                stop = await self._process(store, work)
            if stop is None and audit is not None and not audit.pairs:
                stop = await self._audit(store, auditor)
            return stop
        finally:
            for m in {id(x.inner): x for x in (policy, critic, judge, auditor, writer) if x is not None}.values():
                await m.aclose()  # flushes the cache, whose commit flushes the ledger first
            ledger.flush()

    async def _side_stage(self, store: RunStore, name: str, label: str,
                          work: Callable[[Any], Awaitable[tuple[str, dict]]]) -> CharterError | None:
        """Run one stage outside the per-prompt work (synth, audit) with a progress bar: its status and counts go
        to the store; a budget stop or a provider error every later call would share is returned, not raised."""
        store.set_stage(name, "running")
        status, stop, counts = "done", None, {}
        progress = progress_bar()
        try:
            with progress:
                status, counts = await work(progress)
        except BudgetExceeded as exc:
            status, stop = "stopped: budget", exc
        except CharterError as exc:
            status, stop = "failed", exc
        except BaseException:
            status = "interrupted"
            raise
        finally:
            store.set_stage(name, status, {**counts, "reason": str(stop) if stop else counts.get("reason")})
        console.print(f"{label}: {counts.get('reason')}" if stop is None else f"{label} {status}: {stop}")
        return stop

    async def _audit(self, store: RunStore, model: ManagedModel) -> CharterError | None:
        """The judge audit (judge.audit): before judging on a human pair file, else after, on the run's own pairs.
        Its calls are metered (role `audit`) and count against the budget."""
        from charter.pipeline.audit import audit_run_judge

        async def work(progress: Any) -> tuple[str, dict]:
            task = None

            def start(total: int) -> None:
                nonlocal task
                task = progress.add_task("judge audit", total=total)

            report, note = await audit_run_judge(
                store, model, self.config.judge, self.constitution, self.config.seed, self.config.concurrency,
                on_pair=lambda: progress.advance(task), start=start)
            return ("skipped" if report is None else "done"), {"reason": note}

        return await self._side_stage(store, "audit", "judge audit", work)

    async def _synth(self, store: RunStore, model: ManagedModel) -> CharterError | None:
        """Prompt synthesis (the `synth` stage): the run's prompts are the seeds; the synthesized set, written to
        RUN_DIR/synth/prompts.jsonl, becomes the run's prompt set. Unchanged settings reuse the file."""
        from charter.pipeline.synth import synth_stage

        async def work(progress: Any) -> tuple[str, dict]:
            task = progress.add_task("synthesizing prompts", total=self.config.synth.n)
            note, counts = await synth_stage(self.config, self.constitution, store, model,
                                             lambda kept: progress.update(task, completed=sum(kept.values())))
            return "done", {**counts, "reason": note}

        return await self._side_stage(store, "synth", "prompt synthesis", work)

    async def _process(self, store: RunStore, work: Work) -> CharterError | None:
        if self.config.execution.engine == "ray":
            from charter.pipeline.shards import process_sharded

            return await process_sharded(self, store, work)
        prompts = store.iter_prompts()
        stages = [s for s in ("critique", "judge") if s in self.config.stages]
        for stage in stages:
            store.set_stage(stage, "running")
        status, stop = "done", None
        progress = progress_bar()
        try:
            with progress:
                work.task = progress.add_task(" + ".join(stages) or "pairs", total=store.count_prompts())
                work.progress = progress
                async for _ in bounded_map(work.prompt, prompts, self.in_flight, stop=work.past_threshold):
                    pass
        except BudgetExceeded as exc:
            status, stop = "stopped: budget", exc
        except CharterError as exc:  # a provider error every later call would share, a missing key, ...
            status, stop = "failed", exc
        except BaseException:
            status = "interrupted"
            raise
        finally:
            work.writer.flush()
            counts = dict(work.counts, reason=str(stop) if stop else None)
            if stop is None and work.past_threshold(final=True):
                status, stop = "stopped: too many failures", too_many_failures(work, self.run_dir)
                counts["reason"] = str(stop)
            for stage in stages:
                store.set_stage(stage, status, counts)
        return stop

    def _build(self, store: RunStore, settings: DatasetSettings) -> RunResult:
        """Write the preference and SFT datasets of the settings in effect."""
        manifest = dataset.write(store, settings)
        files = RunFiles(self.run_dir)
        return RunResult(self.run_dir, files.dataset_path("preferences"), files.dataset_path("sft"),
                         counts=dict(manifest.counts))

    async def _training_stages(self, result: RunResult) -> None:
        from charter.pipeline.training import run_training_stages

        await asyncio.to_thread(run_training_stages, self.config, result)


def too_many_failures(work: Work, run_dir: Path) -> TooManyFailures:
    failing, items = work.counts["failed"] + work.counts["quarantined"], work.counts["items"]
    return TooManyFailures(
        f"{failing} of {items} items failed, over max_failures {work.config.max_failures:g}; what is done is "
        f"kept (charter status {run_dir} lists the failures) and a new run tries the failed items again"
    )


def run(config: RunConfig, config_source: str | None = None) -> RunResult:
    """Run (or resume) a whole run, synchronously."""
    return asyncio.run(Runner(config, config_source).arun())
