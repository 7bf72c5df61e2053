"""A run measures its dataset's diversity once, when it writes the dataset, and stores it: `charter status --json`,
the report and the dataset card show the stored figures (they never measure again), and say when the dataset was
rebuilt since; `charter.diversity` measures any rows, file or run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import DatasetCard

import charter
from charter.cli import main
from charter.errors import ArgumentError, DatasetError
from charter.preference import dataset
from charter.preference.config import FiltersConfig
from charter.preference.diversity import diversity_markdown
from charter.preference.manifest import dataset_manifest
from charter.providers.embeddings import EMBEDDERS
from charter.runs.store import RunStore
from tests.support.embeddings import hashed_embed


def _never(texts):
    raise AssertionError("measured again: the stored figures should have been read")


def test_a_run_stores_its_figures_and_status_report_and_card_read_them(
    make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(report=True)
    assert main(["run", str(config)]) == 0
    run = tmp_path / "run"
    stored = charter.status(run)["diversity"]
    assert stored is not None and stored["current"] is True
    assert list(stored["fields"]) == ["prompt", "chosen", "rejected", "response"]
    fresh = charter.diversity(run).model_dump(mode="json")  # the run's seed and the default settings
    assert stored["fields"] == fresh["fields"] and stored["config"] == fresh["config"]
    chosen = stored["fields"]["chosen"]
    assert chosen["texts"] == 6 and chosen["distinct_2"]["n"] == 6 and chosen["vendi"]["value"] >= 1
    assert stored["fields"]["prompt"]["distinct_texts"] is True

    monkeypatch.setitem(EMBEDDERS, "minilm-l6", _never)  # from here on a measurement would fail
    assert main(["run", str(config)]) == 0  # the dataset is unchanged: its figures are not measured again
    figure = f"{chosen['distinct_2']['value']:.3f}"
    report = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Dataset diversity" in report and figure in report
    html = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert 'id="diversity"' in html and figure in html
    out = tmp_path / "export"
    assert main(["push", str(run), "--repo-id", "org/div", "--dry-run", str(out)]) == 0
    card = DatasetCard.load(out / "README.md").text
    assert "## Diversity" in card and figure in card and "Vendi score" in card

    with RunStore(run) as store:  # the dataset rebuilt with other filters: the figures describe the old files
        manifest = dataset_manifest(store)
        assert manifest is not None
        dataset.write(store, manifest.settings.model_copy(update={"filters": FiltersConfig(min_confidence=0.45)}))
    assert charter.status(run)["diversity"]["current"] is False


def test_status_of_a_run_without_figures_says_none(make_config, tmp_path: Path) -> None:
    assert main(["run", str(make_config())]) == 0
    run = tmp_path / "run"
    with RunStore(run) as store:
        store.execute("DELETE FROM meta WHERE key = 'diversity'")
    assert charter.status(run)["diversity"] is None


def test_the_api_measures_rows_texts_and_files(tmp_path: Path) -> None:
    rows = [
        {"prompt": [{"role": "user", "content": f"question {i}"}], "chosen": f"answer {i} yes", "rejected": "no"}
        for i in range(5)
    ]
    report = charter.diversity(rows, embedding_model=None)
    assert list(report.fields) == ["prompt", "chosen", "rejected"] and report.source == "rows"
    assert report.fields["rejected"].distinct_1.value == pytest.approx(1 / 5)
    assert (
        report.fields["chosen"].vendi.value is None and "embedding_model is null" in report.fields["chosen"].vendi.note
    )
    assert charter.diversity(["a b", "c d"], embedding_model=None).fields["text"].distinct_1.value == 1.0
    sft = tmp_path / "sft.jsonl"
    sft.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}\n',
        encoding="utf-8",
    )
    assert list(charter.diversity(sft, fields=["response"]).fields) == ["response"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "fine"}\n\n{"chosen": {"text": "x"}}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=f"^{bad}:3: chosen: expected text or a list of messages, got dict$"):
        charter.diversity(bad)
    with pytest.raises(DatasetError, match="no row has the field"):
        charter.diversity(sft, fields=["chosen"])
    with pytest.raises(ArgumentError, match="^fields: unknown field"):
        charter.diversity(rows, fields=["answer"])
    with pytest.raises(DatasetError, match=r"^rows: row 1: chosen: expected text or a list of messages, got int$"):
        charter.diversity([{"chosen": "fine"}, {"chosen": 3}])
    with pytest.raises(DatasetError, match=r"^rows: row 0: prompt: expected text or a list of \{role, content\}"):
        charter.diversity([{"prompt": [{"role": "user", "content": 7}]}])
    with pytest.raises(DatasetError, match="no such file"):
        charter.diversity(tmp_path / "missing.jsonl")
    with pytest.raises(ArgumentError, match="embed_sample"):
        charter.diversity(rows, embed_sample=0)


def test_a_run_embeds_each_distinct_text_once(make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[list[str]] = []

    def counting(texts):
        batches.append(list(texts))
        return hashed_embed(texts)

    monkeypatch.setitem(EMBEDDERS, "minilm-l6", counting)
    assert main(["run", str(make_config())]) == 0
    embedded = [t for batch in batches for t in batch]
    assert len(embedded) == len(set(embedded))  # a prompt's answer is its chosen and its response: embedded once
    found = charter.status(tmp_path / "run")["diversity"]
    assert found is not None
    stored = found["fields"]
    assert stored["chosen"]["vendi"]["n"] == 6 and stored["response"]["vendi"]["n"] == 6
    assert len(embedded) < sum(field["vendi"]["n"] for field in stored.values())
    assert stored == charter.diversity(tmp_path / "run").model_dump(mode="json")["fields"]


def test_a_reason_a_figure_is_missing_is_said_once() -> None:
    rows = [{"prompt": f"Question {i} about bread?", "chosen": f"Answer {i}.", "rejected": "No."} for i in range(6)]
    lines = diversity_markdown(charter.diversity(rows, embedding_model=None))
    missing = [line for line in lines if "no embedding model" in line]
    assert len(missing) == 1, lines
    assert "`prompt` vendi" in missing[0] and "`rejected` mean cosine" in missing[0]
