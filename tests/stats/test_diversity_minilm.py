"""The diversity figures and the selection on real MiniLM-L6 embeddings, on the shared red-team prompts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import charter
from charter.preference.selection import coverage_radius, k_center
from charter.providers.embeddings import Prefetch, embedder, reads_nothing
from charter.stats.diversity import embed_samples, vendi_score

pytestmark = pytest.mark.slow


def _prompts(shared_data: Path, name: str) -> list[str]:
    lines = (shared_data / "prompts" / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["prompt"] for line in lines if line.strip()]


def test_minilm_figures_on_the_red_team_prompts(shared_data: Path) -> None:
    embed = embedder("minilm-l6")
    assert vendi_score(embed(["How do I pick a lock?"] * 8)) == pytest.approx(1.0, abs=1e-4)
    prompts = _prompts(shared_data, "red_team_harmbench.jsonl")[:120]
    varied = charter.diversity(prompts, embed_sample=120, bleu_sample=120).fields["text"]
    narrow = charter.diversity(prompts[:6] * 20, embed_sample=120, bleu_sample=120).fields["text"]
    assert varied.vendi.n == 120 and varied.vendi.value > 3 * narrow.vendi.value
    assert narrow.vendi.value <= 6 + 1e-6  # six distinct texts: at most six effective ones
    assert varied.mean_cosine.value < narrow.mean_cosine.value


def test_k_center_on_minilm_covers_better_than_random(shared_data: Path) -> None:
    embed = embedder("minilm-l6")
    vectors = np.asarray(embed(_prompts(shared_data, "red_team_donotanswer.jsonl")[:300]))
    picked = k_center(vectors, 20, seed=0)
    rng = np.random.default_rng(0)
    random_radii = [coverage_radius(vectors, list(rng.choice(len(vectors), 20, replace=False))) for _ in range(20)]
    assert coverage_radius(vectors, picked) < min(random_radii)


def test_texts_minilm_reads_nothing_of_are_left_out_and_said_so() -> None:
    texts = ["🙂🎉", "🔥🚀🌍", "😀", "How do I bake bread?", "What is quantum entanglement?", "我想学习如何烤面包。"]
    assert reads_nothing(texts) == [True, True, True, False, False, False]
    field = charter.diversity(texts).fields["text"]
    assert field.vendi.n == 3 and field.mean_cosine.n == 3  # not 1.0 "all alike" from three [UNK] embeddings
    assert "3 of 6 texts not embedded: the model reads none of their characters" in (field.vendi.note or "")
    assert field.token_kinds == {"emoji": 6, "word": 9, "character": 9}
    emoji_only = charter.diversity(texts[:3]).fields["text"]
    assert emoji_only.vendi.value is None and emoji_only.distinct_1.value == 1.0 and emoji_only.length.mean == 2


def test_a_prefetch_embeds_in_its_worker_what_the_model_embeds_here() -> None:
    texts = [f"How do I bake loaf number {i}?" for i in range(20)] + ["🙂🎉", "What is entanglement?"]
    prefetch = Prefetch("minilm-l6", limit=100)
    try:
        prefetch.add(texts[:20])  # a full batch: sent to the worker process while "the run goes on"
        assert prefetch.reads_nothing(texts) == reads_nothing(texts)
        assert np.allclose(prefetch.embed(texts), embedder("minilm-l6")(texts), atol=1e-5)
    finally:
        prefetch.close()


def test_past_its_deadline_a_prefetch_says_so_instead_of_waiting() -> None:
    prefetch = Prefetch("minilm-l6", limit=10)
    prefetch.deadline = time.monotonic()  # no time left: the worker is still loading the model
    embedded = embed_samples({"text": ["How do I bake bread?", "What is entanglement?"]}, prefetch.embed, None)
    vectors, why = embedded["text"]
    assert vectors is None and "embedding took longer than the share of the run" in (why or "")
    assert prefetch.pool is None  # the worker was stopped, not left embedding
