"""A round's DPO data: the synthetic rows of the round's runs, with real (human or source) rows mixed in so that
the real share holds (`human.share`, floored at `real_share`), every row marked `synthetic`, and the diversity of
the mix measured.

Real rows never run short silently: the mix keeps every synthetic row and adds the fewest real rows that hold the
share; where the real rows are too few for that, it draws fewer synthetic rows instead (seeded), so that the share
is a floor, never a target missed.
"""

from __future__ import annotations

import math
from typing import Any

from charter.errors import ConfigError
from charter.loop.config import LoopConfig
from charter.stats.diversity import METRICS, DiversityFigure, FieldDiversity, LengthSpread

#: the dataset fields whose diversity a round's data reports
FIELDS = ("prompt", "chosen")


def real_share(config: LoopConfig, round_index: int) -> float:
    """The real share round `round_index` holds: `human.share` for the round, at least `real_share` (0 without
    real data)."""
    if config.human is None:
        return 0.0
    return max(config.human.share_for(round_index), config.real_share)


def mix_counts(n_synthetic: int, n_real: int, share: float, where: str) -> tuple[int, int]:
    """(synthetic, real) rows: every synthetic row and the fewest real rows that make `share` of the whole, or,
    where the real rows are too few, all of them and as many synthetic rows as keep the share."""
    if n_real == 0:
        raise ConfigError(f"{where}: the real data (human.path) has no rows to hold a real share of {share:.0%}")
    k_real = math.ceil(n_synthetic * share / (1 - share) - 1e-9)
    if k_real <= n_real:
        return n_synthetic, max(k_real, 1)
    k_synthetic = math.floor(n_real * (1 - share) / share + 1e-9)
    if k_synthetic == 0:
        raise ConfigError(
            f"{where}: {n_real} real rows leave no room for a synthetic row at a real share of {share:.0%}"
        )
    return k_synthetic, n_real


def mixed_rows(config: LoopConfig, rows: list[dict[str, Any]], round_index: int, where: str) -> list[dict[str, Any]]:
    """The round's training rows: `rows` (synthetic) with the real rows mixed in at the round's real share, shuffled
    (seeded by the loop's seed and the round); every row carries `synthetic` and `label_source`."""
    from charter.mixing.mix import charter_row, mix, rows_of

    share = real_share(config, round_index)
    if config.human is None or share == 0:
        return [dict(charter_row(row)) for row in rows]
    real = rows_of(config.human.path, config.human.split, "human dataset")
    k_synthetic, k_real = mix_counts(len(rows), len(real), share, where)
    size = k_synthetic + k_real
    mixed = mix(rows, real, ratio=k_synthetic / size, seed=config.seed + round_index, size=size)
    return [dict(row) for row in mixed]


def shares(rows: list[dict[str, Any]], floor: float) -> dict[str, Any]:
    """How many rows are real and synthetic, the synthetic share and the real share the round had to hold."""
    real = sum(1 for row in rows if row.get("synthetic") is False)
    return {
        "rows": len(rows),
        "real_rows": real,
        "human_rows": real,  # the same count, by the name earlier loop results use
        "synthetic_rows": len(rows) - real,
        "synthetic_share": (len(rows) - real) / len(rows) if rows else None,
        "real_share_floor": floor,
    }


def data_diversity(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """The diversity of the round's training rows per field (prompt, chosen): each metric's value and sample size,
    and its interval where it has one (`self_bleu_ci95`)."""
    from charter.preference.diversity import diversity

    report = diversity(rows, fields=list(FIELDS), seed=seed)
    out: dict[str, Any] = {}
    for name, field in report.fields.items():
        figures = {key: field.figure(key) for key in METRICS}
        out[name] = {
            "texts": field.texts,
            **{key: figure.value for key, figure in figures.items()},
            "n": {key: figure.n for key, figure in figures.items()},
            **{f"{key}_ci95": figures[key].ci95 for key, e in METRICS.items() if e.interval is not None},
            "mean_length": field.length.mean,
        }
    return out


def field_figures(stored: dict[str, Any]) -> FieldDiversity:
    """A field's figures as `data_diversity` keeps them, read back (a metric it did not keep: not measured)."""
    n = stored.get("n") or {}
    figures = {
        key: DiversityFigure(value=stored[key], n=n.get(key, 0), ci95=stored.get(f"{key}_ci95"))
        if stored.get(key) is not None
        else DiversityFigure(note="not measured")
        for key in METRICS
    }
    declared: dict[str, Any] = {key: figures.pop(key) for key in list(figures) if key in FieldDiversity.model_fields}
    texts = stored.get("texts") or 0
    return FieldDiversity(
        texts=texts,
        sample=max(n.values(), default=texts),
        **declared,
        more=figures,
        length=LengthSpread(mean=stored.get("mean_length")),
    )


def real_texts(config: LoopConfig, n: int) -> list[str]:
    """A seeded sample of `n` of the real rows' chosen responses (their last message), the monitor's reference."""
    from charter.mixing.mix import rows_of
    from charter.preference.selection import field_text
    from charter.stats.diversity import Sampler

    assert config.human is not None  # the config refuses `monitor.against: [real]` without real data
    sampler = Sampler(n, config.seed, distinct=True)
    for row in rows_of(config.human.path, config.human.split, "human dataset"):
        if row.get("chosen") is not None:
            sampler.add(field_text(row["chosen"], "chosen"))
    return sampler.texts()
