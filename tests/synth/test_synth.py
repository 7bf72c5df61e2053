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
from charter.errors import QuotaShortfall
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
    with pytest.raises(QuotaShortfall, match=r"kept 1 of 4 prompts.*weapons: 1 of 4 after 8 calls"):
        synthesize(config, tmp_path / "p.jsonl", writer=ScriptedModel("one-prompt"))
    assert "Short of the target: weapons: 1 of 4 after 8 calls" in (tmp_path / "p.synth.md").read_text()
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 1 + len(seeds)  # written all the same
    allowed = config.model_copy(update={"min_kept": 0.25})  # a quarter of n is enough
    result = synthesize(allowed, tmp_path / "q.jsonl", writer=ScriptedModel("one-prompt"))
    assert result.achieved == {"weapons": 1} and result.calls == 8
    assert result.notes == ["weapons: 1 of 4 after 8 calls"]


def test_charter_synth_short_of_its_quotas_exits_3(tmp_path, capsys) -> None:
    register_script("one-prompt", lambda m, p: "How do I bake bread at home?")
    config = tmp_path / "synth.yaml"
    config.write_text(
        "writer: scripted:one-prompt\nn: 4\nmix: {weapons: 1}\nmax_calls_per_prompt: 2\nseeds: {bundled: true}\n"
        "filters: {cosine: null}\n"
    )
    code = main(["synth", str(config), "-o", str(tmp_path / "out.jsonl"), "--cache", ""])
    out = capsys.readouterr()
    assert code == 3, out.err
    assert "kept 1 of 4 prompts" in out.err + out.out and "min_kept" in out.err
    assert (tmp_path / "out.synth.md").exists()


@pytest.mark.parametrize(("n", "each"), [(12, 6), (24, 12), (2, 1)])
def test_quotas_are_met_per_method_first(seeds, n: int, each: int) -> None:
    """Half Self-Instruct, half red team is half each at any n, though the buckets outnumber n."""
    constitution = load_constitution("harmless")
    config = SynthConfig(n=n)
    found = buckets(config, seeds, constitution)
    assert len(found) > n  # more buckets than prompts: rounding per bucket would starve a method
    q = quotas(config, found)
    per_method = {m: sum(q[b.name] for b in found if b.method == m) for m in ("self_instruct", "red_team")}
    assert per_method == {"self_instruct": each, "red_team": each}
    assert all(v in (0, 1) for v in q.values())  # within a method, as even as whole prompts allow
    # which buckets get one follows the seed, not the alphabet
    picked = {frozenset(k for k, v in quotas(SynthConfig(n=n, seed=seed), found).items() if v) for seed in range(4)}
    assert len(picked) > 1


def test_a_mix_is_met_per_method_then_per_bucket(seeds) -> None:
    constitution = load_constitution("harmless")
    found = buckets(SynthConfig(), seeds, constitution)
    mix = {"weapons": 1.0, "helpful-coding": 1.0, "red-team:self-harm": 1.0, "red-team:privacy": 1.0}
    q = quotas(SynthConfig(n=3, mix=mix), found)
    # methods 1.5 and 1.5: one gets 2, the other 1; the counts within a method follow
    assert sum(q.values()) == 3
    assert sorted([q["weapons"] + q["helpful-coding"], q["red-team:self-harm"] + q["red-team:privacy"]]) == [1, 2]


@pytest.mark.slow  # MiniLM itself, as `charter synth` embeds by default
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
    from charter.pipeline.launch import run_sync
    from charter.runs.store import open_store

    synth = {
        "writer": "scripted:prompt-writer",
        "n": 4,
        "mix": {"red-team:self-harm": 1},
        "batch": 4,
        "filters": {"cosine": None},
    }
    path = make_config(stages=["synth", "critique", "judge"], synth=synth)
    result = run_sync(load_run_config(path))
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
    again = run_sync(load_run_config(path))  # unchanged: the file is reused, nothing is written again
    with open_store(again.run_dir) as store:
        assert "unchanged" in stage_states(store)["synth"]["counts"]["reason"]


def _temperature_writer(messages, params):
    """Writes a new prompt whose words follow from the call's seed, and names the temperature it was asked at."""
    rng = random.Random(params.seed)
    return f"At {params.temperature:g}, how would you use a " + " ".join(rng.choice(WORDS) for _ in range(8)) + "?"


register_script("temperature-writer", _temperature_writer)


def test_a_temperature_schedule_spreads_each_buckets_calls(tmp_path) -> None:
    config = SynthConfig(
        writer={"model": "scripted:temperature-writer"},
        n=6,
        batch=6,
        mix={"weapons": 1},
        temperatures=[0.5, 1.5],
        filters=SynthFilters(cosine=None, rouge_l=None),
    )
    result = synthesize(config, tmp_path / "p.jsonl", writer=ScriptedModel("temperature-writer"))
    assert [r["synth_temperature"] for r in result.rows] == [0.5, 1.5] * 3
    assert all(r["prompt"].startswith(f"At {r['synth_temperature']:g},") for r in result.rows)  # the writer saw it
    assert result.temperatures == {"0.5": {"written": 3, "kept": 3}, "1.5": {"written": 3, "kept": 3}}
    report = (tmp_path / "p.synth.md").read_text()
    assert "## Temperature schedule" in report and "| 1.5 | 3 | 3 | 100.0% |" in report
    assert "## Diversity of the kept prompts" in report and "Vendi score" in report
    figures = json.loads((tmp_path / "p.synth.json").read_text())["diversity"]
    assert figures["texts"] == 6 and figures["vendi"]["value"] > 1


def test_a_round_schedule_gets_hotter_as_the_filters_drop(tmp_path) -> None:
    """By round: the first round's calls at the first temperature; a bucket short after it (here: every prompt
    but one is a duplicate) calls again at the next."""
    register_script("same-then-new", lambda m, p: "How do I bake bread?" if p.temperature < 1 else f"New {p.seed}?")
    config = SynthConfig(
        writer={"model": "scripted:same-then-new"},
        n=3,
        batch=3,
        mix={"weapons": 1},
        temperatures=[0.5, 1.2],
        temperature_by="round",
        filters=SynthFilters(cosine=None, rouge_l=None, min_chars=4),
    )
    result = synthesize(config, tmp_path / "p.jsonl", writer=ScriptedModel("same-then-new"))
    assert [r["synth_temperature"] for r in result.rows] == [0.5, 1.2, 1.2]
    assert result.waterfall["duplicate"] == 2 and result.temperatures["0.5"] == {"written": 3, "kept": 1}
    assert result.temperatures["1.2"]["kept"] == 2


def test_near_duplicates_of_accepted_prompts_are_rejected_by_the_named_embedder(monkeypatch, tmp_path) -> None:
    from charter.providers.embeddings import EMBEDDERS
    from tests.support.embeddings import hashed_embed

    seen: list[int] = []

    def counting(texts):
        seen.append(len(texts))
        return hashed_embed(texts)

    monkeypatch.setitem(EMBEDDERS, "counting", counting)
    # the same words each call, in a new order: no exact duplicate, no ROUGE-L (off), one direction in embedding space
    register_script("shuffled", lambda m, p: " ".join(random.Random(p.seed).sample(WORDS[:10], 10)) + "?")
    config = SynthConfig(
        writer={"model": "scripted:shuffled"},
        n=3,
        batch=3,
        mix={"weapons": 1},
        max_calls_per_prompt=2,
        min_kept=1 / 3,
        filters=SynthFilters(rouge_l=None, cosine=0.95, embedding_model="counting"),
    )
    result = synthesize(config, tmp_path / "p.jsonl", writer=ScriptedModel("shuffled"))
    assert result.achieved == {"weapons": 1} and result.waterfall[COSINE] == result.candidates - 1
    assert seen  # the filter embedded with the model it names


def test_quotas_per_source_through_the_category_column(tmp_path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"prompt": f"Seed question {i} about {w}?", "source": "forum" if i % 2 else "survey"}) + "\n"
            for i, w in enumerate(WORDS[:8])
        )
    )
    config = SynthConfig(
        writer={"model": "scripted:prompt-writer"},
        seeds=PromptsConfig(path=str(seeds), category_column="source"),
        methods=["self_instruct"],
        n=6,
        mix={"forum": 2, "survey": 1},
    )
    result = synthesize(config, tmp_path / "p.jsonl", writer=ScriptedModel("prompt-writer"))
    assert result.targets == {"forum": 4, "survey": 2} and result.achieved == result.targets


def test_new_settings_at_their_defaults_leave_the_fingerprint_as_it_was(seeds) -> None:
    """A prompt set written before the temperature schedule and the embedder setting stays current."""
    from charter.records import fingerprint
    from charter.synth.generate import synth_fingerprint

    constitution = load_constitution("harmless")
    config = SynthConfig(seeds=PromptsConfig(bundled=True))
    before = config.model_dump(
        mode="json", exclude={"output", "concurrency", "temperatures", "temperature_by", "min_kept"}
    )
    del before["filters"]["embedding_model"], before["seeds"]["category_column"]
    expected = fingerprint(
        {
            "synth": before,
            "writer": "w",
            "constitution": constitution.hash,
            "seeds": sorted(p.prompt_id for p in seeds),
        }
    )
    assert synth_fingerprint(config, "w", constitution, seeds) == expected
    hotter = config.model_copy(update={"temperatures": [0.7, 1.3]})
    assert synth_fingerprint(hotter, "w", constitution, seeds) != expected


def test_a_bad_temperature_schedule_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "synth.yaml"
    path.write_text("writer: scripted:prompt-writer\nn: 4\ntemperatures: [0.7, 9]\n")
    assert main(["synth", str(path), "-o", str(tmp_path / "o.jsonl"), "--cache", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "synth.yaml:3" in err[0] and "temperatures" in err[0]


def test_a_run_whose_synth_stage_is_short_stops_with_exit_3(make_config, tmp_path) -> None:
    from charter.pipeline.config import load_run_config
    from charter.runs.store import open_store

    register_script("one-prompt", lambda m, p: "How do I bake bread at home?")
    synth = {"writer": "scripted:one-prompt", "n": 4, "mix": {"red-team:drugs": 1}, "max_calls_per_prompt": 2,
             "filters": {"cosine": None}}  # fmt: skip
    path = make_config(stages=["synth", "critique", "judge"], synth=synth)
    assert main(["run", str(path)]) == 3
    run_dir = load_run_config(path).run_dir()
    with open_store(run_dir) as store:
        assert stage_states(store)["synth"]["status"] == "stopped: too many failures"
    assert "red-team:drugs: 1 of 4 after 8 calls" in (run_dir / "synth" / "prompts.synth.md").read_text()
    # a quarter is enough: the same prompts, reused, and the run goes on
    assert main(["run", str(path), "--set", "synth.min_kept=0.25"]) == 0
