"""The collapse monitor: how diverse a policy's answers to a fixed probe set are, round after round.

Every diversity figure of `charter.stats.diversity` on the answers (distinct-1/2/3, self-BLEU with its interval,
the Vendi score and mean pairwise cosine of MiniLM embeddings, with the dispersion 1 - mean cosine, the compression
ratio, the length spread in words), and besides them the refusal rate (answers that open with a refusal) and the
vocabulary size (distinct words).

Diversity falling round after round is the signature of model collapse (Shumailov et al. 2024). `flags`
compares each round with round 0: a diversity measure that falls by more than the allowed fraction (for
self-BLEU: that rises, i.e. 1 - self-BLEU falls) raises a flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from charter.messages import is_refusal
from charter.stats.diversity import DiversityConfig, measure_texts, words

#: metric -> (label, True when a fall means less diversity, False when a rise does, None: not a diversity measure)
METRICS: dict[str, tuple[str, bool | None]] = {
    "distinct_1": ("distinct-1", True),
    "distinct_2": ("distinct-2", True),
    "distinct_3": ("distinct-3", True),
    "self_bleu": ("self-BLEU", False),
    "vendi": ("Vendi score", True),
    "dispersion": ("embedding dispersion", True),
    "compression_ratio": ("compression ratio", True),
    "mean_length": ("mean length (words)", None),
    "length_std": ("length spread (sd, words)", True),
    "refusal_rate": ("refusal rate", None),
    "vocabulary": ("vocabulary size", True),
}


def collapse_metrics(
    texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray] | None = None
) -> dict[str, Any]:
    """Every monitor metric of one set of answers (all of them: a probe set is small), with the self-BLEU interval
    (`self_bleu_ci95`) and what could not be measured (`notes`)."""
    if embed is None:
        from charter.providers.embeddings import embed
    texts = list(texts)
    config = DiversityConfig(sample=max(len(texts), 2), bleu_sample=max(len(texts), 2), embed_sample=max(len(texts), 2))
    figures = measure_texts(texts, config, embed)
    cosine = figures.mean_cosine.value
    named = {
        "distinct_1": figures.distinct_1,
        "distinct_2": figures.distinct_2,
        "distinct_3": figures.distinct_3,
        "self_bleu": figures.self_bleu,
        "vendi": figures.vendi,
        "mean_cosine": figures.mean_cosine,
        "compression_ratio": figures.compression_ratio,
    }
    length = figures.length
    return {
        **{key: figure.value for key, figure in named.items()},
        "self_bleu_ci95": figures.self_bleu.ci95,
        "dispersion": None if cosine is None else 1.0 - cosine,
        "mean_length": length.mean,
        "length_std": length.sd,
        "length_quartiles": None if length.q1 is None else [length.q1, length.median, length.q3],
        "refusal_rate": sum(map(is_refusal, texts)) / len(texts) if texts else None,
        "vocabulary": len({w for t in texts for w in words(t)}),
        "notes": [f"{key}: {figure.note}" for key, figure in named.items() if figure.note],
    }


def relative_change(value: float | None, base: float | None) -> float | None:
    """(value - base) / |base|; None where either is missing or base is 0."""
    if value is None or base is None or base == 0 or not math.isfinite(base):
        return None
    return (value - base) / abs(base)


def flags(round_metrics: dict[str, Any], base: dict[str, Any], max_drop: float) -> list[str]:
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
