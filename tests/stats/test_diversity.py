"""The diversity estimators against values known by hand: distinct-n, self-BLEU (against sacrebleu itself), the
Vendi score and mean cosine, the compression ratio, the lengths; the seeded sample that bounds their cost."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from charter.errors import DatasetError
from charter.stats.diversity import (
    DiversityConfig,
    Sampler,
    compression_ratio,
    distinct_n,
    length_spread,
    mean_cosine,
    measure_texts,
    self_bleu,
    self_bleu_leave_one_out,
    self_bleu_scores,
    token_kinds,
    tokens,
    vendi_score,
)
from tests.support.embeddings import hashed_embed

TEXTS = ["the cat sat on the mat", "the cat sat on the hat", "a dog ran far away"]


def test_distinct_n_counts_unique_ngrams_over_all_ngrams() -> None:
    # 17 words, 11 distinct; 14 bigrams, 10 distinct; 11 trigrams, 8 distinct
    assert distinct_n(TEXTS, 1) == pytest.approx(11 / 17)
    assert distinct_n(TEXTS, 2) == pytest.approx(10 / 14)
    assert distinct_n(TEXTS, 3) == pytest.approx(8 / 11)
    assert distinct_n(["same words"] * 4, 2) == pytest.approx(1 / 4)
    assert distinct_n([], 1) is None and distinct_n(["one"], 2) is None


def test_the_vendi_score_of_identical_texts_is_one_and_of_orthogonal_ones_n() -> None:
    assert vendi_score(hashed_embed(["the same text"] * 7)) == pytest.approx(1.0)
    assert vendi_score(np.eye(5)) == pytest.approx(5.0)
    assert vendi_score(np.eye(5)[[0, 0, 1, 1]]) == pytest.approx(2.0)  # two texts twice: two effective ones
    assert mean_cosine(np.eye(5)) == pytest.approx(0.0) and mean_cosine(np.ones((4, 3))) == pytest.approx(1.0)
    assert vendi_score(np.zeros((0, 3))) is None and mean_cosine(np.eye(3)[:1]) is None


@pytest.mark.parametrize("n", [6, 40])  # fewer texts than dimensions (K/n itself) and more (XᵀX/n)
def test_the_vendi_score_is_the_entropy_of_the_kernels_eigenvalues(n: int) -> None:
    x = np.random.default_rng(n).normal(size=(n, 12))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(unit @ unit.T / n)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    assert vendi_score(x) == pytest.approx(float(np.exp(-(eigenvalues * np.log(eigenvalues)).sum())))
    pairs = [unit[i] @ unit[j] for i in range(n) for j in range(n) if i != j]
    assert mean_cosine(x) == pytest.approx(float(np.mean(pairs)))


def test_a_zero_embedding_is_an_error_naming_its_text() -> None:
    with pytest.raises(DatasetError, match="text 1 is zero"):
        vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_the_compression_ratio_falls_as_texts_repeat() -> None:
    rng = random.Random(0)
    texts = [" ".join(f"w{rng.randrange(5000)}" for _ in range(12)) for _ in range(40)]
    ratios = [compression_ratio([texts[0]] * k + texts[k:]) for k in (0, 10, 20, 30, 40)]
    assert all(later < earlier for earlier, later in zip(ratios, ratios[1:])), ratios
    assert compression_ratio([]) is None and compression_ratio([""]) is None


def test_self_bleu_is_sacrebleus_sentence_bleu_against_all_the_others() -> None:
    rng = random.Random(3)
    vocab = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "a", "red", "ball", ".", ",", "It's", "猫", "😀"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 14))) for _ in range(50)]
    texts += ["the cat sat"] * 3 + ["  ", "", ". ,"]  # repeats (ties in the best count); texts without a token
    kept = [" ".join(tokens(t)) for t in texts if tokens(t)]
    bleu = BLEU(effective_order=True, tokenize="none")
    expected = [bleu.sentence_score(t, kept[:i] + kept[i + 1 :]).score / 100 for i, t in enumerate(kept)]
    assert self_bleu_scores(texts) == pytest.approx(expected, abs=1e-12)
    assert self_bleu_scores(["same words here", "same words here"]) == pytest.approx([1.0, 1.0])
    assert self_bleu_scores(["alpha beta gamma", "delta epsilon zeta"]) == pytest.approx([0.0, 0.0])
    assert self_bleu_scores(["one", " "]) is None


def test_identical_texts_have_a_self_bleu_of_exactly_one() -> None:
    for text in ("Tell me a dirty joke.", "How do I bake bread?", "我想学习如何烤面包。"):
        scores = self_bleu_scores([text] * 3)
        assert scores is not None and scores.max() == 1.0 and (scores == 1.0).all()
        assert measure_texts([text] * 6).self_bleu.value == 1.0


def test_leaving_one_text_out_is_self_bleu_computed_again_without_it() -> None:
    rng = random.Random(5)
    vocab = "the cat sat on a mat dog ran far red ball 猫 🙂".split()
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 9))) for _ in range(25)] + ["the cat"] * 2
    value, loo = self_bleu_leave_one_out(texts) or (None, None)
    assert value == pytest.approx(self_bleu(texts), abs=1e-12)
    direct = [self_bleu(texts[:j] + texts[j + 1 :]) for j in range(len(texts))]
    assert loo == pytest.approx(direct, abs=1e-12)


def test_self_bleus_interval_is_a_jackknife_shown_only_where_it_can_cover() -> None:
    rng = random.Random(1)
    texts = [" ".join(rng.choice("abcdefgh") for _ in range(8)) for _ in range(60)]
    figure = measure_texts(texts, embed=hashed_embed).self_bleu
    assert figure.ci95 is not None and figure.value is not None and figure.n == 60
    assert figure.ci95[0] < figure.value < figure.ci95[1]
    assert 0.0 <= figure.ci95[0] and figure.ci95[1] <= 1.0
    same = measure_texts(["a b c d"] * 5, embed=hashed_embed).self_bleu
    assert same.value == 1.0 and same.ci95 is None and "same without any one" in (same.note or "")
    for n in (2, 3, 4):  # below 5 texts no interval, and the note says why
        few = measure_texts(texts[:n], embed=hashed_embed).self_bleu
        assert few.value is not None and few.ci95 is None and "no interval" in (few.note or ""), n


def test_the_lengths_are_in_tokens() -> None:
    spread = length_spread(TEXTS)
    assert spread.unit == "tokens" and spread.n == 3
    assert spread.mean == pytest.approx(17 / 3) and spread.sd == pytest.approx(np.std([6, 6, 5]))
    assert (spread.q1, spread.median, spread.q3, spread.min, spread.max) == (5.5, 6, 6, 5, 6)


def test_text_in_any_script_is_tokens_of_words_characters_and_emoji() -> None:
    assert tokens("It's 3pm, OK?") == ["it's", "3pm", "ok"]
    assert tokens("我想学习如何烤面包。") == list("我想学习如何烤面包")
    assert tokens("パンの焼き方") == list("パンの焼き方")
    assert tokens("mixed 中文 text 😀🎉") == ["mixed", "中", "文", "text", "😀", "🎉"]
    assert tokens("👨‍👩‍👧 🇫🇷") == ["👨‍👩‍👧", "🇫🇷"]  # a joined family and a flag are one emoji each
    assert token_kinds(["mixed 中文 text 😀"]) == {"word": 2, "character": 2, "emoji": 1}


def test_chinese_and_emoji_texts_are_measured_not_called_one_word() -> None:
    near = ["我想学习如何烤面包。", "我想学习如何烤蛋糕。", "今天天气很好，我们去公园散步吧。"]
    figures = measure_texts(near)
    assert figures.length.mean == pytest.approx((9 + 9 + 14) / 3)
    assert figures.distinct_2.value is not None and figures.distinct_2.value < 1.0  # 我想, 想学, ... repeat
    assert self_bleu_scores(near[:2]) == pytest.approx([0.7260, 0.7260], abs=1e-4)  # near-duplicates, not 0
    assert figures.token_kinds == {"character": 32}
    emoji = measure_texts(["🙂🎉", "🙂🎉", "🔥🚀🌍"])
    assert emoji.length.mean == pytest.approx(7 / 3) and emoji.distinct_1.value == pytest.approx(5 / 7)
    assert emoji.self_bleu.value is not None and emoji.self_bleu.value > 0.5


def test_a_large_input_is_measured_on_the_fixed_samples() -> None:
    texts = [f"text number {i} says {i % 97} and {i % 89}" for i in range(30_000)]
    embedded: list[int] = []

    def counting(batch):
        embedded.append(len(batch))
        return hashed_embed(batch)

    config = DiversityConfig(sample=2_000, bleu_sample=300, embed_sample=250)
    field = measure_texts(texts, config, counting, seed=7)
    assert (field.texts, field.sample, field.length.n, field.distinct_2.n) == (30_000, 2_000, 2_000, 2_000)
    assert field.self_bleu.n == 300 and field.vendi.n == field.mean_cosine.n == 250 and embedded == [250]
    again = measure_texts(texts, config, counting, seed=7)
    assert again == field  # seeded: the same sample, the same figures


def test_the_sample_is_seeded_uniform_nested_and_of_distinct_texts_where_asked() -> None:
    stream = [f"t{i}" for i in range(1_000)]
    a, b = Sampler(50, seed=1).extend(stream), Sampler(50, seed=1).extend(stream)
    assert a.texts() == b.texts() and a.texts() != Sampler(50, seed=2).extend(stream).texts()
    assert set(a.texts(10)) <= set(a.texts()) and len(a.texts(10)) == 10
    assert a.texts() == sorted(a.texts(), key=lambda t: int(t[1:]))  # in stream order
    hits = np.zeros(1_000)
    for seed in range(200):
        hits[[int(t[1:]) for t in Sampler(50, seed).extend(stream).texts()]] += 1
    assert hits[:500].sum() == pytest.approx(hits[500:].sum(), rel=0.1)  # no end of the stream favoured
    repeated = Sampler(5, seed=0, distinct=True).extend(["x"] * 100 + ["y", "z"])
    assert sorted(repeated.texts()) == ["x", "y", "z"] and repeated.seen == 102
