"""Strengths from orderings, the win rates strengths imply, and the sparse pairings of a group.

`plackett_luce` fits Plackett–Luce strengths to full orderings (best first) with `choix`, maximum a posteriori
under a small Gaussian prior (`alpha`), which makes the fit exist where an item won or lost everything; pairwise
outcomes are fitted by `charter.stats.bradley_terry`. Under either model the probability that item i beats item j
is sigmoid(s_i - s_j), so `expected_win_rates` turns strengths into each item's mean chance of beating the others: a
reward on the same 0..1 scale as an all-pairs win rate.

A fit is defined only over items the data connect: `connected` tells whether the comparisons join every item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from charter.logistic import sigmoid

#: The prior's precision: weak enough not to move well-determined strengths, strong enough to keep a clean sweep finite.
ALPHA = 0.01


def plackett_luce(k: int, orderings: Sequence[Sequence[int]], alpha: float = ALPHA) -> np.ndarray:
    """Plackett–Luce strengths of `k` items from orderings, each the items' indexes best first (`choix`).

    Raises:
        ValueError: an ordering that is not a permutation of some of the items.
    """
    import choix

    for order in orderings:
        if len(set(order)) != len(order) or any(not 0 <= x < k for x in order):
            raise ValueError(f"an ordering must list items of 0..{k - 1} once each, not {list(order)}")
    if not orderings:
        return np.zeros(k)
    strengths = np.asarray(choix.opt_rankings(k, [tuple(o) for o in orderings], alpha=alpha), dtype=float)
    return strengths - strengths.mean()


def expected_win_rates(strengths: np.ndarray) -> np.ndarray:
    """Each item's mean chance of beating each other item, sigmoid(s_i - s_j) averaged over j != i."""
    k = len(strengths)
    if k < 2:
        raise ValueError("a win rate needs at least two items")
    chances = sigmoid(strengths[:, None] - strengths[None, :])
    np.fill_diagonal(chances, 0.0)
    return chances.sum(axis=1) / (k - 1)


def connected(k: int, edges: Sequence[tuple[int, int]]) -> bool:
    """Whether the edges join all `k` items into one component (a fit compares only items the data connect)."""
    parent = list(range(k))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[root(a)] = root(b)
    return len({root(x) for x in range(k)}) <= 1


def circular_pairs(k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Each item against its neighbour in a random cycle: k pairs for k >= 3 items (one for two), instead of
    k(k-1)/2; every item is compared twice and the pairs join all items."""
    if k < 2:
        return []
    if k == 2:
        return [(0, 1)]
    cycle = [int(x) for x in rng.permutation(k)]
    return [(cycle[n], cycle[(n + 1) % k]) for n in range(k)]
