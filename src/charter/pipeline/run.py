"""Stage orchestration: prompts -> critique chains -> pairs -> judgments -> datasets -> report,
then optional training stages. Every item is written to the run store as it finishes, so a run
resumes where it stopped: no lost rows, no duplicated rows, no repeated model calls."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from charter.constitutions import Constitution, load_constitution
from charter.critique.chain import run_chain
from charter.errors import CharterError, ConfigError, RunStoreError
from charter.pipeline.concurrency import bounded_map
from charter.pipeline.config import RoleConfig, RunConfig
from charter.pipeline.prompts import load_prompts
from charter.pipeline.store import RunStore
from charter.pipeline.writer import BufferedWriter
from charter.preference import dataset
from charter.preference.judge import judge_pair, principles_for
from charter.preference.pairs import policy_samples, revision_pair, sample_pairs
from charter.progress import console, progress_bar
from charter.providers import CallCache, ManagedModel, UsageMeter, create_backend, get_model, parse_model_string


@dataclass
class RunResult:
    """Where a run's outputs are, and its counts."""

    run_dir: Path
    preferences: Path | None = None
    sft: Path | None = None
    report: Path | None = None
    counts: dict[str, Any] = field(default_factory=dict)


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


class Runner:
    """Runs (or resumes) one run directory."""

    def __init__(self, config: RunConfig, config_source: str | None = None) -> None:
        self.config = config
        self.constitution = load_constitution(config.constitution)
        check_config(config, self.constitution)
        self.run_dir = config.run_dir()
        self.config_source = config_source
        from charter.pipeline.training import validate_sections

        validate_sections(config, self.run_dir)

    # -- set-up ---------------------------------------------------------------------------------
    def _open_store(self) -> RunStore:
        store = RunStore(self.run_dir, create=True)
        stored_hash = store.meta("constitution", {}).get("hash")
        if stored_hash and stored_hash != self.constitution.hash:
            store.close()
            raise RunStoreError(
                f"{self.run_dir}: the constitution changed since this run started (hash {stored_hash[:12]} -> "
                f"{self.constitution.short_hash}); use a new output_dir"
            )
        return store

    def _init_meta(self, store: RunStore) -> None:
        if store.meta("run_id") is None:
            store.set_meta(run_id=uuid.uuid4().hex[:12], created_at=dataset.now_iso())
        config = self.config
        judge = config.judge.settings()
        store.set_meta(
            config=config.model_dump(mode="json"),
            constitution={"name": self.constitution.name, "version": self.constitution.version,
                          "hash": self.constitution.hash, "principles": self.constitution.principle_ids},
            models={"policy": _model_id(config.policy), "critic": _model_id(config.critic_role),
                    "judge": _model_id(config.judge)},
            sampling={"policy": config.policy.params.model_dump(mode="json"),
                      "critic": config.critic_role.params.model_dump(mode="json"),
                      "judge": judge.sampling().model_dump(mode="json"),
                      "samples_temperature": config.pairs.temperature},
            judge=judge.model_dump(mode="json"),
        )
        (self.run_dir / "config.yaml").write_text(
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True), encoding="utf-8")
        (self.run_dir / "constitution.yaml").write_text(
            yaml.safe_dump(self.constitution.model_dump(mode="json", exclude_none=True), sort_keys=False,
                           allow_unicode=True), encoding="utf-8")

    def _init_prompts(self, store: RunStore) -> None:
        if store.count("prompts"):
            return  # resume: the prompt set was fixed at the first start
        prompts = load_prompts(self.config.prompts)
        if not prompts.rows:
            raise ConfigError(f"prompts: no usable prompts (counts: {prompts.counts})")
        store.put_prompts((pid, i, msgs, src) for i, (pid, msgs, src) in enumerate(prompts.rows))
        store.set_meta(prompt_counts=prompts.counts)

    def _models(self, store: RunStore) -> tuple[ManagedModel, ManagedModel, ManagedModel, UsageMeter]:
        config = self.config
        meter = UsageMeter(config.prices, config.budget)
        prior = store.usage()
        meter.prior_cost = sum(r["cost_usd"] for r in prior)
        meter.prior_tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in prior)
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
            self._init_meta(store)
            self._init_prompts(store)
            policy, critic, judge, meter = self._models(store)
            try:
                await self._process(store, policy, critic, judge)
            finally:
                store.add_usage(meter.rows())
                for m in {id(x.inner): x for x in (policy, critic, judge)}.values():
                    await m.aclose()
            result = self._build(store)
            await self._training_stages(result)
            if self.config.report:  # after training, so the win rate is in it
                result.report = write_report_if_available(self.run_dir)
            return result
        finally:
            store.close()

    async def _process(self, store: RunStore, policy: ManagedModel, critic: ManagedModel,
                       judge: ManagedModel) -> None:
        config, stages = self.config, self.config.stages
        chains_done = store.keys("chains", "prompt_id")
        sampled = {pid for (pid,) in store.execute(
            "SELECT prompt_id FROM samples GROUP BY prompt_id HAVING COUNT(*) >= ?", (config.pairs.k,))}
        judged = store.keys("judgments", "pair_id")
        pairs_known = store.keys("pairs", "pair_id")
        writer = BufferedWriter(store)
        do_critique, do_judge = "critique" in stages, "judge" in stages
        want_samples = "samples" in config.pairs.kinds and do_critique
        want_revision = "revision" in config.pairs.kinds
        settings = config.judge.settings()
        counts = {"chains": 0, "samples": 0, "pairs": 0, "judged": 0, "judge_failures": 0}

        async def process(item: tuple[str, list[dict]]) -> None:
            pid, prompt = item
            pairs: list[dict] = []
            if do_critique and want_revision:
                chain = None
                if pid in chains_done:
                    chain = next(store.records("chains", "prompt_id = ?", (pid,)), None)
                if chain is None:
                    chain = await run_chain(policy, critic, self.constitution, pid, prompt, config.critique,
                                            config.policy.params, config.critic_role.params, config.seed)
                    writer.add("chains", ("prompt_id",), (pid,), chain)
                counts["chains"] += 1
                pair = revision_pair(chain, config.seed)
                pairs += [pair] if pair else []
            if want_samples:
                if pid in sampled:
                    samples = list(store.records("samples", "prompt_id = ?", (pid,)))
                else:
                    params = config.policy.params.model_copy(update={"temperature": config.pairs.temperature})
                    samples = await policy_samples(policy, self.constitution, pid, prompt, config.pairs.k, params)
                    for s in samples:
                        writer.add("samples", ("prompt_id", "sample_idx"), (pid, s["sample_idx"]), s)
                counts["samples"] += 1
                pairs += sample_pairs(pid, prompt, samples, config.seed)
            for pair in pairs:
                if pair["pair_id"] not in pairs_known:
                    writer.add("pairs", ("pair_id", "prompt_id", "kind"), (pair["pair_id"], pid, pair["kind"]), pair)
                counts["pairs"] += 1
            if do_judge:
                await asyncio.gather(*(judge_one(pair) for pair in pairs if pair["pair_id"] not in judged))
            progress.advance(task)

        async def judge_one(pair: dict) -> None:
            ids = principles_for(self.constitution, settings, pair["pair_id"], config.seed)
            record = await judge_pair(judge, self.constitution, pair, settings, ids)
            writer.add("judgments", ("pair_id", "status"), (pair["pair_id"], record["status"]), record)
            counts["judged"] += 1
            if record["status"] != "ok":
                counts["judge_failures"] += 1
                store.add_failure("judge", pair["pair_id"], record["error"], record["raw"])

        prompts = store.prompts()
        for stage in ("critique", "judge"):
            if stage in stages:
                store.set_stage(stage, "running")
        progress = progress_bar()
        with progress:
            task = progress.add_task("critique + judge" if do_judge else "critique", total=len(prompts))
            try:
                async for _ in bounded_map(process, prompts, config.concurrency):
                    pass
            finally:
                writer.flush()
        for stage in ("critique", "judge"):
            if stage in stages:
                store.set_stage(stage, "done", {k: v for k, v in counts.items()})

    def _build(self, store: RunStore) -> RunResult:
        """Build the preference and SFT datasets from what the store holds, then the report."""
        meta = store.all_meta()
        provenance = dataset.provenance_columns(meta)
        pairs = {p["pair_id"]: p for p in store.records("pairs")}
        rows = []
        for judgment in store.records("judgments", "status = 'ok'"):
            pair = pairs.get(judgment["pair_id"])
            if pair is not None:
                rows.append(dataset.preference_row(pair, judgment, provenance))
        kept, filter_counts = dataset.apply_filters(rows, self.config.filters, self.config.pairs.strategy)
        data_dir = self.run_dir / "data"
        pref_parquet, _ = dataset.write_rows(kept, data_dir, "preferences")
        sft_parquet, _ = dataset.write_rows(
            (dataset.sft_row(c, provenance) for c in store.records("chains")), data_dir, "sft")
        counts = {**meta.get("prompt_counts", {}), "chains": store.count("chains"), "pairs": store.count("pairs"),
                  "judged": store.count("judgments", "status = 'ok'"),
                  "judge_failures": store.count("judgments", "status != 'ok'"), **filter_counts}
        store.set_meta(counts=counts)
        return RunResult(self.run_dir, pref_parquet, sft_parquet, counts=counts)

    async def _training_stages(self, result: RunResult) -> None:
        from charter.pipeline.training import TRAINING_STAGES, run_training_stages

        if any(stage in self.config.stages for stage in TRAINING_STAGES):
            await asyncio.to_thread(run_training_stages, self.config, result)


def _model_id(role: RoleConfig) -> str:
    spec = parse_model_string(role.model)
    return f"{spec.provider}:{spec.name}"


def write_report_if_available(run_dir: Path) -> Path | None:
    """Write the run report (markdown + HTML) and return the HTML path."""
    try:
        from charter.pipeline.report import write_report
    except ModuleNotFoundError as exc:
        if exc.name != "charter.pipeline.report":
            raise
        return None
    return write_report(run_dir)[1]


def run(config: RunConfig, config_source: str | None = None) -> RunResult:
    """Run (or resume) a whole run, synchronously."""
    return asyncio.run(Runner(config, config_source).arun())


__all__ = ["RunResult", "Runner", "check_config", "check_credentials", "run", "CharterError", "console"]
