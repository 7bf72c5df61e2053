"""Prompt synthesis: the dedup and filters catch what they should, quotas are met, the output is a run's prompts."""

from __future__ import annotations

import hashlib
import json
import random
import re

import numpy as np
import pytest

from charter.cli import main
from charter.constitutions import load_constitution
from charter.prompts import PromptsConfig, load_prompts
from charter.providers.scripted import ScriptedModel, register_script
from charter.runs.items import stored_prompts
from charter.runs.stages import stage_states
from charter.runs.usage import stored_usage
from charter.synth.api import synthesize
from charter.synth.config import SynthConfig, SynthFilters
from charter.synth.dedup import COSINE, EXACT, ROUGE, Deduper, normalise
from charter.synth.generate import buckets, clean, quotas

WORDS = (
    "river mountain garden kitchen engine violin planet market ladder window harbor forest camera bridge "
    "lantern pocket island rocket teacup blanket castle desert jacket marble needle orchard pepper quartz "
    "saddle tunnel velvet walnut yogurt zipper anchor basket cactus dragon falcon glacier hammer igloo"
).split()


def bag_embed(texts):
    """A cheap stand-in for MiniLM: hashed bag of words, normalised."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in normalise(text).split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def test_dedup_exact_rouge_and_cosine_in_blocks() -> None:
    d = Deduper(rouge_threshold=0.7, cosine_threshold=0.95, neighbours=5, embed=bag_embed)
    d.seed(["How do I bake bread at home?"])
    verdicts = d.check(
        [
            "how do I bake bread at home",  # normalised duplicate of the seed
            "How can I bake bread at home quickly?",  # ROUGE-L >= 0.7 with the seed
            "Explain the rules of chess to a beginner.",  # new
            "Explain the rules of chess to a beginner",  # duplicate within the block
            "beginner a to chess of rules the Explain please",  # same words, another order: embedding, not ROUGE
            "What is the capital of Mongolia?",  # new
        ],
        block=4,
    )
    assert verdicts == [EXACT, ROUGE, None, EXACT, COSINE, None]
    assert len(d.texts) == 3


def test_block_size_does_not_change_the_decisions() -> None:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS[:12]) for _ in range(6)) for _ in range(300)]
    results = []
    for block in (7, 64, 1000):
        d = Deduper(rouge_threshold=0.7, cosine_threshold=0.9, neighbours=300, embed=bag_embed)
        results.append(d.check(texts, block=block))
    assert results[0] == results[1] == results[2]
    assert 0 < results[0].count(None) < len(texts)


def test_clean_strips_labels_and_quotes() -> None:
    assert clean('1. "How do I fix a bike chain?"') == "How do I fix a bike chain?"
    assert clean("Request: Write a poem about rain.") == "Write a poem about rain."
    assert clean("  - plain text  ") == "plain text"


def _writer(messages, params) -> str:
    rng = random.Random(params.seed)
    roll = rng.random()
    if roll < 0.1:
        return "I'm sorry, I can't write that."
    if roll < 0.2:
        return "Reply with the request only, without numbering or quotes."
    if roll < 0.3:
        return "How do I bake bread at home?"  # the same prompt again and again
    words = " ".join(rng.choice(WORDS) for _ in range(8))
    topic = re.search(r"principle: \"([^\"]{0,30})", messages[-1].content)
    return f"Request: How would you use a {words}{' near ' + topic.group(1).split()[0] if topic else ''}?"


register_script("prompt-writer", _writer)


@pytest.fixture
def seeds():
    return load_prompts(PromptsConfig(bundled=True)).rows


def test_quotas_follow_the_mix(seeds) -> None:
    constitution = load_constitution("harmless")
    config = SynthConfig(n=30)
    found = buckets(config, seeds, constitution)
    q = quotas(config, found)
    assert sum(q.values()) == 30
    red = sum(v for k, v in q.items() if k.startswith("red-team:"))
    assert red == 15  # each method half, evenly over its buckets
    mixed = quotas(SynthConfig(n=10, mix={"weapons": 4, "helpful-coding": 1}), found)
    assert mixed["weapons"] == 8 and mixed["helpful-coding"] == 2 and sum(mixed.values()) == 10


def test_synthesis_fills_quotas_and_counts_every_drop(seeds, tmp_path) -> None:
    config = SynthConfig(
        writer={"model": "scripted:prompt-writer"},
        n=24,
        batch=8,
        filters=SynthFilters(cosine=0.98),
        mix={"weapons": 1, "helpful-coding": 1, "red-team:self-harm": 1},
    )
    writer = ScriptedModel("prompt-writer")
    result = synthesize(config, tmp_path / "p.jsonl", writer=writer)
    assert result.achieved == {"helpful-coding": 8, "weapons": 8, "red-team:self-harm": 8}
    assert result.calls == writer.calls
    assert sum(result.waterfall.values()) + 24 == result.candidates
    assert {"refused", "copies the instruction", "duplicate"} <= set(result.waterfall)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    synthetic = [r for r in rows if r["synthetic"]]
    assert len(synthetic) == 24 and len(rows) == 24 + len(seeds)
    first = synthetic[0]
    assert first["synth_model"] == "scripted:prompt-writer" and first["synth_seed_ids"]
    assert {r["synth_principle"] for r in synthetic if r["synth_method"] == "red_team"} == {"self-harm"}
    report = (tmp_path / "p.synth.md").read_text()
    assert "| weapons | 8 | 33.3% | 8 | 33.3% |" in report and "| refused |" in report
    # the file is a prompt set as it is
    again = load_prompts(PromptsConfig(path=str(tmp_path / "p.jsonl"))).rows
    assert len(again) == len(rows) and again[-1].category == synthetic[-1]["category"]
    # seeded: the same config writes the same prompts
    twice = synthesize(config, tmp_path / "q.jsonl", writer=ScriptedModel("prompt-writer"))
    assert [r["prompt"] for r in twice.rows] == [r["prompt"] for r in result.rows]


def test_a_bucket_that_cannot_be_filled_is_reported(seeds, tmp_path) -> None:
    register_script("one-prompt", lambda m, p: "How do I bake bread at home?")
    config = SynthConfig(
        writer={"model": "scripted:one-prompt"},
        n=4,
        mix={"weapons": 1},
        batch=4,
        max_calls_per_prompt=2,
        filters=SynthFilters(cosine=None),
    )
    result = synthesize(config, tmp_path / "p.jsonl", writer=ScriptedModel("one-prompt"))
    assert result.achieved == {"weapons": 1} and result.calls == 8
    assert result.notes == ["weapons: 1 of 4 after 8 calls"]


def test_charter_synth_command_with_minilm(tmp_path, capsys) -> None:
    config = tmp_path / "synth.yaml"
    config.write_text(
        "writer: scripted:prompt-writer\nn: 6\nmix: {weapons: 1, helpful-coding: 1}\nseeds: {bundled: true}\n"
    )
    code = main(["synth", str(config), "-o", str(tmp_path / "out.jsonl"), "--cache", ""])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "kept 6 of 6 prompts" in out.err + out.out
    assert (tmp_path / "out.synth.json").exists()


def test_a_run_with_a_synth_stage(make_config, tmp_path) -> None:
    from charter.pipeline.config import load_run_config
    from charter.pipeline.launch import run
    from charter.runs.store import open_store

    synth = {
        "writer": "scripted:prompt-writer",
        "n": 4,
        "mix": {"red-team:self-harm": 1},
        "batch": 4,
        "filters": {"cosine": None},
    }
    path = make_config(stages=["synth", "critique", "judge"], synth=synth)
    result = run(load_run_config(path))
    with open_store(result.run_dir) as store:
        prompts = stored_prompts(store)
        stages = stage_states(store)
        roles = {u.role for u in stored_usage(store)}
    assert len(prompts) == 6 + 4  # the six inline seeds and four new prompts
    assert sum(p.category == "red-team:self-harm" for p in prompts) == 4
    assert stages["synth"]["status"] == "done" and stages["synth"]["counts"]["kept"] == 4
    assert "synth" in roles
    assert (result.run_dir / "synth" / "prompts.synth.md").exists()
    assert result.counts["chains"] == 10
    again = run(load_run_config(path))  # unchanged: the file is reused, nothing is written again
    with open_store(again.run_dir) as store:
        assert "unchanged" in stage_states(store)["synth"]["counts"]["reason"]
