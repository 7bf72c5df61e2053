"""Spot-check sampling, reproducibly: judged pairs stratified by principle and judge-confidence bucket, or drawn
actively, with probabilities that grow with the judge's uncertainty (recorded, so the estimates can weight them)."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from charter.agreement.config import AgreementConfig, bucket_label, config_for
from charter.agreement.labels import JudgedPair, open_labels, require_judged
from charter.api_args import ConfigArg, Range, public
from charter.errors import ArgumentError
from charter.runs import labels as stored
from charter.runs.labels import SpotSample
from charter.stats.ppi import inclusion_probabilities, poisson_sample
from charter.yamlio import config_from

Strategy = Literal["stratified", "active"]


def pair_principle(judged: JudgedPair, rng: random.Random) -> str:
    """The principle a human judges the pair against: the judge's one, or one of its ensemble (seeded)."""
    ids = [v.principle_id for v in judged.judgment.principles]
    if not ids:
        return "(none)"
    return ids[0] if len(ids) == 1 else rng.choice(sorted(ids))


def confidence(p_a: float) -> float:
    """The judge's confidence in its own pick: max(p, 1 - p)."""
    return max(p_a, 1.0 - p_a)


def allocate(sizes: dict[tuple, int], n: int, rng: random.Random) -> dict[tuple, int]:
    """Split n over strata proportionally (largest remainder), at least one each while n allows, capped by size."""
    total = sum(sizes.values())
    n = min(n, total)
    keys = sorted(sizes)
    take = {k: 0 for k in keys}
    if n >= len(keys):
        take = {k: 1 for k in keys}
    remaining = n - sum(take.values())
    while remaining > 0:
        room = {k: sizes[k] - take[k] for k in keys if sizes[k] > take[k]}
        room_total = sum(room.values())
        quotas = {k: remaining * room[k] / room_total for k in room}
        floors = {k: min(int(q), room[k]) for k, q in quotas.items()}
        if sum(floors.values()) == 0:  # fewer left than strata: largest remainders, ties broken by the seed
            order = sorted(room, key=lambda k: (-quotas[k], rng.random()))
            floors = {k: 1 for k in order[:remaining]}
        for k, f in floors.items():
            take[k] += f
        remaining = n - sum(take.values())
    return take


def draw_sample(
    judged: dict[str, JudgedPair],
    n: int,
    seed: int,
    config: AgreementConfig,
    exclude: frozenset[str] | set[str] = frozenset(),
    start: int = 0,
) -> list[SpotSample]:
    """n new sample rows, stratified by principle and confidence bucket, seeded; positions from `start`."""
    rng = random.Random(seed)
    strata: dict[tuple, list[str]] = defaultdict(list)
    principle_of: dict[str, str] = {}
    for pair_id, item in judged.items():
        principle_of[pair_id] = pair_principle(item, random.Random(f"{seed}:{pair_id}"))
        if pair_id in exclude:
            continue
        bucket = bucket_label(confidence(item.p_a), config.confidence_buckets)
        strata[(principle_of[pair_id], bucket)].append(pair_id)
    quota = allocate({k: len(v) for k, v in strata.items()}, n, rng)
    rows = []
    for key in sorted(strata):
        for pair_id in rng.sample(sorted(strata[key]), quota[key]):
            rows.append((pair_id, key[0], key[1], rng.choice(("ab", "ba"))))
    rng.shuffle(rows)  # interleave strata in the labeling order
    return [
        SpotSample(
            pair_id=p,
            principle_id=principle,
            confidence_bucket=bucket,
            shown_order=order,
            position=start + i,
            seed=seed,
        )
        for i, (p, principle, bucket, order) in enumerate(rows)
    ]


def uncertainty(judged: JudgedPair) -> float:
    """How unsure the judge is of a pair: the largest of sqrt(p (1 - p)) (0.5 at p = 0.5), half the gap between its
    two presentation orders, and the spread of its principles' verdicts."""
    judgment = judged.judgment
    p = judged.p_a
    parts = [float(np.sqrt(p * (1 - p)))]
    if judgment.p_a_ab is not None and judgment.p_a_ba is not None:
        parts.append(abs(judgment.p_a_ab - judgment.p_a_ba) / 2)
    votes = [v.p_a for v in judgment.principles if v.p_a is not None]
    if len(votes) > 1:
        parts.append(float(np.std(votes)))
    return max(parts)


def permanent_draw(seed: int, pair_id: str) -> float:
    """The pair's fixed uniform number in [0, 1) for active sampling: a larger sample keeps every pair of a smaller
    one (it is drawn when this is below its inclusion probability, which only grows with n)."""
    digest = hashlib.sha256(f"{seed}:{pair_id}:active".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def draw_active(
    judged: dict[str, JudgedPair], n: int, seed: int, config: AgreementConfig, existing: list[SpotSample]
) -> tuple[list[SpotSample], dict[str, float]]:
    """Poisson sampling with probabilities proportional to the judge's uncertainty (10% spread evenly), about n pairs
    in all: the new sample rows, and every sampled pair's inclusion probability under this design."""
    ids = sorted(judged)
    pi = inclusion_probabilities([uncertainty(judged[i]) for i in ids], min(n, len(ids)))
    draws = np.array([permanent_draw(seed, i) for i in ids])
    drawn = {ids[k] for k in poisson_sample(pi, draws)}
    probability = dict(zip(ids, pi.tolist()))
    have = {r.pair_id for r in existing}
    rng = random.Random(f"{seed}:active:{len(existing)}")
    index = {pair_id: k for k, pair_id in enumerate(ids)}
    new_ids = sorted(drawn - have, key=lambda i: draws[index[i]])  # labeling order: by the permanent draw
    rows = [
        SpotSample(
            pair_id=i,
            principle_id=pair_principle(judged[i], random.Random(f"{seed}:{i}")),
            confidence_bucket=bucket_label(confidence(judged[i].p_a), config.confidence_buckets),
            shown_order=rng.choice(("ab", "ba")),
            position=len(existing) + k,
            seed=seed,
            inclusion_probability=probability[i],
        )
        for k, i in enumerate(new_ids)
    ]
    # a pair sampled earlier keeps its (larger) probability under the grown design; one no longer judged keeps its own
    updated = {r.pair_id: probability.get(r.pair_id, r.inclusion_probability or 1.0) for r in existing}
    return rows, updated


@public
def spotcheck(
    run_dir: str | Path,
    n: Annotated[int | None, Range(ge=1)] = None,
    seed: int | None = None,
    config: ConfigArg[AgreementConfig] | None = None,
    *,
    strategy: Strategy | None = None,
    add: Annotated[int | None, Range(ge=1)] = None,
) -> list[SpotSample]:
    """Sample judged pairs for human spot checks and store the sample.

    `stratified` (the default) draws by principle and judge-confidence bucket in proportion to their sizes.
    `active` draws each pair with a probability that grows with the judge's uncertainty about it (its p near 0.5,
    its two orders or its principles disagreeing), records that probability, and the estimates weight each label
    by its inverse (Zrnic and Candès 2024): the same number of labels buys a narrower interval. An active sample has
    about n pairs (each is drawn on its own); growing it keeps every pair already drawn.

    A sample that already exists is kept (its labels keep their meaning); a larger n, or `add`, extends it under
    the same design; a smaller n changes nothing.

    Args:
        run_dir: The run directory.
        n: Pairs the sample should hold (at most every judged pair); None uses the run's `agreement.sample_size`.
        seed: Seed of the sampling and of the order each pair is shown in; None uses the run's `agreement.seed`.
        config: The agreement settings (an `AgreementConfig`, a dict of its fields or a YAML file); None uses the
            run config's `agreement:` section.
        strategy: `stratified` or `active`; None keeps the existing sample's, else `stratified`.
        add: Pairs to add to the existing sample (instead of `n`).

    Returns:
        The whole stored sample, new and earlier rows, in labeling order.

    Raises:
        RunStoreError: `run_dir` is not a run directory, or the run has no judged pairs yet.
        ConfigError: The run config's `agreement:` section is not valid.
        ArgumentError: `n` or `add` is below 1, both are given, or `strategy` differs from the existing sample's.
    """
    config = None if config is None else config_from(AgreementConfig, config, "config")
    store = open_labels(run_dir, read_only=None)  # a sample already drawn is read where the run is read-only
    try:
        config = config or config_for(store)
        seed = config.seed if seed is None else seed
        existing = stored.sample(store)
        design = store.meta("spot_design") or {}
        current = design.get("strategy") or ("active" if any(r.inclusion_probability for r in existing) else None)
        if existing and strategy is not None and current is not None and strategy != current:
            raise ArgumentError(
                "strategy", f"the sample was drawn {current}; extending it {strategy} would break its design"
            )
        strategy = strategy or current or "stratified"
        if strategy not in ("stratified", "active"):
            raise ArgumentError("strategy", f"{strategy!r}: use stratified or active")
        if add is not None and n is not None:
            raise ArgumentError("add", "give --n (the sample's size) or --add (pairs to add), not both")
        if add is not None:
            if add < 1:
                raise ArgumentError("add", f"must be at least 1 (got {add})")
            n = int(design.get("n", len(existing))) + add
        n = config.sample_size if n is None else n
        if n < 1:
            raise ArgumentError("n", f"must be at least 1 (got {n})")
        judged = require_judged(store)
        if strategy == "active":
            if n > int(design.get("n", 0)):
                seed = int(design.get("seed", seed))
                new, probabilities = draw_active(judged, n, seed, config, existing)
                stored.add_to_sample(store, new)
                stored.set_inclusion_probabilities(store, probabilities)
                store.set_meta(spot_design={"strategy": "active", "n": n, "seed": seed})
            return stored.sample(store)
        wanted = n - len(existing)
        if wanted > 0:
            new = draw_sample(judged, wanted, seed, config, exclude={r.pair_id for r in existing}, start=len(existing))
            stored.add_to_sample(store, new)
            store.set_meta(spot_design={"strategy": "stratified", "n": n, "seed": seed})
        return stored.sample(store)
    finally:
        store.close()
