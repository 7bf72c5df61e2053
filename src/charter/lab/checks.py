"""Tests of a constitution against a judge and pairs:

- **sensitivity**: each pair judged again with the principle negated and with a neutral principle; per principle,
  how often the verdict flips (with a bootstrap interval). A verdict that does not flip when its principle is
  reversed does not depend on the principle's text, and the principle is flagged;
- **redundancy**: how the principles' votes correlate, which principles cluster together (C3AI's finding that many
  principles reduce to a few factors), and the smallest subset whose ensemble gives the full ensemble's side on a
  target share of pairs, with the judge calls it saves;
- **declared against people** (pairs with human labels): which principles people's choices support, and which
  principles of an inferred constitution the declared one lacks.

A run's stored constitution test (`judge.constitution_test`): reading it back, and the publishing gate on the
principles it flags insensitive.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from charter.agreement.gate import GateResult
from charter.constitutions.schema import Constitution, Principle
from charter.judge.settings import ConstitutionTestConfig, JudgeSettings
from charter.lab.votes import LabelledPair, ensemble, vote
from charter.providers.base import ChatModel
from charter.records import Record
from charter.runs.store import RunStore
from charter.stats.agreement import Figure, flip_rate, share

#: How a negated principle's question opens (the scripted lab judge looks for it).
NEGATED = "The opposite of this principle"
NEUTRAL = Principle(
    id="neutral",
    description="This principle prefers neither response.",
    critique_request="Say nothing about the response.",
    revision_request="Repeat the response unchanged.",
    comparison="Pick either response: this principle states no preference between them.",
)
#: Correlation distance (1 - r) under which principles fall in one cluster.
SAME_FACTOR = 0.5


def planned_judgments(principles: int, pairs: int, inferred: int = 0) -> int:
    """Judgments a test makes: each pair under each principle, its negation and the neutral principle, and under
    each inferred principle (with labels). Each is one judge call per order shown."""
    return pairs * (2 * principles + 1 + inferred)


def negated(principle: Principle) -> Principle:
    """The principle reversed: the judge is asked for the response that meets it less."""
    return principle.model_copy(
        update={
            "id": f"{principle.id}.negated",
            "comparison": f"{NEGATED}: pick the response that meets it LESS, or goes against it more. "
            + principle.comparison,
        }
    )


class Sensitivity(Record):
    """One principle's verdicts under its negation and under a neutral principle."""

    principle: str
    negated_flip: Figure
    """Share of the pairs it decides whose verdict reverses when the principle is negated (high is good)."""
    neutral_flip: Figure
    """Share whose verdict reverses under a principle that states no preference."""
    insensitive: bool
    """Flagged: even the upper end of the negated flip rate's interval is below `min_flip`."""
    untested: bool = False
    """The judge decided no pair under the principle (every vote abstained, its two orders disagreeing, or failed):
    its sensitivity is not measured, so it is not shown to be used either."""


class Redundancy(Record):
    """How the principles' votes hang together."""

    principles: list[str]
    correlation: list[list[float | None]]
    """Pearson correlation of the principles' votes over the pairs (None where a principle never varies)."""
    clusters: list[list[str]]
    """Principles whose votes correlate above 1 - SAME_FACTOR (average linkage)."""
    subset: list[str]
    """The smallest subset (greedy) whose ensemble gives the full ensemble's side on at least `target` of pairs."""
    subset_reproduces: float
    """Share of pairs on which it does (a tie reproduced counts)."""
    decided: int | None = None
    """Pairs on which the full ensemble picks a side; with none, every subset trivially reproduces its ties."""
    target: float
    calls_full: int
    calls_subset: int
    """Judge calls per pair set for the full ensemble and for the subset."""


class PrincipleSupport(Record):
    """A principle against people's choices."""

    principle: str
    agreement: Figure
    """Its own agreement with people (an abstention counts half)."""
    verdict: str
    """`supported` (interval above 0.5), `contradicted` (below), or `unclear`."""


class ConstitutionTest(Record):
    """What `charter constitutions test` found."""

    constitution: str
    constitution_hash: str
    judge: str
    pairs: int
    min_flip: float
    sensitivity: list[Sensitivity]
    redundancy: Redundancy
    support: list[PrincipleSupport] | None = None
    """Per principle against the human labels (pairs with labels only)."""
    lacking: list[str] | None = None
    """Principles of the inferred constitution that no declared principle's votes track (|r| < 0.5)."""
    judge_calls: int
    vote_failures: int
    wall_s: float
    key: str | None = None
    """In a run: what the test was made of (judge, settings, constitution, pairs, seed), so it is not made twice."""
    judge_fingerprint: str | None = None
    """In a run: the judge settings of the rows it tested."""

    @property
    def flagged(self) -> list[str]:
        """Principles whose verdicts do not follow their text."""
        return [s.principle for s in self.sensitivity if s.insensitive]

    @property
    def untested(self) -> list[str]:
        """Principles under which the judge decided no pair: not measured."""
        return [s.principle for s in self.sensitivity if s.untested]


def correlation(codes: np.ndarray) -> np.ndarray:
    """Pearson correlation of vote rows (NaN votes as abstentions; NaN where a row never varies)."""
    x = np.nan_to_num(codes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(x) if len(x) > 1 else np.ones((len(x), len(x)))


def clusters(corr: np.ndarray, ids: list[str], threshold: float = SAME_FACTOR) -> list[list[str]]:
    """Groups of principles whose votes correlate (agglomerative, average linkage on 1 - r)."""
    if len(ids) < 2:
        return [ids]
    from sklearn.cluster import AgglomerativeClustering

    distance = 1 - np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(distance, 0.0)
    labels = AgglomerativeClustering(
        n_clusters=None,  # pyright: ignore[reportArgumentType] - None with a distance threshold
        metric="precomputed",
        linkage="average",
        distance_threshold=threshold,
    ).fit_predict(np.clip(distance, 0, 2))
    return [[i for i, c in zip(ids, labels) if c == k] for k in dict.fromkeys(labels.tolist())]


def smallest_subset(codes: np.ndarray, target: float) -> tuple[list[int], float]:
    """Greedy: add the principle that most raises the share of pairs where the subset's side equals the full
    ensemble's, until the share reaches `target`."""
    x = np.nan_to_num(codes)
    full = ensemble(x)
    chosen: list[int] = []
    share = 0.0
    while len(chosen) < len(x):
        score, pick = max(
            (float(np.mean(ensemble(x[chosen + [i]]) == full)), -i) for i in range(len(x)) if i not in chosen
        )
        chosen.append(-pick)
        share = score
        if share >= target:
            break
    return chosen, share


async def check_constitution(
    constitution: Constitution,
    pairs: list[LabelledPair],
    judge: ChatModel,
    *,
    settings: JudgeSettings,
    min_flip: float,
    target: float,
    seed: int,
    bootstrap_samples: int,
    concurrency: int,
    inferred: Constitution | None = None,
    on_judgment: Callable[[], None] | None = None,
) -> ConstitutionTest:
    """Sensitivity, redundancy and (with human labels) support of a constitution's principles under a judge;
    `on_judgment` is called as each of its `planned_judgments` comes in. The bounds and sizes have no defaults here:
    the public `charter.check_constitution` and the run's config hold them."""
    started = time.perf_counter()
    principles = constitution.principles
    original = await vote(judge, principles, pairs, settings, seed, concurrency, on_judgment)
    reversed_ = await vote(judge, [negated(p) for p in principles], pairs, settings, seed, concurrency, on_judgment)
    neutral = await vote(judge, [NEUTRAL], pairs, settings, seed, concurrency, on_judgment)
    ids = np.array([p.pair.pair_id for p in pairs])
    sensitivity = []
    for i, principle in enumerate(principles):
        flip = flip_rate(original.codes[i], reversed_.codes[i], ids, bootstrap_samples, seed)
        high = flip.ci[1] if flip.ci else flip.value
        sensitivity.append(
            Sensitivity(
                principle=principle.id,
                negated_flip=flip,
                neutral_flip=flip_rate(original.codes[i], neutral.codes[0], ids, bootstrap_samples, seed),
                insensitive=high is not None and high < min_flip,
                untested=flip.n == 0,
            )
        )
    corr = correlation(original.codes)
    pids = [p.id for p in principles]
    subset, reproduces = smallest_subset(original.codes, target)
    per_call = 2 if settings.orders == "both" else 1
    redundancy = Redundancy(
        principles=pids,
        correlation=[[None if np.isnan(v) else round(float(v), 4) for v in row] for row in corr],
        clusters=clusters(corr, pids),
        subset=[pids[i] for i in subset],
        subset_reproduces=reproduces,
        decided=int(np.count_nonzero(ensemble(np.nan_to_num(original.codes)))),
        target=target,
        calls_full=len(principles) * len(pairs) * per_call,
        calls_subset=len(subset) * len(pairs) * per_call,
    )
    labelled = [k for k, p in enumerate(pairs) if p.human in ("a", "b")]
    support = lacking = None
    calls = original.calls + reversed_.calls + neutral.calls
    if labelled:
        human = original.human[labelled]
        support = []
        for i, principle in enumerate(principles):
            row = np.nan_to_num(original.codes[i, labelled])
            hits = np.where(row == 0, 0.5, row == human)
            rate = share(hits, ids[labelled], bootstrap_samples, seed)
            low, high = (rate.ci or [rate.value, rate.value]) if rate.value is not None else (None, None)
            verdict = (
                "supported"
                if low is not None and low > 0.5
                else "contradicted"
                if high is not None and high < 0.5
                else "unclear"
            )
            support.append(PrincipleSupport(principle=principle.id, agreement=rate, verdict=verdict))
        if inferred is not None:
            theirs = await vote(judge, inferred.principles, pairs, settings, seed, concurrency, on_judgment)
            calls += theirs.calls
            both = correlation(np.vstack([np.nan_to_num(original.codes), np.nan_to_num(theirs.codes)]))
            cross = np.abs(np.nan_to_num(both[len(principles) :, : len(principles)]))
            lacking = [p.id for k, p in enumerate(inferred.principles) if cross[k].max(initial=0) < 0.5]
    return ConstitutionTest(
        constitution=constitution.name,
        constitution_hash=constitution.hash,
        judge=judge.model_id,
        pairs=len(pairs),
        min_flip=min_flip,
        sensitivity=sensitivity,
        redundancy=redundancy,
        support=support,
        lacking=lacking,
        judge_calls=calls,
        vote_failures=original.failures + reversed_.failures + neutral.failures,
        wall_s=round(time.perf_counter() - started, 1),
    )


def _rate_text(rate: Figure) -> str:
    if rate.value is None:
        return f"n/a (n={rate.n})"
    ci = f" [{rate.ci[0]:.3f}, {rate.ci[1]:.3f}]" if rate.ci else ""
    return f"{rate.value:.3f}{ci} (n={rate.n})"


def checks_console(result: ConstitutionTest) -> list[str]:
    """The constitution test in a few terminal lines (the markdown page has the correlation matrix)."""
    r = result.redundancy
    lines = [f"{result.constitution} under {result.judge}, {result.pairs} pairs, {result.judge_calls:,} judge calls:"]
    for s in result.sensitivity:
        flag = "  INSENSITIVE" if s.insensitive else "  UNTESTED (the judge decided no pair under it)" * s.untested
        lines.append(
            f"  {s.principle}: flips {_rate_text(s.negated_flip)} when negated, {_rate_text(s.neutral_flip)} under a "
            f"neutral principle{flag}"
        )
    lines.append("clusters: " + "; ".join("{" + ", ".join(c) + "}" for c in r.clusters))
    if r.decided == 0:
        lines.append(f"the {len(r.principles)} principles together decide no pair: there is nothing to compress")
    else:
        lines.append(
            f"smallest subset deciding as all {len(r.principles)} do on >= {r.target:.0%} of pairs: "
            f"{', '.join(r.subset)} ({r.subset_reproduces:.1%}; {r.calls_subset:,} calls instead of {r.calls_full:,})"
        )
    if result.support is not None:
        lines.append("against people: " + ", ".join(f"{s.principle} {s.verdict}" for s in result.support))
    if result.lacking is not None:
        lines.append("inferred principles the constitution lacks: " + (", ".join(result.lacking) or "none"))
    return lines


def checks_markdown(result: ConstitutionTest) -> str:
    """The constitution test as a markdown page."""
    r = result.redundancy
    lines = [
        f"# Constitution test: {result.constitution}",
        "",
        f"Judge `{result.judge}` on {result.pairs} pairs; {result.judge_calls:,} judge calls ({result.vote_failures}"
        f" failed judgments); {result.wall_s} s. Constitution hash {result.constitution_hash[:12]}.",
        "",
        "## Sensitivity: does the verdict depend on the principle?",
        "",
        f"Flip rate: the share of the pairs a principle decides whose verdict reverses. A principle is flagged when"
        f" even the upper end of its negated flip rate's 95% interval is below {result.min_flip}: the judge's"
        " verdicts under it do not follow its text, and the per-principle provenance of rows judged under it"
        " overstates what was checked. A principle is untested when the judge decided no pair under it (its two"
        " orders disagreed on every pair, or its judgments failed): nothing shows that its text is used.",
        "",
        "| principle | flip when negated | flip under a neutral principle | flagged |",
        "|---|---|---|---|",
    ]
    for s in result.sensitivity:
        lines.append(
            f"| `{s.principle}` | {_rate_text(s.negated_flip)} | {_rate_text(s.neutral_flip)} |"
            f" {'**insensitive**' if s.insensitive else 'untested' if s.untested else ''} |"
        )
    saved = 1 - r.calls_subset / r.calls_full if r.calls_full else 0.0
    lines += [
        "",
        "## Redundancy",
        "",
        "Clusters of principles whose votes correlate: "
        + "; ".join("{" + ", ".join(f"`{p}`" for p in c) + "}" for c in r.clusters)
        + ".",
        "",
        (
            f"The {len(r.principles)} principles together decide no pair (every vote a tie or an abstention): there"
            " is nothing to compress."
            if r.decided == 0
            else f"The smallest subset found whose ensemble gives the full ensemble's side on at least {r.target:.0%}"
            f" of pairs: {', '.join(f'`{p}`' for p in r.subset)} ({r.subset_reproduces:.1%} of pairs),"
            f" {r.calls_subset:,} judge calls instead of {r.calls_full:,} ({saved:.0%} fewer)."
        ),
        "",
        "| | " + " | ".join(f"`{p}`" for p in r.principles) + " |",
        "|---|" + "---:|" * len(r.principles),
    ]
    for pid, row in zip(r.principles, r.correlation):
        lines.append(f"| `{pid}` | " + " | ".join("n/a" if v is None else f"{v:.2f}" for v in row) + " |")
    if result.support is not None:
        lines += [
            "",
            "## Against people's choices",
            "",
            "| principle | agreement with people | verdict |",
            "|---|---|---|",
        ]
        lines += [f"| `{s.principle}` | {_rate_text(s.agreement)} | {s.verdict} |" for s in result.support]
    if result.lacking is not None:
        lines += [
            "",
            "Inferred principles the declared constitution lacks (no declared principle's votes track theirs): "
            + (", ".join(f"`{p}`" for p in result.lacking) or "none")
            + ".",
        ]
    return "\n".join(lines) + "\n"


__all__ = [
    "ConstitutionTest",
    "META",
    "NEGATED",
    "NEUTRAL",
    "Redundancy",
    "Sensitivity",
    "check_constitution",
    "checks_console",
    "checks_markdown",
    "clusters",
    "constitution_test_config",
    "correlation",
    "evaluate_constitution_gate",
    "negated",
    "smallest_subset",
    "stored_test",
]


META = "constitution_test"
NO_GATE = "no constitution-test gate configured (judge.constitution_test.max_insensitive)"


def stored_test(store: RunStore) -> ConstitutionTest | None:
    """The constitution test stored in a run, if one was run."""
    return store.meta_record(META, ConstitutionTest)


def constitution_test_config(store: RunStore) -> ConstitutionTestConfig | None:
    """The `judge.constitution_test` section of the run config in effect, if any."""
    return store.judge_section("constitution_test", ConstitutionTestConfig)


def evaluate_constitution_gate(
    result: ConstitutionTest | None, config: ConstitutionTestConfig | None, judge_fingerprint: str | None = None
) -> GateResult:
    """Check a run's stored constitution test against `max_insensitive`: at most that many principles may be
    flagged (their verdicts do not follow their text) or untested (the judge decided no pair under them)."""
    if config is None or config.max_insensitive is None:
        return GateResult(True, None, None, None, NO_GATE, configured=False)
    bar = float(config.max_insensitive)
    if result is None:
        return GateResult(
            False, "insensitive_principles", None, bar, "constitution-test gate: no constitution test was run"
        )
    if judge_fingerprint and result.judge_fingerprint != judge_fingerprint:
        return GateResult(
            False,
            "insensitive_principles",
            None,
            bar,
            "constitution-test gate: the stored test is not of the judge settings that made the rows; run it again",
        )
    flagged, untested = result.flagged, result.untested
    count = len(flagged) + len(untested)  # an untested principle is not shown to be used: it counts against the bar
    passed = count <= config.max_insensitive
    named = f" ({', '.join(flagged)})" if flagged else ""
    unmeasured = (
        f" and {len(untested)} untested (the judge decided no pair under them: {', '.join(untested)})"
        if untested
        else ""
    )
    message = (
        f"constitution-test gate {'passed' if passed else 'failed'}: {len(flagged)} principle(s) flagged "
        f"insensitive{named}{unmeasured}, at most {config.max_insensitive} allowed"
    )
    return GateResult(passed, "insensitive_principles", float(count), bar, message)
