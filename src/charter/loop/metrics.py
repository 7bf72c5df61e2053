"""The collapse monitor: how diverse a policy's answers to a fixed probe set are, round after round.

- distinct-1 / distinct-2: unique word uni-/bigrams over all words (Li et al. 2016), over the whole set;
- self-BLEU: each answer's BLEU (sacrebleu, effective order) against all the others, averaged: higher is
  more alike;
- embedding dispersion: mean pairwise cosine distance of MiniLM embeddings;
- mean length and length spread (standard deviation), in words;
- refusal rate: answers that open with a refusal;
- vocabulary size: distinct words.

Diversity falling round after round is the signature of model collapse (Shumailov et al. 2024). `flags`
compares each round with round 0: a diversity measure that falls by more than the allowed fraction (for
self-BLEU: that rises, i.e. 1 - self-BLEU falls) raises a flag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from charter.errors import missing_extra
from charter.messages import is_refusal

_WORD = re.compile(r"\w+(?:'\w+)?", re.U)

#: metric -> (label, True when a fall means less diversity, False when a rise does, None: not a diversity measure)
METRICS: dict[str, tuple[str, bool | None]] = {
    "distinct_1": ("distinct-1", True),
    "distinct_2": ("distinct-2", True),
    "self_bleu": ("self-BLEU", False),
    "dispersion": ("embedding dispersion", True),
    "mean_length": ("mean length (words)", None),
    "length_std": ("length spread (sd, words)", True),
    "refusal_rate": ("refusal rate", None),
    "vocabulary": ("vocabulary size", True),
}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique n-grams over all n-grams of the set; None without any n-gram."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def self_bleu(texts: Sequence[str]) -> float | None:
    """Mean sentence BLEU (0-1) of each text against all the others (sacrebleu); None with fewer than 2 texts."""
    try:
        from sacrebleu.metrics import BLEU  # pyright: ignore[reportPrivateImportUsage] - its public name
    except ImportError:
        raise missing_extra("sacrebleu", "loop") from None
    kept = [t for t in texts if t.strip()]
    if len(kept) < 2:
        return None
    bleu = BLEU(effective_order=True)
    scores = [bleu.sentence_score(t, kept[:i] + kept[i + 1 :]).score / 100 for i, t in enumerate(kept)]
    return float(np.mean(scores))


def dispersion(texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray] | None = None) -> float | None:
    """Mean pairwise cosine distance (1 - cosine) of the texts' embeddings; None with fewer than 2 texts."""
    if len(texts) < 2:
        return None
    if embed is None:
        from charter.providers.embeddings import embed
    vectors = np.asarray(embed(list(texts)), dtype=np.float64)
    sims = vectors @ vectors.T
    n = len(texts)
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def collapse_metrics(
    texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray] | None = None
) -> dict[str, float | None]:
    """Every monitor metric of one set of answers."""
    lengths = [len(words(t)) for t in texts]
    vocabulary = {w for t in texts for w in words(t)}
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "self_bleu": self_bleu(texts),
        "dispersion": dispersion(texts, embed),
        "mean_length": float(np.mean(lengths)) if lengths else None,
        "length_std": float(np.std(lengths)) if lengths else None,
        "refusal_rate": sum(map(is_refusal, texts)) / len(texts) if texts else None,
        "vocabulary": len(vocabulary),
    }


def relative_change(value: float | None, base: float | None) -> float | None:
    """(value - base) / |base|; None where either is missing or base is 0."""
    if value is None or base is None or base == 0 or not math.isfinite(base):
        return None
    return (value - base) / abs(base)


def flags(round_metrics: dict[str, float | None], base: dict[str, float | None], max_drop: float) -> list[str]:
    """The diversity measures that fell more than `max_drop` (a fraction) below round 0 (self-BLEU: whose
    complement did)."""
    raised = []
    for key, (label, falls) in METRICS.items():
        if falls is None:
            continue
        value, ref = round_metrics.get(key), base.get(key)
        if not falls:  # self-BLEU: measure the diversity 1 - BLEU
            value = None if value is None else 1 - value
            ref = None if ref is None else 1 - ref
        change = relative_change(value, ref)
        if change is not None and change < -max_drop:
            raised.append(f"{label} {change:+.0%} against round 0")
    return raised
