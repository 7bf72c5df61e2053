"""A diversity metric is one entry of the table in `charter.stats.diversity`: registered here, in the test alone, it
shows in `charter run`'s report, status and dataset card, in `charter synth`'s report and in the loop's collapse
monitor, with no other file edited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard

import charter
import tests.synth.test_synth  # noqa: F401  (registers the scripted prompt writer)
from charter.cli import main
from charter.loop.config import CollapseMonitorConfig
from charter.loop.data import data_diversity, field_figures
from charter.loop.metrics import collapse_flags, collapse_metrics, compare, flaggable
from charter.stats.diversity import METRICS, Texts, diversity_table, measure_texts, metric
from tests.loop.test_loop import unit_embed

NAME = "distinct_openings"
TITLE = "distinct openings (first tokens over texts)"


def distinct_openings(sample: Texts) -> float | None:
    """Distinct first tokens over the texts that have a token."""
    firsts = [found[0] for found in sample.tokens if found]
    return len(set(firsts)) / len(firsts) if firsts else None


@pytest.fixture
def openings() -> Iterator[None]:
    metric(NAME, label="distinct openings", title=TITLE, higher="diverse", empty="no token")(distinct_openings)
    try:
        yield
    finally:
        METRICS.pop(NAME)


def test_the_table_holds_every_builtin_metric_once_with_its_direction_and_cost() -> None:
    assert list(METRICS)[:7] == [
        "distinct_1",
        "distinct_2",
        "distinct_3",
        "self_bleu",
        "vendi",
        "mean_cosine",
        "compression_ratio",
    ]
    assert {name for name, e in METRICS.items() if e.higher == "alike"} == {"self_bleu", "mean_cosine"}
    assert {name for name, e in METRICS.items() if e.needs == "embeddings"} == {"vendi", "mean_cosine"}
    assert all(e.sample == "embed_sample" for e in METRICS.values() if e.needs == "embeddings")
    assert METRICS["mean_cosine"].oriented(0.25) == 0.75 and METRICS["vendi"].oriented(3.0) == 3.0
    with pytest.raises(ValueError, match="registered already"):
        metric("self_bleu", label="x", title="x", higher="alike")(distinct_openings)
    with pytest.raises(ValueError, match="no other field"):
        metric("length", label="x", title="x", higher="diverse")(distinct_openings)
    assert "length" not in METRICS


def test_a_registered_metric_is_measured_and_rendered(openings: None) -> None:
    texts = ["the cat sat", "the dog ran", "a bird flew", "one fish swam"]
    field = measure_texts(texts)
    assert field.figure(NAME).value == pytest.approx(3 / 4) and field.figure(NAME).n == 4
    assert field.model_dump(mode="json")["more"][NAME]["value"] == pytest.approx(0.75)
    row = next(line for line in diversity_table({"`text`": field}) if line.startswith(f"| {TITLE} |"))
    assert "0.750" in row
    # without a registered metric beyond the built-ins, the record's JSON is as it always was
    METRICS.pop(NAME)
    try:
        assert "more" not in measure_texts(texts).model_dump(mode="json")
    finally:
        metric(NAME, label="distinct openings", title=TITLE, higher="diverse")(distinct_openings)


def test_a_registered_metric_reaches_run_status_report_and_card(openings: None, make_config, tmp_path: Path) -> None:
    assert main(["run", str(make_config(report=True))]) == 0
    run = tmp_path / "run"
    stored = charter.status(run)["diversity"]["fields"]["chosen"]
    value = stored["more"][NAME]["value"]
    assert value is not None and stored["more"][NAME]["n"] == 6
    report = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert TITLE in report and f"{value:.3f}" in report
    out = tmp_path / "export"
    assert main(["push", str(run), "--repo-id", "org/div", "--dry-run", str(out)]) == 0
    assert TITLE in DatasetCard.load(out / "README.md").text


def test_a_registered_metric_reaches_synths_report(openings: None, tmp_path: Path) -> None:
    config = tmp_path / "synth.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "writer": "scripted:prompt-writer",
                "n": 4,
                "mix": {"weapons": 1, "helpful-coding": 1},
                "seeds": {"bundled": True},
                "filters": {"cosine": None},
            }
        )
    )
    assert main(["synth", str(config), "-o", str(tmp_path / "out.jsonl"), "--cache", ""]) == 0
    found = json.loads((tmp_path / "out.synth.json").read_text(encoding="utf-8"))["diversity"]
    assert found["more"][NAME]["value"] is not None
    assert TITLE in (tmp_path / "out.synth.md").read_text(encoding="utf-8")


def test_a_registered_metric_reaches_the_loops_monitor_and_data(openings: None) -> None:
    texts = ["the cat sat on the mat", "the cat sat on the hat", "a dog ran far away"]
    assert NAME in flaggable() and CollapseMonitorConfig(metrics=[NAME]).metrics == [NAME]
    assert collapse_metrics(texts, embed=unit_embed)[NAME] == pytest.approx(2 / 3)
    narrowed = ["the cat sat", "the cat ran", "the cat hid"]
    compared = compare(narrowed, texts, paired=True, embed=unit_embed)
    assert compared[NAME]["value"] == pytest.approx(1 / 3) and compared[NAME]["reference"] == pytest.approx(2 / 3)
    assert compared[NAME]["change"] == pytest.approx(-0.5)
    assert any(f.startswith("distinct openings -50%") for f in collapse_flags(compared, 0.25, "point", [NAME], "x"))
    rows = [{"prompt": f"{w} question {i}?", "chosen": f"answer {i}", "rejected": "no"} for i, w in enumerate("abcab")]
    stored = data_diversity(rows, seed=0)
    assert stored["prompt"][NAME] == pytest.approx(3 / 5)
    assert field_figures(stored["prompt"]).figure(NAME).value == pytest.approx(3 / 5)
