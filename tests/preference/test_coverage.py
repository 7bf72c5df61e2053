"""Greedy k-center and the greedy Vendi maximiser: they cover a clustered set better than random subsets, and
they pick the same rows every time (seeded first pick, ties to the lowest position, last bits never decide)."""

from __future__ import annotations

import numpy as np
import pytest

from charter.preference.selection import coverage_radius, first_pick, k_center, vendi_greedy
from charter.stats.diversity import vendi_score


def clustered(seed: int = 0, clusters: int = 8, per: int = 60, dim: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    points = np.concatenate([c + 0.08 * rng.normal(size=(per, dim)) for c in centers])
    return points[rng.permutation(len(points))]


def test_k_center_covers_better_than_any_of_many_random_subsets() -> None:
    x = clustered()
    picked = k_center(x, 8, seed=0)
    rng = np.random.default_rng(1)
    random_radii = [coverage_radius(x, list(rng.choice(len(x), 8, replace=False))) for _ in range(50)]
    assert len(set(picked)) == 8
    assert coverage_radius(x, picked) < min(random_radii)
    assert coverage_radius(x, picked) < 0.1  # one pick a cluster: every row lies near one


def test_the_vendi_maximiser_beats_random_subsets_on_the_vendi_score() -> None:
    x = clustered()
    picked = vendi_greedy(x, 8, seed=0)
    rng = np.random.default_rng(2)
    random_scores = [vendi_score(x[rng.choice(len(x), 8, replace=False)]) for _ in range(50)]
    assert vendi_score(x[picked]) > max(random_scores)


@pytest.mark.parametrize("method", [k_center, vendi_greedy])
def test_the_picks_are_reproducible_and_break_ties_by_position(method) -> None:
    x = clustered(seed=3)
    assert method(x, 12, seed=5) == method(x.copy(), 12, seed=5)
    assert method(x, 12, seed=5)[0] == first_pick(len(x), 5) and method(x, 12, seed=6)[0] == first_pick(len(x), 6)
    noisy = x + np.random.default_rng(0).normal(scale=1e-9, size=x.shape)
    assert method(noisy, 12, seed=5) == method(x, 12, seed=5)  # the last bits never decide
    # after the first pick, every other row is equally far: the lowest position goes next
    first = first_pick(5, 0)
    picks = method(np.eye(5), 3, seed=0)
    assert picks == [first, *[i for i in range(5) if i != first][:2]]


def test_size_beyond_the_rows_keeps_them_all_and_nothing_gives_nothing() -> None:
    assert sorted(k_center(np.eye(3), 10)) == [0, 1, 2] and vendi_greedy(np.zeros((0, 3)), 2) == []
    assert coverage_radius(np.eye(3), []) is None and coverage_radius(np.eye(3), [0, 1, 2]) == pytest.approx(0.0)
