"""A sentence embedder that needs no model, for tests and benchmarks: each token hashed to one of `dim` signed
axes (feature hashing), the counts L2-normalised. Texts with the same words embed alike, texts with no word in
common nearly orthogonally; a text with no word gets an axis of its own. Deterministic on every machine."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from charter.stats.diversity import tokens

DIM = 256


def hashed_embed(texts: Sequence[str], model: str = "hashed", batch_size: int = 0, dim: int = DIM) -> np.ndarray:
    """One unit float32 row per text (`model` and `batch_size` are taken, as `charter.providers.embeddings.embed`
    takes them, and ignored)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        found = tokens(text)
        if not found:
            out[i, dim - 1] = 1.0
        for word in found:
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            out[i, h % (dim - 1)] += 1.0 if (h >> 63) else -1.0
    out[~out.any(axis=1), dim - 1] = 1.0  # no word, or words whose signs cancel
    return out / np.linalg.norm(out, axis=1, keepdims=True)
