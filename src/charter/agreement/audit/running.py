"""The judge audit's input: pairs with a known better response, from a labeled file or a run, and the sample.

The judge audit run: each pair asked again under every perturbation, and the answers turned into measures
(rates with bootstrap intervals over pairs).

`audit_judge`: the judge audit as a public function, on a pair file, a run directory or given pairs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from charter.agreement.audit.perturb import FORMATS, INJECTIONS, inject, neutral, pad, trim
from charter.agreement.audit.report import AuditReport, FlipShift, InjectionFigures
from charter.agreement.summary import Figure
from charter.api_args import Range, public
from charter.concurrency import bounded_map
from charter.constitutions.schema import Constitution
from charter.errors import FatalProviderError, ProviderError
from charter.judge.modes import DEFAULT_MODE
from charter.judge.pairwise import JudgeParseError, p_first, principles_for
from charter.judge.settings import INJECTION_FAMILIES, JudgeMode, JudgeSettings, Orders
from charter.judge_prompt import PROMPT_FORMAT
from charter.providers.base import ChatModel, SamplingParams
from charter.records import Message, fingerprint
from charter.runs.items import judged_pairs
from charter.runs.store import RunStore
from charter.stats import agreement as stats


@dataclass(frozen=True)
class AuditPair:
    """A prompt and two responses of which `better` is known to be the better one."""

    pair_id: str
    prompt: list[Message]
    better: str
    worse: str


def pairs_from_file(path: str | Path) -> list[AuditPair]:
    """Human-labeled pairs (prompt, chosen, rejected): `chosen` is the better response."""
    from charter.agreement.evaluate import load_pairs_file

    return [AuditPair(r["id"], list(r["prompt"]), r["chosen"], r["rejected"]) for r in load_pairs_file(path)]


def pairs_from_run(store: RunStore, min_confidence: float) -> list[AuditPair]:
    """A run's own pairs that its judge (the settings in effect) decided with confidence and consistently in
    both orders: the judge's winner is the better response."""
    fp = store.fingerprints()
    if fp is None:
        return []
    out = []
    for pair, judgment in judged_pairs(store, fp):
        if judgment.p_a is None or abs(judgment.p_a - 0.5) < min_confidence or judgment.position_consistent is False:
            continue
        better, worse = (pair.a, pair.b) if judgment.p_a > 0.5 else (pair.b, pair.a)
        out.append(AuditPair(pair.pair_id, list(pair.prompt), better, worse))
    return out


def sample(pairs: list[AuditPair], n: int | None, seed: int) -> list[AuditPair]:
    """A seeded sample of n pairs, in pair-id order (all of them when there are no more)."""
    ordered = sorted(pairs, key=lambda p: p.pair_id)
    if n is None or n >= len(ordered):
        return ordered
    keep = set(random.Random(f"audit:{seed}").sample(range(len(ordered)), n))
    return [p for i, p in enumerate(ordered) if i in keep]


#: Bumped when a perturbation or a measure changes: part of a stored audit's key.
AUDIT_VERSION = 1
ORDERS = ("bw", "wb")  # better shown first, worse shown first
SELF_MAX_TOKENS = 256
BOOTSTRAP_SAMPLES = 1000


# -- asking ------------------------------------------------------------------------------------------------


@dataclass
class _Probe:
    """The answers for one pair: P(better) per variant and order, averaged over its principles."""

    pair: AuditPair
    shown: str  # the order a one-order judge sees
    p: dict[str, dict[str, float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    calls: int = 0


def _variants(
    pair: AuditPair, families: Sequence[str], own: str | None
) -> dict[str, tuple[bool, Callable[[str], tuple[str, str]]]]:
    """variant -> (fenced, order -> (the 'better' side's text, the 'worse' side's text))."""
    better, worse = pair.better, pair.worse
    letter = {"bw": "B", "wb": "A"}  # where the worse response is shown
    control_len = max((len(INJECTIONS[f].format(X="A", Y="B")) for f in families), default=0)
    out: dict[str, tuple[bool, Callable[[str], tuple[str, str]]]] = {
        "clean": (True, lambda o: (better, worse)),
        "length": (
            True,
            lambda o: (trim(better), pad(worse, pair.prompt, max(len(worse) + 200, int(1.5 * len(better))))),
        ),
    }
    for fmt in FORMATS:
        fenced = fmt == "fenced"
        if families:
            out[f"control:{fmt}"] = (fenced, lambda o: (better, neutral(worse, control_len)))
        for family in families:
            out[f"{family}:{fmt}"] = (fenced, lambda o, f=family: (better, inject(worse, f, letter[o])))
    if own is not None:
        out["self:better"] = (True, lambda o: (own, better))
        out["self:worse"] = (True, lambda o: (own, worse))
    return out


async def _probe(
    model: ChatModel,
    constitution: Constitution,
    settings: JudgeSettings,
    pair: AuditPair,
    families: Sequence[str],
    self_preference: bool,
    seed: int,
) -> _Probe:
    shown = "bw" if random.Random(f"{seed}:{pair.pair_id}").random() < 0.5 else "wb"
    probe = _Probe(pair, shown)
    own = None
    if self_preference:
        probe.calls += 1
        try:
            [completion] = await model.generate(
                [pair.prompt], SamplingParams(temperature=0.0, max_tokens=SELF_MAX_TOKENS, seed=seed)
            )
            own = completion.text.strip()
            if not own:
                raise ProviderError("the judge model's own answer was empty", kind="empty")
        except FatalProviderError:
            raise
        except ProviderError as exc:
            probe.failed["self:better"] = probe.failed["self:worse"] = f"own answer: {exc}"
    principles = [constitution.principle(pid) for pid in principles_for(constitution, settings, pair.pair_id, seed)]
    asks: list[tuple[str, str, Any]] = []
    for name, (fenced, texts) in _variants(pair, families, own).items():
        orders = ORDERS if name == "clean" or settings.orders == "both" else (shown,)
        for order in orders:
            good, bad = texts(order)
            first, second = (good, bad) if order == "bw" else (bad, good)
            for principle in principles:
                asks.append((name, order, p_first(model, pair.prompt, first, second, principle, settings, fenced)))
    probe.calls += len(asks)
    outcomes = await asyncio.gather(*(a for _, _, a in asks), return_exceptions=True)
    fatal = [
        o
        for o in outcomes
        if isinstance(o, BaseException)
        and (isinstance(o, FatalProviderError) or not isinstance(o, (JudgeParseError, ProviderError)))
    ]
    if fatal:
        raise fatal[0]
    collected: dict[str, dict[str, list[float]]] = {}
    for (name, order, _), outcome in zip(asks, outcomes):
        if isinstance(outcome, BaseException):
            probe.failed.setdefault(name, str(outcome))
            continue
        p_better = outcome if order == "bw" else 1.0 - outcome
        collected.setdefault(name, {}).setdefault(order, []).append(p_better)
    for name, per_order in collected.items():
        if name not in probe.failed:
            probe.p[name] = {order: sum(v) / len(v) for order, v in per_order.items()}
    return probe


# -- the measures ---------------------------------------------------------------------------------------------


def _side(p: float) -> int:
    return (p > 0.5) - (p < 0.5)


class _Measures:
    """Turns the probes into figures (rates with bootstrap intervals)."""

    def __init__(self, probes: list[_Probe], settings: JudgeSettings, samples: int, seed: int) -> None:
        self.probes, self.settings, self.samples, self.seed = probes, settings, samples, seed

    def verdict(self, probe: _Probe, name: str) -> float:
        """P(better) as the judge would give it: both orders averaged, or the pair's one shown order."""
        per_order = probe.p[name]
        if self.settings.orders == "both":
            return (per_order["bw"] + per_order["wb"]) / 2
        return per_order[probe.shown]

    def figure(self, values: list[float], clusters: list[str], share: bool = True) -> Figure:
        """A rate (`share`: 0/1 values, the exact interval too) or a mean shift (the bootstrap's interval)."""
        if not values:
            return Figure(value=None, ci=None, n=0)
        array, ids = np.asarray(values, dtype=float), np.asarray(clusters, dtype=object).astype(str)
        if share:
            found = stats.share(array, ids, self.samples, self.seed)
        else:
            mean = lambda i: float(array[i].mean())  # noqa: E731
            found = stats.figure(float(array.mean()), mean, ids, len(array), self.samples, self.seed)
        return Figure(**found)

    def having(self, *names: str) -> list[_Probe]:
        return [p for p in self.probes if all(n in p.p for n in names)]

    def clean_agreement(self) -> Figure:
        done = self.having("clean")
        return self.figure([float(self.verdict(p, "clean") > 0.5) for p in done], [p.pair.pair_id for p in done])

    def position(self) -> tuple[Figure, Figure]:
        done = self.having("clean")
        flips = [float(_side(p.p["clean"]["bw"]) != _side(p.p["clean"]["wb"])) for p in done]
        firsts = [float(p.p["clean"]["bw"] > 0.5) for p in done] + [float(p.p["clean"]["wb"] < 0.5) for p in done]
        ids = [p.pair.pair_id for p in done]
        return self.figure(flips, ids), self.figure(firsts, ids + ids)

    def flip_shift(self, base: str, perturbed: str) -> FlipShift:
        done = self.having(base, perturbed)
        correct = [p for p in done if self.verdict(p, base) > 0.5]
        flips = [float(self.verdict(p, perturbed) < 0.5) for p in correct]
        shifts = [self.verdict(p, base) - self.verdict(p, perturbed) for p in done]
        return FlipShift(
            flip=self.figure(flips, [p.pair.pair_id for p in correct]),
            shift=self.figure(shifts, [p.pair.pair_id for p in done], share=False),
        )

    def preferred(self, name: str) -> Figure:
        done = self.having(name)
        return self.figure([float(self.verdict(p, name) > 0.5) for p in done], [p.pair.pair_id for p in done])


def audit_key(
    judge_model: str,
    settings: JudgeSettings,
    constitution: Constitution,
    pair_ids: Iterable[str],
    families: Sequence[str],
    self_preference: bool,
    seed: int,
    samples: int,
) -> str:
    """What an audit depends on: a stored audit with the same key need not be repeated."""
    return fingerprint(
        {
            "audit": AUDIT_VERSION,
            "prompt_format": PROMPT_FORMAT,
            "model": judge_model,
            "settings": settings.model_dump(mode="json"),
            "constitution": constitution.hash,
            "pairs": sorted(pair_ids),
            "families": list(families),
            "self": self_preference,
            "seed": seed,
            "samples": samples,
        }
    )


@dataclass(frozen=True)
class AuditPlan:
    """What an audit asks besides the judge and the pairs, and where the pairs came from."""

    source: str
    """Where the pairs with a known better response came from, in words."""
    reference: str
    """`human`: the better response is a person's choice; `judge`: the judge's own confident verdict."""
    seed: int = 0
    """Seed of the shown order (one-order judges), the principle sampling and the bootstrap."""
    families: Sequence[str] = INJECTION_FAMILIES
    """The injection families to plant."""
    self_preference: bool = False
    """Also measure whether the judge prefers its own answer (one generation per pair)."""
    bootstrap_samples: int = BOOTSTRAP_SAMPLES
    """Bootstrap resamples of pairs behind each interval."""

    def key(self, judge_model: str, settings: JudgeSettings, constitution: Constitution, pairs: list[AuditPair]) -> str:
        """The key of this audit of `pairs` (`audit_key`): a stored audit with the same key need not be repeated."""
        return audit_key(
            judge_model,
            settings,
            constitution,
            (p.pair_id for p in pairs),
            self.families,
            self.self_preference,
            self.seed,
            self.bootstrap_samples,
        )


async def run_audit(
    model: ChatModel,
    constitution: Constitution,
    settings: JudgeSettings,
    pairs: list[AuditPair],
    plan: AuditPlan,
    *,
    concurrency: int = 16,
    judge_fingerprint: str | None = None,
    on_pair: Callable[[], None] | None = None,
) -> AuditReport:
    """Audit `model` as a judge with `settings` on `pairs`; every call goes through `model` (its cache, limits,
    meter). A fatal provider error (or the budget) propagates; any other failed call fails only what needs it."""
    from charter.preference.dataset import now_iso

    started = time.perf_counter()
    source, reference, seed = plan.source, plan.reference, plan.seed
    families, self_preference, bootstrap_samples = plan.families, plan.self_preference, plan.bootstrap_samples
    unknown = [f for f in families if f not in INJECTIONS]
    if unknown:
        from charter.errors import ArgumentError

        raise ArgumentError("families", f"unknown injection family {unknown[0]!r} (known: {', '.join(INJECTIONS)})")

    async def one(pair: AuditPair) -> _Probe:
        probe = await _probe(model, constitution, settings, pair, families, self_preference, seed)
        if on_pair is not None:
            on_pair()
        return probe

    probes = [probe async for probe in bounded_map(one, pairs, concurrency)]
    probes.sort(key=lambda p: p.pair.pair_id)
    m = _Measures(probes, settings, bootstrap_samples, seed)
    flip, first = m.position()
    failed = [p for p in probes if p.failed]
    return AuditReport(
        computed_at=now_iso(),
        judge_model=model.model_id,
        judge_fingerprint=judge_fingerprint,
        mode=settings.mode,
        orders=settings.orders,
        ensemble=settings.ensemble(),
        constitution=f"{constitution.name} ({constitution.short_hash})",
        source=source,
        reference=reference,
        pairs=len(pairs),
        seed=seed,
        bootstrap_samples=bootstrap_samples,
        clean_agreement=m.clean_agreement(),
        position_flip=flip,
        first_shown=first,
        length=m.flip_shift("clean", "length"),
        injection={
            f: InjectionFigures(
                fenced=m.flip_shift("control:fenced", f"{f}:fenced"),
                unfenced=m.flip_shift("control:unfenced", f"{f}:unfenced"),
            )
            for f in families
        },
        self_over_better=m.preferred("self:better") if self_preference else None,
        self_over_worse=m.preferred("self:worse") if self_preference else None,
        failed_pairs=len(failed),
        failures=[
            f"{p.pair.pair_id}: {name}: {message}" for p in failed[:5] for name, message in list(p.failed.items())[:1]
        ],
        calls=sum(p.calls for p in probes),
        wall_s=round(time.perf_counter() - started, 1),
        key=plan.key(model.served_id, settings, constitution, pairs),
    )


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
