"""Near-duplicate filtering that scales: exact and normalised duplicates, then ROUGE-L (`rouge-score`) and the
cosine similarity of MiniLM embeddings, against everything kept so far (the seeds first).

Candidates go through in blocks. Each block is embedded at once and searched against a faiss inner-product
index of the kept prompts (exact search, vectorised); within the block, a block x block similarity matrix
stands in for the index. ROUGE-L, which has no vector form, is computed against the `neighbours` most similar
kept prompts by embedding: a prompt that shares most of its words with another is also close to it in
embedding space, so the nearest ones are the ones worth the exact check. Decisions are the same as a
sequential pass over the candidates in order, with that neighbourhood.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from charter.errors import missing_extra

EXACT, ROUGE, COSINE = "duplicate", "near-duplicate (ROUGE-L)", "near-duplicate (embedding)"
_PUNCT = re.compile(r"[^\w\s]")
#: similarities are compared at this many decimals: the index and the in-block matrix differ in the last bits
DIGITS = 5


def normalise(text: str) -> str:
    """Lower case, NFKC, punctuation removed, whitespace collapsed: the key of a 'normalised duplicate'."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub(" ", text).split())


def rouge_l(scorer: object, a: str, b: str) -> float:
    """ROUGE-L F1 of two texts."""
    return scorer.score(a, b)["rougeL"].fmeasure  # type: ignore[attr-defined]


def rouge_l_scorer() -> object:
    """A ROUGE-L scorer (the `synth` extra's rouge-score)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise missing_extra("rouge-score", "synth") from None
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


@dataclass
class Deduper:
    """Keeps a growing set of texts and says of each new one whether it duplicates one already kept."""

    rouge_threshold: float | None = 0.7
    cosine_threshold: float | None = 0.9
    neighbours: int = 10
    embed: Callable[[Sequence[str]], np.ndarray] | None = None
    texts: list[str] = field(default_factory=list)
    _keys: set[str] = field(default_factory=set)
    _index: object = None
    _scorer: object = None

    def __post_init__(self) -> None:
        if self.embed is None and (self.cosine_threshold is not None or self.rouge_threshold is not None):
            from charter.providers.embeddings import embed

            self.embed = embed
        if self.rouge_threshold is not None:
            self._scorer = rouge_l_scorer()

    def _vectors(self, texts: Sequence[str]) -> np.ndarray | None:
        return None if self.embed is None else np.ascontiguousarray(self.embed(texts), dtype=np.float32)

    def _add(self, texts: list[str], vectors: np.ndarray | None) -> None:
        self.texts += texts
        self._keys.update(normalise(t) for t in texts)
        if vectors is None or not len(texts):
            return
        if self._index is None:
            try:
                import faiss
            except ImportError:
                raise missing_extra("faiss-cpu", "synth") from None
            self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)  # type: ignore[attr-defined]

    def seed(self, texts: Sequence[str], block: int = 1024) -> None:
        """Add texts as kept without checking them (the seed prompts)."""
        texts = list(texts)
        for start in range(0, len(texts), block):
            chunk = texts[start : start + block]
            self._add(chunk, self._vectors(chunk))

    def check(self, candidates: Sequence[str], block: int = 1024) -> list[str | None]:
        """For each candidate in order: None (kept, and added) or why it was dropped."""
        out: list[str | None] = []
        for start in range(0, len(candidates), block):
            out += self._check_block(list(candidates[start : start + block]))
        return out

    def _check_block(self, block: list[str]) -> list[str | None]:
        keys = [normalise(t) for t in block]
        vectors = self._vectors(block)
        found_s = found_i = None
        if vectors is not None and self._index is not None and self._index.ntotal:  # type: ignore[attr-defined]
            k = min(self.neighbours, self._index.ntotal)  # type: ignore[attr-defined]
            found_s, found_i = self._index.search(vectors, k)  # type: ignore[attr-defined]
        within = vectors @ vectors.T if vectors is not None else None
        reasons: list[str | None] = []
        kept: list[int] = []
        block_keys: set[str] = set()
        for i, text in enumerate(block):
            if keys[i] in self._keys or keys[i] in block_keys:
                reasons.append(EXACT)
                continue
            near: list[tuple[float, str]] = []
            if found_s is not None and found_i is not None:
                near += [(round(float(s), DIGITS), self.texts[j]) for s, j in zip(found_s[i], found_i[i]) if j >= 0]
            if within is not None and kept:
                near += [(round(float(within[i, j]), DIGITS), block[j]) for j in kept]
            near.sort(key=lambda item: -item[0])
            near = near[: self.neighbours]
            reason = None
            if self.rouge_threshold is not None and any(
                rouge_l(self._scorer, other, text) >= self.rouge_threshold for _, other in near
            ):
                reason = ROUGE
            elif self.cosine_threshold is not None and near and near[0][0] >= self.cosine_threshold:
                reason = COSINE
            reasons.append(reason)
            if reason is None:
                kept.append(i)
                block_keys.add(keys[i])
        self._add([block[i] for i in kept], vectors[kept] if vectors is not None else None)
        return reasons
