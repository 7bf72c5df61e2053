"""The constitution test of a run (`judge.constitution_test`): after judging, on a seeded sample of the run's own
judged pairs (their spot-check labels where there are any), each principle's verdicts under negation and a neutral
principle, the principles' vote clusters and the smallest equivalent subset (`charter.lab.checks`). Stored in the
run (meta `constitution_test`, report/constitution-test.{md,json}) and shown in the report and the dataset card."""

from __future__ import annotations

from charter.constitutions import Constitution
from charter.judge.settings import ConstitutionTestConfig, JudgeConfig
from charter.lab.checks import ConstitutionTest, check_constitution, checks_markdown
from charter.lab.stored import META, stored_test
from charter.lab.votes import run_pairs
from charter.providers.base import ChatModel
from charter.records import fingerprint
from charter.runs.files import CONSTITUTION_TEST_JSON, CONSTITUTION_TEST_MD, RunFiles
from charter.runs.store import RunStore

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
