"""Subsets that cover an embedding space: greedy k-center and a greedy Vendi maximiser, and the coverage radius
they are judged by.

Both take n unit vectors (rows) and return the positions of `size` of them in the order picked. The first pick is
seeded; each later pick is a maximum (k-center) or minimum (Vendi) over the rows, compared at `DIGITS` decimals so
that the last bits of a matrix product (which differ between machines and BLAS builds) never decide, and ties go to
the lowest position. Cost: O(n · size · d) time (one n x d matrix-vector product a pick), O(n) memory beside the
vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from charter.stats.diversity import unit_rows

#: decimals at which distances and similarities are compared
DIGITS = 5
#: rows per block of the coverage radius (bounds its memory to BLOCK x size floats)
BLOCK = 4096


def _unit32(vectors: Any) -> np.ndarray:
    """Unit rows in float32 (half the memory and time of float64; picks compare at `DIGITS` decimals)."""
    return np.ascontiguousarray(unit_rows(vectors, np.float32))


def first_pick(n: int, seed: int) -> int:
    """The seeded first pick of n rows."""
    return int(np.random.default_rng(seed).integers(n))


def _greedy(
    x: np.ndarray, size: int, seed: int, start: float, fold: Callable[[np.ndarray, np.ndarray], None], best: Any
) -> list[int]:
    """Picks `size` rows: the seeded first, then at each step the row whose score (`best`: argmax or argmin over
    the rounded scores of the rows not picked, the first on a tie) is best. Scores start at `start`, and
    `fold(scores, similarities)` folds each pick's cosine similarities into them."""
    n = len(x)
    size = min(size, n)
    if not size:
        return []
    picked = [first_pick(n, seed)]
    score = np.full(n, start)
    taken = np.zeros(n, dtype=bool)
    while True:
        last = picked[-1]
        taken[last] = True
        fold(score, x @ x[last])
        if len(picked) == size:
            return picked
        rounded = np.round(score, DIGITS)
        rounded[taken] = np.nan
        picked.append(int(best(rounded)))


def k_center(vectors: Any, size: int, seed: int = 0) -> list[int]:
    """Greedy k-center (Gonzalez 1985): after a seeded first row, the row farthest (cosine distance 1 - cos) from
    its nearest row picked so far. Its covering radius is at most twice the best possible for `size` rows."""

    def fold(nearest: np.ndarray, similarity: np.ndarray) -> None:
        np.minimum(nearest, 1.0 - similarity, out=nearest)

    return _greedy(_unit32(vectors), size, seed, np.inf, fold, np.nanargmax)


def vendi_greedy(vectors: Any, size: int, seed: int = 0) -> list[int]:
    """Greedy maximiser of the Vendi score of order 2 (Pasarkar & Dieng 2023: exp of the Rényi entropy of order 2
    of K/n's eigenvalues, = n² / Σ K_ij²): after a seeded first row, the row whose picked set has the largest such
    score, i.e. the smallest sum of squared cosines with the rows picked so far. That step is exact and O(n d); the
    order-1 score (the Vendi score reported) is not greedy-separable, and rises with it."""

    def fold(squares: np.ndarray, similarity: np.ndarray) -> None:
        squares += similarity**2

    return _greedy(_unit32(vectors), size, seed, 0.0, fold, np.nanargmin)


def coverage_radius(vectors: Any, picked: list[int]) -> float | None:
    """The largest cosine distance from a row to its nearest picked row (lower covers better); None without
    picks. O(n · |picked| · d) time, in blocks of `BLOCK` rows."""
    if not picked:
        return None
    x = _unit32(vectors)
    centers = x[picked]
    radius = 0.0
    for start in range(0, len(x), BLOCK):
        nearest = 1.0 - (x[start : start + BLOCK] @ centers.T).max(axis=1)
        radius = max(radius, float(nearest.max()))
    return radius


METHODS: dict[str, Callable[[Any, int, int], list[int]]] = {"k_center": k_center, "vendi": vendi_greedy}
