"""Reward-model evaluation, RewardBench style: accuracy on preference pairs per `subset`, with exact (Clopper-Pearson)
95% intervals, and best-of-N accuracy where a prompt has more than two responses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    if not rows:
        raise DatasetError("no preference rows to score")
    scores: dict[tuple[str, str], float] = {}
    results: dict[str, list[float]] = {}
    responses: dict[str, dict[str, Any]] = {}
    rejected_once: dict[str, set[str]] = {}
    prompts: dict[str, Any] = {}
    for i, row in enumerate(rows):
        if any(row.get(k) is None for k in ("prompt", "chosen", "rejected")):
            raise DatasetError(f"row {i}: prompt, chosen and rejected are required")
        p = _key(row["prompt"])
        prompts[p] = row["prompt"]
        pair = []
        for side in ("chosen", "rejected"):
            r = _key(row[side])
            responses.setdefault(p, {})[r] = row[side]
            if (p, r) not in scores:
                scores[(p, r)] = float(score(row["prompt"], row[side]))
            pair.append(scores[(p, r)])
        rejected_once.setdefault(p, set()).add(_key(row["rejected"]))
        results.setdefault(str(row.get("subset") or "all"), []).append(
            1.0 if pair[0] > pair[1] else 0.5 if pair[0] == pair[1] else 0.0
        )
    every = [x for xs in results.values() for x in xs]
    best = []
    for p, found in responses.items():
        winners = [r for r in found if r not in rejected_once[p]]
        if len(found) > 2 and len(winners) == 1:
            top = max(found, key=lambda r: scores[(p, r)])
            best.append(1.0 if top == winners[0] else 0.0)
    return {
        "overall": _accuracy(sum(every), len(every)),
        "subsets": {name: _accuracy(sum(xs), len(xs)) for name, xs in sorted(results.items())},
        "best_of_n": _accuracy(sum(best), len(best)) if best else None,
    }


def evaluate_reward_model(model: str, pairs: str, max_length: int = 512) -> dict[str, Any]:
    """A reward model folder (or Hub id) scored on a pairs file (JSONL/parquet, or a Hub dataset id).

    Raises:
        TrainingError: `model` is not a sequence-classification reward model.
        DatasetError: The pairs cannot be read, or a row lacks prompt, chosen or rejected.
    """
    from charter.reward_model.evaluate import RewardScorer
    from charter.training import data

    rows = data.read_rows(pairs)
    scorer = RewardScorer.load(model, max_length=max_length)

    def conversation(prompt: Any, response: Any) -> list[dict[str, str]]:
        return [*data.message_dicts(prompt, "user", "prompt"), *data.message_dicts(response, "assistant", "response")]

    def score(prompt: Any, response: Any) -> float:
        [value] = scorer.score([conversation(prompt, response)])
        return value

    return {"model": model, "pairs": pairs, **rm_accuracy(rows, score)}
