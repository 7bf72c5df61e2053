"""A run's optional stages after its dataset: the checks of the judge (each stored in the run and shown in its report
and dataset card) and the training stages on the run's data.

The judge audit of a run (`judge.audit`, or `charter judge audit --pairs RUN_DIR`): on a seeded sample of the
run's own high-confidence pairs after judging, or of a human-labeled pair file before judging. The result is
stored in the run (meta `audit`, report/audit.{md,json}) and shown in the report and the dataset card.

The constitution test of a run (`judge.constitution_test`): after judging, on a seeded sample of the run's own
judged pairs (their spot-check labels where there are any), each principle's verdicts under negation and a neutral
principle, the principles' vote clusters and the smallest equivalent subset (`charter.lab.checks`). Stored in the
run (meta `constitution_test`, report/constitution-test.{md,json}) and shown in the report and the dataset card.

The training stages of a run: reward_model, dpo, eval (win rate), on this run's data. The sections are typed parts of
the run config (validated when it loads); here they get this run's directory as their dataset, and the bundled prompt
set as the win rate's default prompts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from charter.agreement.audit import (
    AuditPair,
    AuditPlan,
    AuditReport,
    pairs_from_file,
    pairs_from_run,
    run_audit,
    sample,
    save_audit,
    stored_audit,
)
from charter.constitutions import Constitution, load_constitution
from charter.interrupt import StopRequest
from charter.judge.settings import AuditConfig, ConstitutionTestConfig, JudgeConfig
from charter.lab.checks import META, ConstitutionTest, check_constitution, checks_markdown, stored_test
from charter.lab.votes import run_pairs
from charter.pipeline.config import TRAINING_STAGES, RunConfig
from charter.providers.base import ChatModel
from charter.records import fingerprint
from charter.runs.files import CONSTITUTION_TEST_JSON, CONSTITUTION_TEST_MD, RunFiles
from charter.runs.store import RunStore


def audit_pairs(store: RunStore, audit: AuditConfig, seed: int) -> tuple[list[AuditPair], str, str]:
    """The sample to audit on, where it came from, and whose choice the better response is."""
    if audit.pairs:
        found = pairs_from_file(audit.pairs)
        source, reference = f"human-labeled pairs {Path(audit.pairs).name}", "human"
    else:
        found = pairs_from_run(store, audit.min_confidence)
        source = f"this run's own pairs judged with |P(A) - 0.5| >= {audit.min_confidence} consistently in both orders"
        reference = "judge"
    return sample(found, audit.n, seed), source, reference


async def audit_run_judge(
    store: RunStore,
    model: ChatModel,
    judge: JudgeConfig,
    constitution: Constitution,
    seed: int,
    concurrency: int,
    on_pair: Callable[[], None] | None = None,
    start: Callable[[int], None] | None = None,
) -> tuple[AuditReport | None, str]:
    """Audit the run's judge (its settings in effect) and store the result. Returns the report (None when no
    pair qualifies) and what happened, in words; an audit with the same key already stored is kept as it is."""
    audit = judge.audit or AuditConfig()
    seed = audit.seed if audit.seed is not None else seed
    pairs, source, reference = audit_pairs(store, audit, seed)
    if not pairs:
        return None, f"no pair to audit on ({source}); the audit is skipped"
    settings = judge.settings()
    plan = AuditPlan(source, reference, seed, audit.families, audit.self_preference)
    key = plan.key(model.served_id, settings, constitution, pairs)
    fingerprints = store.fingerprints()
    judge_fp = fingerprints.judge if fingerprints else None
    earlier = stored_audit(store)
    if earlier is not None and earlier.key == key and earlier.judge_fingerprint == judge_fp:
        return earlier, f"audit of the same judge and pairs already stored ({earlier.pairs} pairs)"
    if start is not None:
        start(len(pairs))
    report = await run_audit(
        model, constitution, settings, pairs, plan, concurrency=concurrency, judge_fingerprint=judge_fp, on_pair=on_pair
    )
    save_audit(store, report)
    return report, f"audited {report.pairs} pairs ({report.calls} calls)"


def run_judge(store: RunStore) -> tuple[JudgeConfig, Constitution, int]:
    """The judge config, constitution and seed a run directory was last started with."""
    from charter.errors import ConfigError

    config = store.run_config()
    try:
        judge = JudgeConfig.model_validate(config.get("judge") or {})
    except ValueError as exc:
        raise ConfigError(f"{store.run_dir}: run config judge section: {' '.join(str(exc).splitlines()[:3])}") from None
    path = RunFiles(store.run_dir).constitution_path
    return (
        judge,
        load_constitution(str(path) if path.exists() else config.get("constitution", "harmless")),
        int(config.get("seed", 0)),
    )


#: Resamples of each interval.
BOOTSTRAP_SAMPLES = 1000


async def run_constitution_test(
    store: RunStore, model: ChatModel, judge: JudgeConfig, constitution: Constitution, seed: int, concurrency: int
) -> tuple[ConstitutionTest | None, str]:
    """Test the run's constitution against its judge and store the result; one of the same judge, settings,
    constitution and pairs already stored is kept. Returns the result (None with too few pairs) and what happened."""
    config = judge.constitution_test or ConstitutionTestConfig()
    seed = config.seed if config.seed is not None else seed
    pairs = run_pairs(store, config.n, seed)
    if len(pairs) < 10:
        return None, f"{len(pairs)} judged pairs: the constitution test needs at least 10; it is skipped"
    settings = judge.settings()
    key = fingerprint(
        {
            "judge": model.served_id,
            "settings": settings.model_dump(mode="json"),
            "constitution": constitution.hash,
            "pairs": sorted(f"{p.pair.pair_id}:{p.human}" for p in pairs),
            "config": config.model_dump(mode="json", exclude={"max_insensitive"}),
            "seed": seed,
        }
    )
    earlier = stored_test(store)
    if earlier is not None and earlier.key == key:
        return earlier, f"constitution test of the same judge and pairs already stored ({earlier.pairs} pairs)"
    fingerprints = store.fingerprints()
    result = await check_constitution(
        constitution,
        pairs,
        model,
        settings=settings,
        min_flip=config.min_flip,
        target=config.target,
        seed=seed,
        bootstrap_samples=BOOTSTRAP_SAMPLES,
        concurrency=concurrency,
    )
    result = result.model_copy(update={"key": key, "judge_fingerprint": fingerprints.judge if fingerprints else None})
    store.set_meta(**{META: result})
    files = RunFiles(store.run_dir)
    files.write_report_text(CONSTITUTION_TEST_JSON, result.model_dump_json(indent=1))
    files.write_report_text(CONSTITUTION_TEST_MD, checks_markdown(result))
    flagged = f", {len(result.flagged)} flagged insensitive" if result.flagged else ""
    flagged += f", {len(result.untested)} untested (no pair decided)" if result.untested else ""
    return result, f"tested {len(constitution.principles)} principles on {result.pairs} pairs{flagged}"


def section_config(config: RunConfig, stage: str, run_dir: Path) -> Any:
    """One training stage's section with this run's defaults filled in."""
    section = getattr(config, stage)
    if stage == "eval":
        from charter.prompts import bundled_prompts_path

        updates = {"run_dir": section.run_dir or run_dir, "prompts": section.prompts or str(bundled_prompts_path())}
    else:
        updates = {"dataset": section.dataset or str(run_dir)}
    return section.model_copy(update=updates)


def stop_callback(stop: StopRequest) -> Any:
    """A TrainerCallback that ends training at the next step once a stop (Ctrl-C, SIGTERM) is requested, by raising
    `Interrupted`: the trainer writes no model from a training cut short."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if stop.requested:
                raise stop.error()
            return control

    return StopOnSignal()


def run_training_stages(config: RunConfig, result: Any, stop: StopRequest | None = None) -> None:
    """Run the training stages named in `config.stages`, in order, on this run's preference dataset. A stop
    requested meanwhile ends them at the next training step (or before the next stage) with `Interrupted`."""
    for stage in (s for s in TRAINING_STAGES if s in config.stages):
        if stop is not None and stop.requested:
            raise stop.error()
        callbacks = [stop_callback(stop)] if stop is not None and stage != "eval" else []
        cfg = section_config(config, stage, result.run_dir)
        if stage == "reward_model":
            from charter.reward_model.train import train_reward_model

            result.training["reward_model"] = train_reward_model(cfg, callbacks=callbacks)
        elif stage == "dpo":
            from charter.dpo.train import train_dpo

            result.training["dpo"] = train_dpo(cfg, callbacks=callbacks)
        else:
            from charter.evals.winrate import winrate

            result.training["eval"] = winrate(cfg)
