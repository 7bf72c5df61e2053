"""Rates over pairs (a flip rate, a share of pairs supporting a principle) with their 95% intervals."""

from __future__ import annotations

import numpy as np

from charter.records import Record
from charter.stats.agreement import share


class Rate(Record):
    """A share with its 95% interval over pairs (exact, spanned with the cluster bootstrap's)."""

    value: float | None
    ci: list[float] | None
    n: int


def share_rate(hits: np.ndarray, ids: np.ndarray, samples: int, seed: int) -> Rate:
    """A share of pairs (values in [0, 1]) with its 95% interval (`charter.stats.agreement.share`)."""
    fig = share(hits, ids, samples, seed)
    return Rate(value=fig["value"], ci=fig["ci"], n=fig["n"])


def flip_rate(original: np.ndarray, other: np.ndarray, ids: np.ndarray, samples: int, seed: int) -> Rate:
    """Share of the pairs the original decides (and the other judged) whose side reverses."""
    keep = (np.abs(original) == 1) & ~np.isnan(other)
    return share_rate((other[keep] == -original[keep]).astype(float), ids[keep], samples, seed)
