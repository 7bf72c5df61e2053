"""Reward-model evaluation, RewardBench style: accuracy on preference pairs per `subset`, with exact (Clopper-Pearson)
95% intervals, and best-of-N accuracy where a prompt has more than two responses.

Two kinds of scorer: a reward of (prompt, response) (`rm_accuracy`), or a probability that one response of a
prompt is better than another (`judged_accuracy`: a judge used as a pairwise reward model), whose failed
comparisons are counted apart, never scored."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

from charter.errors import DatasetError
from charter.stats.intervals import exact_interval


class Accuracy(TypedDict):
    """Correct orderings out of n, with the exact 95% interval."""

    n: int
    """Pairs (or prompts, for best-of-N) scored."""
    correct: float
    """Pairs the reward model orders as labelled (a tie counts half)."""
    accuracy: float
    """correct / n."""
    ci95: list[float]
    """[low, high] of the exact (Clopper-Pearson) 95% interval."""


def _accuracy(correct: float, n: int) -> Accuracy:
    return {"n": n, "correct": correct, "accuracy": correct / n, "ci95": list(exact_interval(correct, n))}


def _key(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class PairRows:
    """Preference rows grouped by prompt, each prompt and response under a key (its text, or its JSON)."""

    labelled: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(subset, prompt key, chosen key, rejected key) per row, in file order."""
    prompts: dict[str, Any] = field(default_factory=dict)
    """Prompt key -> the prompt as given."""
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Prompt key -> response key -> the response as given, in order of first appearance."""
    rejected: dict[str, set[str]] = field(default_factory=dict)
    """Prompt key -> the keys of its responses rejected in some row."""

    def best_of_n(self) -> dict[str, str]:
        """Prompt key -> its one never-rejected response, for the prompts with more than two responses and
        exactly one response never rejected (the ones best-of-N accuracy is measured on)."""
        out = {}
        for p, found in self.responses.items():
            winners = [r for r in found if r not in self.rejected[p]]
            if len(found) > 2 and len(winners) == 1:
                out[p] = winners[0]
        return out


def group_rows(rows: Sequence[dict[str, Any]]) -> PairRows:
    """The rows grouped by prompt.

    Raises:
        DatasetError: No rows, or a row without prompt, chosen or rejected.
    """
    if not rows:
        raise DatasetError("no preference rows to score")
    grouped = PairRows()
    for i, row in enumerate(rows):
        if any(row.get(k) is None for k in ("prompt", "chosen", "rejected")):
            raise DatasetError(f"row {i}: prompt, chosen and rejected are required")
        p, chosen, rejected = _key(row["prompt"]), _key(row["chosen"]), _key(row["rejected"])
        grouped.prompts[p] = row["prompt"]
        mine = grouped.responses.setdefault(p, {})
        mine.setdefault(chosen, row["chosen"])
        mine.setdefault(rejected, row["rejected"])
        grouped.rejected.setdefault(p, set()).add(rejected)
        grouped.labelled.append((str(row.get("subset") or "all"), p, chosen, rejected))
    return grouped


def _summary(results: dict[str, list[float]], best: list[float]) -> dict[str, Any]:
    every = [x for xs in results.values() for x in xs]
    return {
        "overall": _accuracy(sum(every), len(every)) if every else None,
        "subsets": {name: _accuracy(sum(xs), len(xs)) for name, xs in sorted(results.items()) if xs},
        "best_of_n": _accuracy(sum(best), len(best)) if best else None,
    }


def _ordered(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def rm_accuracy(rows: Sequence[dict[str, Any]], score: Callable[[Any, Any], float]) -> dict[str, Any]:
    """Accuracy of a scorer on preference rows: overall, per `subset`, and best-of-N.

    Args:
        rows: Rows with `prompt`, `chosen`, `rejected` and optionally `subset`.
        score: The reward of (prompt, response).

    Returns:
        `overall` and `subsets` (name -> `Accuracy`), and `best_of_n` (an `Accuracy` over the prompts with more than
        two responses and one response never rejected: the top-scored response is that one), or None without any.

    Raises:
        DatasetError: No rows, or a row without prompt, chosen or rejected.
    """
    grouped = group_rows(rows)
    scores = {
        (p, r): float(score(grouped.prompts[p], response))
        for p, found in grouped.responses.items()
        for r, response in found.items()
    }
    results: dict[str, list[float]] = {}
    for subset, p, chosen, rejected in grouped.labelled:
        results.setdefault(subset, []).append(_ordered(scores[(p, chosen)], scores[(p, rejected)]))
    best = [
        1.0 if max(grouped.responses[p], key=lambda r: scores[(p, r)]) == winner else 0.0
        for p, winner in grouped.best_of_n().items()
    ]
    return _summary(results, best)


#: P(x better than y) for a (prompt key, x key, y key), None where the comparison failed.
Preferences = Mapping[tuple[str, str, str], float | None]


def comparisons_needed(grouped: PairRows) -> list[tuple[str, str, str]]:
    """The comparisons a pairwise scorer makes, one per unordered pair of responses: each row's (chosen,
    rejected), and every pair of responses of a best-of-N prompt (each once, oriented as first seen)."""
    needed: dict[tuple[str, frozenset[str]], tuple[str, str, str]] = {}
    for _, p, chosen, rejected in grouped.labelled:
        needed.setdefault((p, frozenset((chosen, rejected))), (p, chosen, rejected))
    for p in grouped.best_of_n():
        found = list(grouped.responses[p])
        for i, x in enumerate(found):
            for y in found[i + 1 :]:
                needed.setdefault((p, frozenset((x, y))), (p, x, y))
    return list(needed.values())


def _p_better(preferences: Preferences, p: str, x: str, y: str) -> float | None:
    if (p, x, y) in preferences:
        return preferences[(p, x, y)]
    q = preferences[(p, y, x)]
    return None if q is None else 1.0 - q


def judged_accuracy(grouped: PairRows, preferences: Preferences) -> dict[str, Any]:
    """Accuracy of a pairwise scorer: a row is correct when P(chosen better) > 0.5, half at exactly 0.5; a row
    whose comparison failed is left out of n and counted in `failures`. Best-of-N: each response of a prompt
    scores its summed P(beats each other response); the top must be the never-rejected one; a prompt with any
    failed comparison is left out and counted in `best_of_n_failures`; a tie at the top shares the credit.

    Args:
        grouped: The rows (`group_rows`).
        preferences: P(x better than y) for every comparison of `comparisons_needed` (either orientation), None
            for a failed one.

    Returns:
        `rm_accuracy`'s `overall`, `subsets` and `best_of_n` (`overall` is None when every comparison failed),
        with `failures` (rows) and `subset_failures` (subset -> rows), `best_of_n_failures` (prompts) and
        `position_consistency` left to the caller.
    """
    results: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    for subset, p, chosen, rejected in grouped.labelled:
        results.setdefault(subset, [])
        failures.setdefault(subset, 0)
        q = _p_better(preferences, p, chosen, rejected)
        if q is None:
            failures[subset] += 1  # a failed judgment is counted apart, never a tie
        else:
            results[subset].append(_ordered(q, 0.5))
    best, best_failed = [], 0
    for p, winner in grouped.best_of_n().items():
        found = list(grouped.responses[p])
        pairs = {(x, y): _p_better(preferences, p, x, y) for x in found for y in found if x != y}
        if any(q is None for q in pairs.values()):
            best_failed += 1
            continue
        total = {x: sum(q for (a, _), q in pairs.items() if a == x and q is not None) for x in found}
        top = [x for x in found if total[x] == max(total.values())]
        best.append(1.0 / len(top) if winner in top else 0.0)  # a tie at the top shares the credit
    summary = _summary(results, best)
    summary["subsets"] = {name: {**acc, "failures": failures[name]} for name, acc in summary["subsets"].items()}
    for name in sorted(set(failures) - set(summary["subsets"])):
        summary["subsets"][name] = {"n": 0, "correct": 0.0, "accuracy": None, "ci95": None, "failures": failures[name]}
    summary["subsets"] = dict(sorted(summary["subsets"].items()))
    summary["failures"] = sum(failures.values())
    summary["best_of_n_failures"] = best_failed
    return summary


def score_reward_model(model: str, rows: Sequence[dict[str, Any]], max_length: int = 512) -> dict[str, Any]:
    """`rm_accuracy` of a reward model folder (or Hub id) on preference rows.

    Raises:
        TrainingError: `model` is not a sequence-classification reward model.
        DatasetError: No rows, or a row lacks prompt, chosen or rejected.
    """
    from charter.reward_model.scorer import RewardScorer
    from charter.training import data

    scorer = RewardScorer.load(model, max_length=max_length)

    def conversation(prompt: Any, response: Any) -> list[dict[str, str]]:
        return [*data.message_dicts(prompt, "user", "prompt"), *data.message_dicts(response, "assistant", "response")]

    def score(prompt: Any, response: Any) -> float:
        [value] = scorer.score([conversation(prompt, response)])
        return value

    return rm_accuracy(rows, score)
