"""Stage orchestration: prompts -> critique chains -> pairs -> judgments -> datasets -> report,
then optional training stages. Every item is written to the run store as it finishes, under the
fingerprint of the settings that made it, so a run resumes where it stopped (no lost rows, no
duplicated rows, no repeated model calls) and a changed setting recomputes exactly what it changes."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charter.constitutions import Constitution, load_constitution
from charter.critique.chain import chain_fingerprint, run_chain
from charter.errors import ConfigError, RunStoreError
from charter.concurrency import bounded_map
from charter.pipeline.config import RoleConfig, RunConfig
from charter.pipeline.prompts import load_prompts
from charter.preference import dataset
from charter.preference.judge import judge_fingerprint, judge_pair, principles_for
from charter.preference.manifest import ConstitutionInfo, DatasetSettings
from charter.preference.pairs import policy_samples, revision_pair, sample_pairs, samples_fingerprint
from charter.progress import console, progress_bar
from charter.providers import CallCache, ManagedModel, UsageMeter, create_backend, get_model, parse_model_string
from charter.records import Chain, Fingerprints, Pair, Prompt, Sample, fingerprint
from charter.runs.files import RunFiles
from charter.runs.store import RunStore
from charter.runs.writer import BufferedWriter


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


def samples_params(config: RunConfig) -> Any:
    """The policy's sampling with the samples' temperature."""
    return config.policy.params.model_copy(update={"temperature": config.pairs.temperature})


def run_fingerprints(config: RunConfig, constitution: Constitution) -> Fingerprints:
    """The fingerprints of a config's settings: chains, samples, judgments and the dataset."""
    critique = chain_fingerprint(config.critique, constitution, config.policy.model, config.policy.params,
                                 config.critic_role.model, config.critic_role.params, config.seed) \
        if "revision" in config.pairs.kinds else None
    samples = samples_fingerprint(constitution, config.policy.model, samples_params(config), config.pairs.k) \
        if "samples" in config.pairs.kinds else None
    judge = judge_fingerprint(config.judge.settings(), config.judge.model, constitution, config.seed)
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
        models={"policy": config.policy.model, "critic": config.critic_role.model, "judge": config.judge.model},
        sampling={"policy": config.policy.params, "critic": config.critic_role.params, "judge": judge.sampling(),
                  **({"samples": samples_params(config)} if fingerprints.samples else {})},
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

    def _init_prompts(self, store: RunStore) -> None:
        if store.count("prompts"):
            return  # resume: the prompt set was fixed at the first start
        prompts = load_prompts(self.config.prompts)
        if not prompts.rows:
            raise ConfigError(f"prompts: no usable prompts (counts: {prompts.counts})")
        store.put_prompts(prompts.rows)
        store.set_meta(prompt_counts=prompts.counts)

    def _models(self, store: RunStore) -> tuple[ManagedModel, ManagedModel, ManagedModel, UsageMeter]:
        config = self.config
        meter = UsageMeter(config.prices, config.budget)
        prior = store.usage()
        meter.prior_cost = sum(r.cost_usd for r in prior)
        meter.prior_tokens = sum(r.prompt_tokens + r.completion_tokens for r in prior)
        cache = CallCache(Path(config.cache).expanduser()) if config.cache else None
        built: dict[str, Any] = {}

        def model(role: str, spec: RoleConfig) -> ManagedModel:
            key = (spec.model, repr(sorted(spec.options.items())), spec.limits.model_dump_json())
            if key not in built:  # one backend per distinct model and limits (a local model is loaded once)
                built[key] = create_backend(spec.model, spec.limits, **spec.options)
            return get_model(built[key], cache=cache, meter=meter, role=role)

        return (model("policy", config.policy), model("critic", config.critic_role), model("judge", config.judge),
                meter)

    # -- the work ---------------------------------------------------------------------------------
    async def arun(self) -> RunResult:
        store = self._open_store()
        try:
            settings = self._init_meta(store)
            self._init_prompts(store)
            policy, critic, judge, meter = self._models(store)
            try:
                await self._process(store, policy, critic, judge)
            finally:
                store.add_usage(meter.rows())
                for m in {id(x.inner): x for x in (policy, critic, judge)}.values():
                    await m.aclose()
            result = self._build(store, settings)
        finally:
            store.close()
        await self._training_stages(result)
        if self.config.report:  # after training, so the win rate is in it
            from charter.pipeline.report import write_report

            result.report = write_report(self.run_dir)[1]
        return result

    async def _process(self, store: RunStore, policy: ManagedModel, critic: ManagedModel,
                       judge: ManagedModel) -> None:
        work = _Work(self, store, policy, critic, judge)
        prompts = store.prompts()
        stages = [s for s in ("critique", "judge") if s in self.config.stages]
        for stage in stages:
            store.set_stage(stage, "running")
        progress = progress_bar()
        with progress:
            work.task = progress.add_task(" + ".join(stages) or "pairs", total=len(prompts))
            work.progress = progress
            try:
                async for _ in bounded_map(work.prompt, prompts, self.config.concurrency):
                    pass
            finally:
                work.writer.flush()
        for stage in stages:
            store.set_stage(stage, "done", dict(work.counts))

    def _build(self, store: RunStore, settings: DatasetSettings) -> RunResult:
        """Write the preference and SFT datasets of the settings in effect."""
        manifest = dataset.write(store, settings)
        files = RunFiles(self.run_dir)
        return RunResult(self.run_dir, files.dataset_path("preferences"), files.dataset_path("sft"),
                         counts=dict(manifest.counts))

    async def _training_stages(self, result: RunResult) -> None:
        from charter.pipeline.training import run_training_stages

        await asyncio.to_thread(run_training_stages, self.config, result)


class _Work:
    """One run's per-prompt work: chain, samples, pairs, judgments; each reused when its fingerprint matches."""

    def __init__(self, runner: Runner, store: RunStore, policy: ManagedModel, critic: ManagedModel,
                 judge: ManagedModel) -> None:
        self.config, self.constitution, self.fp = runner.config, runner.constitution, runner.fingerprints
        self.store, self.policy, self.critic, self.judge = store, policy, critic, judge
        self.make_items = "critique" in self.config.stages
        self.do_judge = "judge" in self.config.stages
        self.chains_done = store.chain_ids(self.fp.critique) if self.fp.critique else set()
        self.sampled = store.sampled_ids(self.fp.samples, self.config.pairs.k) if self.fp.samples else set()
        self.judged = store.judged_ids(self.fp.judge)
        self.pair_sources = dict(store.execute("SELECT pair_id, source_fingerprint FROM pairs"))
        self.settings = self.config.judge.settings()
        self.writer = BufferedWriter(store)
        self.counts = {"chains": 0, "samples": 0, "pairs": 0, "judged": 0, "judge_failures": 0}
        self.progress: Any = None
        self.task: Any = None

    async def prompt(self, item: Prompt) -> None:
        pairs: list[Pair] = []
        chain = await self._chain(item) if self.fp.critique else None
        if chain is not None:
            self.counts["chains"] += 1
            pair = revision_pair(chain)
            pairs += [pair] if pair else []
        samples = await self._samples(item) if self.fp.samples else []
        if samples:
            self.counts["samples"] += 1
            pairs += sample_pairs(item.prompt_id, item.messages, samples)
        for pair in pairs:
            if self.pair_sources.get(pair.pair_id) != pair.source_fingerprint:
                self.writer.add(pair)
                self.pair_sources[pair.pair_id] = pair.source_fingerprint
            self.counts["pairs"] += 1
        if self.do_judge:
            await asyncio.gather(*(self._judge(pair) for pair in pairs if pair.pair_id not in self.judged))
        self.progress.advance(self.task)

    async def _chain(self, item: Prompt) -> Chain | None:
        fp = self.fp.critique
        assert fp is not None
        if item.prompt_id in self.chains_done:
            return self.store.chain(item.prompt_id, fp)
        if not self.make_items:
            return None
        config = self.config
        chain = await run_chain(self.policy, self.critic, self.constitution, item.prompt_id, item.messages,
                                config.critique, config.policy.params, config.critic_role.params, config.seed, fp)
        self.writer.add(chain)
        return chain

    async def _samples(self, item: Prompt) -> list[Sample]:
        fp = self.fp.samples
        assert fp is not None
        if item.prompt_id in self.sampled:
            return self.store.samples(item.prompt_id, fp)
        if not self.make_items:
            return []
        samples = await policy_samples(self.policy, self.constitution, item.prompt_id, item.messages,
                                       self.config.pairs.k, samples_params(self.config), fp)
        for sample in samples:
            self.writer.add(sample)
        return samples

    async def _judge(self, pair: Pair) -> None:
        ids = principles_for(self.constitution, self.settings, pair.pair_id, self.config.seed)
        judgment = await judge_pair(self.judge, self.constitution, pair, self.settings, ids, self.fp.judge)
        self.writer.add(judgment)
        self.counts["judged"] += 1
        if judgment.failure is not None:
            self.counts["judge_failures"] += 1
            self.store.add_failure("judge", pair.pair_id, judgment.failure, self.fp.judge)


def run(config: RunConfig, config_source: str | None = None) -> RunResult:
    """Run (or resume) a whole run, synchronously."""
    return asyncio.run(Runner(config, config_source).arun())
