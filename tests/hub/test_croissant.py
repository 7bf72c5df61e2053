"""croissant.json: the export described in Croissant 1.1 JSON-LD with the Responsible AI vocabulary and PROV-O.
mlcroissant loads it and reads the exported rows back through it (checking each file's sha256), and what it says
is the run's: the stages and models, the constitution, the row shares, the judge against people or that nothing
was measured, and the card's limitations."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlcroissant as mlc
import pyarrow.parquet as pq
import pytest

from charter.hub.card import agreement_rows, first_sentences, limitations, read_run
from charter.hub.export import build_folder
from charter.hub.push import check_gates, publish
from charter.records import LabelRow, PreferenceRow

TRAIN = "data/preferences/train-00000-of-00001.parquet"
EMBEDDED = "local:smollm2-135m-instruct@bfloat16"


def document(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "croissant.json").read_text(encoding="utf-8"))


def dataset(folder: Path) -> mlc.Dataset:
    return mlc.Dataset(jsonld=folder / "croissant.json")


def measured(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {value["name"]: value for value in doc["variableMeasured"]}


def test_mlcroissant_loads_it_with_no_error(exported: Path) -> None:
    issues = dataset(exported).metadata.ctx.issues
    assert not issues.errors
    # the only warning: no dataset version (schema.org `version`), which an export has none of to give
    assert [w for w in issues.warnings if "version" not in w] == []


def test_records_read_the_exported_rows(exported: Path) -> None:
    data = dataset(exported)
    rows = pq.read_table(exported / TRAIN).to_pylist()
    records = list(itertools.islice(data.records("preferences_train"), 3))
    assert len(records) == 3
    for record, row in zip(records, rows):
        fields = {key.removeprefix("preferences_train/"): value for key, value in record.items()}
        get = fields.__getitem__
        assert get("pair_id").decode() == row["pair_id"]
        assert get("constitution_hash").decode() == row["constitution_hash"]
        assert get("judge_model").decode() == row["judge_model"] and get("synthetic") is True
        assert get("p_chosen") == pytest.approx(row["p_chosen"])
        assert [p.decode() for p in get("principle_ids")] == row["principle_ids"]
        assert json.loads(get("per_order").decode()) == json.loads(row["per_order"])
        assert [m["preferences_train/prompt/content"].decode() for m in get("prompt")] == [
            m["content"] for m in row["prompt"]
        ]
    label = next(iter(data.records("human_labels_train")))
    assert label["human_labels_train/synthetic"] is False and label["human_labels_train/annotator"] == b"ann"
    assert next(iter(data.records("sft_train")))["sft_train/rounds"] == 1
    assert next(iter(data.records("preferences_test")))


def causes(error: BaseException | None) -> list[BaseException]:
    """An exception and the ones it was raised from."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def test_a_changed_file_fails_its_sha256(exported: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(exported, tmp_path / "copy"))
    table = pq.read_table(copy / TRAIN)
    pq.write_table(table.slice(1), copy / TRAIN)  # one row gone
    with pytest.raises(Exception) as caught:
        next(iter(dataset(copy).records("preferences_train")))
    assert any("Hash of downloaded file" in str(error) for error in causes(caught.value))


def test_every_file_is_listed_with_its_sha256(exported: Path) -> None:
    files = {f["contentUrl"]: f for f in document(exported)["distribution"]}
    on_disk = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert sorted(files) == [f for f in on_disk if f != "croissant.json"]
    for path, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((exported / path).read_bytes()).hexdigest()
    assert files[TRAIN]["encodingFormat"] == "application/x-parquet"


def test_fields_are_the_columns_with_their_types_and_docs(exported: Path) -> None:
    record_sets = {r["@id"]: r for r in document(exported)["recordSet"]}
    assert list(record_sets) == ["preferences_train", "preferences_test", "sft_train", "human_labels_train"]
    fields = {f["name"]: f for f in record_sets["preferences_train"]["field"]}
    assert list(fields) == pq.read_schema(exported / TRAIN).names
    types = {name: f.get("dataType") for name, f in fields.items()}
    assert types["p_chosen"] == types["margin"] == "sc:Float" and types["synthetic"] == "sc:Boolean"
    assert types["constitution_hash"] == types["settings_fingerprint"] == types["run_id"] == "sc:Text"
    assert types["per_order"] == types["per_principle"] == "sc:Text"  # JSON strings in the files
    assert fields["principle_ids"]["isArray"] is True and types["principle_ids"] == "sc:Text"
    assert [f["name"] for f in fields["prompt"]["subField"]] == ["role", "content"] and fields["prompt"]["isArray"]
    for name in ("constitution_hash", "policy_model", "critic_model", "judge_model", "judge_fingerprint"):
        assert fields[name]["description"] == PreferenceRow.model_fields[name].description
    labels = {f["name"]: f for f in record_sets["human_labels_train"]["field"]}
    assert labels["label"]["description"] == LabelRow.model_fields["label"].description
    assert record_sets["preferences_train"]["prov:wasGeneratedBy"] == {"@id": "activity/judge"}
    assert record_sets["human_labels_train"]["prov:wasGeneratedBy"] == {"@id": "activity/spot-checks"}


def roles_of(activity: dict[str, Any]) -> dict[str, str]:
    names = {agent["@id"]: agent["name"] for agent in activity["prov:wasAssociatedWith"]}
    return {
        a["prov:hadRole"]["prov:label"]: names[a["prov:agent"]["@id"]] for a in activity["prov:qualifiedAssociation"]
    }


def test_it_says_how_the_data_was_made_and_by_which_models(exported: Path) -> None:
    doc = document(exported)
    run = read_run(exported.parent / "run")
    info = run.manifest.settings.constitution
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["@context"]["rai"] == "http://mlcommons.org/croissant/RAI/"
    assert doc["@context"]["prov"] == "http://www.w3.org/ns/prov#"
    activities = {a["@id"].removeprefix("activity/"): a for a in doc["prov:wasGeneratedBy"]}
    assert list(activities) == ["critique", "judge", "dataset", "spot-checks"]
    assert roles_of(activities["critique"]) == {"policy": "scripted:cai", "critic": "scripted:cai"}
    assert roles_of(activities["judge"]) == {"judge": "scripted:cai"}
    assert roles_of(activities["spot-checks"]) == {"annotator": "ann"}
    assert activities["judge"]["prov:wasInformedBy"] == [{"@id": "activity/critique"}]
    assert "1 critique-revision round(s)" in activities["critique"]["description"]
    judge = activities["judge"]["description"]
    assert "mode logprobs" in judge and "both orders" in judge and "1 principle(s) per pair" in judge
    constitution = doc["prov:wasDerivedFrom"][0]
    assert constitution["@id"] == "constitution.yaml" and info.hash in constitution["prov:label"]
    assert info.name in doc["rai:dataCollection"] and info.hash in doc["rai:dataCollection"]
    metadata = dataset(exported).metadata  # mlcroissant reads the RAI vocabulary back
    assert metadata.data_collection_type == ["Synthetic data generation"]
    assert metadata.machine_annotation_tools == ["judge: scripted:cai"]
    assert metadata.data_limitations == first_sentences(run, run.preferences) + limitations(run, run.preferences)
    assert "4 of 12 published preference rows also have human labels" in (metadata.annotations_per_item or "")


def test_the_citation_and_the_constitution_file_name_the_constitutions_hash(exported: Path) -> None:
    import charter

    info = read_run(exported.parent / "run").manifest.settings.constitution
    doc = document(exported)
    assert f"sha256 {info.hash}" in doc["citeAs"] and info.name in doc["citeAs"]
    assert dataset(exported).metadata.cite_as == doc["citeAs"]  # what mlcroissant reads back
    [entry] = [e for e in doc["distribution"] if e.get("@id") == "constitution.yaml"]
    assert f"constitution_hash ({info.hash})" in entry["description"]
    # the hash named is the one the published file parses to, and the one every row carries
    assert charter.load_constitution(str(exported / "constitution.yaml")).hash == info.hash
    rows = pq.read_table(exported / TRAIN, columns=["constitution_hash"]).to_pylist()
    assert {row["constitution_hash"] for row in rows} == {info.hash}


def test_row_shares_and_agreement_are_the_runs(exported: Path) -> None:
    doc = document(exported)
    values = measured(doc)
    synthetic = values["synthetic share of the published rows"]
    assert synthetic["value"] == pytest.approx(18 / 22) and synthetic["description"].startswith("18 of 22 rows")
    assert values["human-label share of the published rows"]["value"] == pytest.approx(4 / 22)
    assert values["preference rows with a human label"]["value"] == pytest.approx(4 / 12)
    stored = read_run(exported.parent / "run").agreement
    assert stored is not None
    figure = stored.judge_vs_human.agreement
    assert figure.ci is not None
    agreement = values["judge vs human: agreement (ties excluded)"]
    assert [agreement["value"], agreement["minValue"], agreement["maxValue"]] == [figure.value, *figure.ci]
    assert agreement["description"].endswith(f"n = {figure.n}.")
    card = (exported / "README.md").read_text()
    row = agreement_rows(stored)[0]  # the card's own row: the same figure, not computed again
    assert f"| {row['figure']} | {row['value']} | {row['ci']} | {row['n']} |" in card
    assert doc["rai:dataAnnotationAnalysis"][0] == f"{row['figure']}: {row['value']}, 95% interval {row['ci']}, n = 4"
    assert "[`croissant.json`](croissant.json)" in card


def test_no_human_labels_says_not_measured(make_run, tmp_path: Path) -> None:
    result = publish(make_run(human_labels=0), "org/x", dry_run=tmp_path / "out")  # the Python API
    assert "croissant.json" in result.files
    doc = document(tmp_path / "out")
    agreement = measured(doc)["judge vs human: agreement (ties excluded)"]
    assert "value" not in agreement and agreement["description"].startswith("not measured")
    assert doc["rai:dataAnnotationAnalysis"][0].startswith("Judge agreement with people: not measured")
    assert "No human agreement was measured for this run." in doc["rai:dataLimitations"]
    assert measured(doc)["synthetic share of the published rows"]["value"] == 1.0
    assert "rai:annotatorDemographics" not in doc
    assert [a["@id"] for a in doc["prov:wasGeneratedBy"]][-1] == "activity/dataset"
    assert not dataset(tmp_path / "out").metadata.ctx.issues.errors


def test_the_embedded_judge_is_named_a_limitation(make_run, tmp_path: Path) -> None:
    scripted = read_run(make_run(human_labels=0))
    assert not any("embedded" in text for text in limitations(scripted, scripted.preferences))
    rows = [row.model_copy(update={"judge_model": EMBEDDED}) for row in scripted.preferences]
    run = replace(scripted, preferences=rows)
    build_folder(run, tmp_path / "out", "org/x", check_gates(run))
    doc = document(tmp_path / "out")
    (limit,) = [text for text in doc["rai:dataLimitations"] if "embedded 135M model" in text]
    assert EMBEDDED in limit and "at chance" in limit
    assert limit in (tmp_path / "out/README.md").read_text()
    assert doc["rai:machineAnnotationTools"] == [f"judge: {EMBEDDED}"]


def test_push_uploads_croissant_beside_the_files(make_run, fake_hub) -> None:
    publish(make_run(), "org/tiny")
    (commit,) = fake_hub.commits
    doc = json.loads(commit.files["croissant.json"])
    for entry in doc["distribution"]:
        assert entry["sha256"] == hashlib.sha256(commit.files[entry["contentUrl"]]).hexdigest()
    assert doc["url"].endswith("/datasets/org/tiny")
    assert pq.read_table(io.BytesIO(commit.files[TRAIN])).num_rows == 10
