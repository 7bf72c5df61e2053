"""Spot-check sampling: judged pairs stratified by principle and judge-confidence bucket, reproducibly."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from charter.agreement.config import AgreementConfig, bucket_label, config_for
from charter.agreement.labels import JudgedPair, open_labels, require_judged
from charter.errors import ArgumentError
from charter.runs import labels as stored
from charter.runs.labels import SpotSample


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


def spotcheck(
    run_dir: str | Path, n: int | None = None, seed: int | None = None, config: AgreementConfig | None = None
) -> list[SpotSample]:
    """Sample judged pairs for human spot checks, stratified by principle and confidence bucket, and store the sample.

    A sample that already exists is kept (its labels keep their meaning); a larger n adds pairs to it, a smaller
    one changes nothing.

    Args:
        run_dir: The run directory.
        n: Pairs the sample should hold (at most every judged pair); None uses the run's `agreement.sample_size`.
        seed: Seed of the sampling and of the order each pair is shown in; None uses the run's `agreement.seed`.
        config: The agreement settings; None uses the run config's `agreement:` section.

    Returns:
        The whole stored sample, new and earlier rows, in labeling order.

    Raises:
        RunStoreError: `run_dir` is not a run directory, or the run has no judged pairs yet.
        ConfigError: The run config's `agreement:` section is not valid.
        ArgumentError: `n` is below 1.
    """
    store = open_labels(run_dir)
    try:
        config = config or config_for(store)
        n = config.sample_size if n is None else n
        seed = config.seed if seed is None else seed
        if n < 1:
            raise ArgumentError("n", f"must be at least 1 (got {n})")
        judged = require_judged(store)
        existing = stored.sample(store)
        wanted = n - len(existing)
        if wanted > 0:
            new = draw_sample(judged, wanted, seed, config, exclude={r.pair_id for r in existing}, start=len(existing))
            stored.add_to_sample(store, new)
        return stored.sample(store)
    finally:
        store.close()
