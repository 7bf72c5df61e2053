"""`audit_judge`: the judge audit as a public function, on a pair file, a run directory or given pairs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated

from charter.agreement.audit.pairs import AuditPair, pairs_from_file, pairs_from_run, sample
from charter.agreement.audit.record import AuditReport
from charter.agreement.audit.running import BOOTSTRAP_SAMPLES, AuditPlan, run_audit
from charter.api_args import Range, public
from charter.judge.modes import DEFAULT_MODE
from charter.judge.settings import INJECTION_FAMILIES, JudgeMode, JudgeSettings, Orders
from charter.providers.base import ChatModel


@public
def audit_judge(
    pairs: str | Path | list[AuditPair],
    judge: str | ChatModel,
    *,
    constitution: str = "harmless",
    mode: JudgeMode = DEFAULT_MODE,
    orders: Orders = "both",
    principles_per_pair: Annotated[int, Range(ge=1)] = 1,
    n: Annotated[int | None, Range(ge=2)] = 200,
    seed: int = 0,
    families: Sequence[str] = INJECTION_FAMILIES,
    self_preference: bool = False,
    min_confidence: Annotated[float, Range(ge=0, lt=0.5)] = 0.2,
    bootstrap_samples: Annotated[int, Range(ge=1)] = BOOTSTRAP_SAMPLES,
    concurrency: Annotated[int, Range(ge=1)] = 16,
    cache: str | None = None,
    progress: bool = False,
    api_key_env: str | None = None,
) -> AuditReport:
    """Audit a judge's position, length, injection and (optionally) self-preference biases on known-better pairs.

    Args:
        pairs: A JSONL file of human-labeled pairs (`prompt`, `chosen`, `rejected`), a run directory (its own pairs
            that its judge decided with confidence and consistently in both orders), or `AuditPair` records.
        judge: The judge: a model string, or a `ChatModel` (not closed here).
        constitution: A bundled constitution's name or a constitution YAML file.
        mode: The judge mode audited, as `JudgeSettings.mode` takes it (`logprobs`, `cot`, `verdict`).
        orders: The judge's orders, `both` or `one` (the position measure always asks both).
        principles_per_pair: Principles sampled per question (the judge's ensemble size).
        n: Pairs to audit, a seeded sample; None audits every pair.
        seed: Seed of the sample, the shown order, the principle sampling and the bootstrap.
        families: The injection families to plant (default: every one).
        self_preference: Also measure whether the judge prefers its own answer (one generation per pair).
        min_confidence: For a run directory: the least |P(A) - 0.5| of a pair taken from it.
        bootstrap_samples: Bootstrap resamples of pairs behind each interval.
        concurrency: Pairs in flight at once.
        cache: The call cache's SQLite file, for a model string; None caches nothing.
        progress: Show a progress bar.
        api_key_env: The environment variable holding the key of the judge's host, for a model string.

    Returns:
        Each bias as a rate with its 95% bootstrap interval and the pairs it rests on, with the calls made and the
        failures met. A failed call leaves its pair out of the measures that needed it.

    Raises:
        ConstitutionError: `constitution` is neither a bundled name nor a valid constitution file.
        DatasetError: The pair file is missing, has no rows or has a malformed row, or there is no pair to audit.
        RunStoreError: The run directory's store cannot be read.
        ArgumentError: `families` names an unknown injection family.
        UnknownModel: `judge` names no known provider.
        MissingAPIKey: The variable holding the judge's key is unset.
        MissingExtra: The judge's provider needs an optional dependency that is not installed.
        LogprobsUnsupported: Mode `logprobs` with a judge that returns no token probabilities.
        FatalProviderError: A provider error every later call would share (authentication, an unknown model).
        BudgetExceeded: A given `judge` model's usage meter reached its budget.
        ArgumentError: An argument is of the wrong type or out of its bounds (`mode`, `orders`, `n` of at least 2,
            `principles_per_pair` and `concurrency` of at least 1, `min_confidence` from 0 to below 0.5).
    """
    from charter.constitutions import load_constitution
    from charter.providers import get_model
    from charter.providers.cache import CallCache

    loaded = load_constitution(constitution)
    settings = JudgeSettings(mode=mode, orders=orders, principles_per_pair=principles_per_pair)
    source, reference = "given pairs", "human"
    if isinstance(pairs, (str, Path)):
        from charter.runs.files import RunFiles
        from charter.runs.store import open_store

        if RunFiles.is_run_dir(pairs):
            with open_store(pairs, read_only=True) as store:
                found = pairs_from_run(store, min_confidence)
            source, reference = (
                f"run {Path(pairs).name}: its own pairs judged with |P(A) - 0.5| >= {min_confidence} in both orders",
                "judge",
            )
        else:
            found, source = pairs_from_file(pairs), f"human-labeled pairs {Path(pairs).name}"
    else:
        found = list(pairs)
    chosen = sample(found, n, seed)
    if not chosen:
        from charter.errors import DatasetError

        raise DatasetError(f"{pairs}: no pairs with a known better response to audit on")
    owned = isinstance(judge, str)
    model = (
        get_model(
            judge, cache=CallCache(Path(cache).expanduser()) if cache else None, role="judge", api_key_env=api_key_env
        )
        if isinstance(judge, str)
        else judge
    )

    plan = AuditPlan(source, reference, seed, families, self_preference, bootstrap_samples)

    def audit(on_pair: Callable[[], None] | None) -> Awaitable[AuditReport]:
        return run_audit(model, loaded, settings, chosen, plan, concurrency=concurrency, on_pair=on_pair)

    async def go() -> AuditReport:
        try:
            if not progress:
                return await audit(None)
            from charter.progress import progress_bar

            with progress_bar() as bar:
                task = bar.add_task(f"auditing {model.model_id}", total=len(chosen))
                return await audit(lambda: bar.advance(task))
        finally:
            if owned:
                await model.aclose()

    return asyncio.run(go())
