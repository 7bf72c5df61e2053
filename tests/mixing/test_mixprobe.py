"""`charter.mix_probe` and `charter mix probe`: per source a small reward model (the real TRL trainer, on the
suite's tiny model) trained on a sample and scored per target subset; summaries `mix_plan` reads; a probe with
unchanged settings kept, a changed one run again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import charter
from charter.cli import main
from charter.errors import ArgumentError, DatasetError
from tests.support.tiny_models import preference_rows, tiny_llama, write_jsonl

FAST = {"max_steps": 2, "save_strategy": "no", "logging_steps": 1, "per_device_train_batch_size": 4}


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two sources (polite chosen, and the same pairs flipped), target pairs in two subsets, a tiny trainer."""
    base = tmp_path_factory.mktemp("probe")
    rows = preference_rows(12, seed=1)
    flipped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    targets = [{**r, "subset": "weather"} for r in preference_rows(4, seed=2, topics=["weather"])]
    targets += [{**r, "subset": "python"} for r in preference_rows(6, seed=3, topics=["python"])]
    model = tiny_llama(base / "llama")
    trainer = base / "reward.yaml"
    trainer.write_text(json.dumps({"model": str(model), "eval_fraction": 0.25, "trl": FAST}), encoding="utf-8")
    return {
        "polite": write_jsonl(base / "polite.jsonl", rows),
        "flipped": write_jsonl(base / "flipped.jsonl", flipped),
        "pairs": write_jsonl(base / "targets.jsonl", targets),
        "trainer": trainer,
        "model": model,
    }


def test_each_source_is_trained_scored_per_target_and_planned(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sources = {"polite": str(world["polite"]), "flipped": str(world["flipped"])}
    out = tmp_path / "probes"
    results = charter.mix_probe(sources, world["pairs"], out, trainer=world["trainer"], budget=8)
    assert [(n, r["rows"], r["ran"]) for n, r in results.items()] == [("polite", 8, True), ("flipped", 8, True)]
    for name in sources:
        summary = json.loads((out / f"{name}.json").read_text())
        assert {t: a["n"] for t, a in summary["subsets"].items()} == {"python": 6, "weather": 4}
        assert len((out / name / "train.jsonl").read_text().splitlines()) == 8
        again = charter.evaluate_rm(reward_model=str(out / name / "rm"), pairs=str(world["pairs"]))
        assert again["subsets"] == summary["subsets"]  # the summary is the trained model's own evaluation
    manifest = charter.mix_plan([r["summary"] for r in results.values()], top_n=1, sources=sources)
    assert [t.name for t in manifest.targets] == ["python", "weather"]
    assert {s.name for s in manifest.sources} | {s.name for s in manifest.left_out} == {"polite", "flipped"}

    kept = charter.mix_probe(sources, world["pairs"], out, trainer=world["trainer"], budget=8)
    assert [r["ran"] for r in kept.values()] == [False, False]
    rerun = charter.mix_probe({"polite": sources["polite"]}, world["pairs"], out, trainer=world["trainer"], budget=6)
    assert rerun["polite"]["ran"] and rerun["polite"]["rows"] == 6

    capsys.readouterr()  # the trainer's own log lines so far
    argv = ["mix", "probe", "--source", f"flipped={world['flipped']}", "--pairs", str(world["pairs"])]
    assert main([*argv, "--out", str(out), "--trainer", str(world["trainer"]), "--budget", "8"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("flipped: 8 rows; python ") and printed[0].endswith("(kept from an earlier probe)")
    assert printed[1] == f"plan with: charter mix plan {out / 'flipped.json'}"


def test_bad_probes_are_refused_before_any_training(world: dict[str, Path], tmp_path: Path, capsys) -> None:
    pairs, out = world["pairs"], tmp_path / "p"
    with pytest.raises(ArgumentError, match=r"^budget: must be at least 1"):
        charter.mix_probe({"a": str(world["polite"])}, pairs, out, budget=0)
    with pytest.raises(ArgumentError, match=r"^sources: 'a/b': a source name is letters"):
        charter.mix_probe({"a/b": str(world["polite"])}, pairs, out)
    with pytest.raises(ArgumentError, match=r"^sources: no source to probe"):
        charter.mix_probe({}, pairs, out)
    with pytest.raises(DatasetError, match=r"^sources\['a'\]: source 'a': gone.jsonl does not exist"):
        charter.mix_probe({"a": "gone.jsonl"}, pairs, out)
    assert not out.exists()
    assert main(["mix", "probe", "--source", "a", "--pairs", str(pairs), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "error: --source: expected NAME=VALUE (got 'a')"
    assert main(["mix", "probe", "--source", "a/b=x.jsonl", "--pairs", str(pairs), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --source: 'a/b': a source name is")
