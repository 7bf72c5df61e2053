"""`charter push --dry-run`: the folder loads with `datasets`, the card parses and tells the story, rows carry
provenance, TRL's DPOTrainer accepts the loaded split, and `charter.load_preferences` reads it back."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard

from charter.cli import main
from charter.constitutions import load_constitution
from charter.errors import CharterError, GateFailed
from charter.hub.export import load_preferences
from charter.hub.push import publish

FILES = [
    "README.md",
    "constitution.yaml",
    "croissant.json",
    "data/human_labels/train-00000-of-00001.parquet",
    "data/preferences/test-00000-of-00001.parquet",
    "data/preferences/train-00000-of-00001.parquet",
    "data/sft/train-00000-of-00001.parquet",
    "run_config.yaml",
]


def test_dry_run_writes_exactly_the_upload_layout(exported: Path) -> None:
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert files == FILES


def test_folder_loads_with_datasets(exported: Path, tmp_path: Path) -> None:
    import datasets

    prefs = datasets.load_dataset(str(exported), "preferences", cache_dir=str(tmp_path))
    assert set(prefs) == {"train", "test"} and prefs["train"].num_rows + prefs["test"].num_rows == 12
    train_prompts = set(prefs["train"]["prompt_id"])
    assert train_prompts.isdisjoint(prefs["test"]["prompt_id"]), "the split is by prompt"
    row = prefs["train"][0]
    assert row["chosen"][0]["role"] == "assistant" and row["prompt"][0]["role"] == "user"
    sft = datasets.load_dataset(str(exported), "sft", cache_dir=str(tmp_path))
    labels = datasets.load_dataset(str(exported), "human_labels", cache_dir=str(tmp_path))
    assert sft["train"].num_rows == 6 and labels["train"].num_rows == 4
    assert labels["train"][0]["created_at"].startswith("2025-01-02T") and labels["train"][0]["response_a"]


def test_card_parses_and_tells_how_the_data_was_made(exported: Path) -> None:
    card = DatasetCard.load(exported / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other" and data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"] and "synthetic" in data["tags"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert set(configs) == {"preferences", "sft", "human_labels"}
    assert {"split": "test", "path": "data/preferences/test-00000-of-00001.parquet"} in configs["preferences"][
        "data_files"
    ]
    text = card.text
    for needle in [
        "tiny-hhh",
        "version 2",
        "`harmless`",
        "Which response is less harmful?",  # the constitution
        "| policy | `scripted:cai` | {temperature: 0.7, top_p: 1.0, max_tokens: 256} |",  # models, sampling
        "Mode: **logprobs**",
        "Orders: **both**",
        "Principles per pair: **1**",  # judge method
        "Position inconsistency: **25.0%** of the 12 pairs",  # 3 of 12 flip (fixture)
        "preferred the longer response in **66.7%**",  # 8 of 12 (fixture)
        "| judge vs human: Cohen's kappa (ties excluded) | 0 |",  # agreement (judge: always a)
        "none: `p_chosen_calibrated` is null on\nevery published row (0 of 12 calibrated)",
        "no agreement gate was configured",
        "min_confidence: 0.05",
        "| response pairs | 12 |",  # filters and counts
        "| preference rows written | 12 |",
        "| **total** | | | | 3300 | 324 | 0.0165 |",  # usage and cost
        "Known limitations",
        "arXiv:2212.08073",
        "arXiv:2309.00267",
        "@article{lee2023rlaif",
    ]:
        assert needle in text, needle


def test_rows_carry_provenance(exported: Path) -> None:
    rows = pq.read_table(exported / "data/preferences/train-00000-of-00001.parquet").to_pylist()
    from charter.constitutions import load_constitution

    expected_hash = load_constitution(exported / "constitution.yaml").hash
    for row in rows:
        assert row["synthetic"] is True and row["run_id"] == "run-test-0001"
        assert row["constitution_hash"] == expected_hash and row["judge_model"] == "scripted:cai"
        assert row["policy_model"] == "scripted:cai" and row["generator"].startswith("charter ")


def test_run_config_is_published_with_secrets_stripped(exported: Path) -> None:
    config = yaml.safe_load((exported / "run_config.yaml").read_text())
    assert config["provider"]["headers"]["Authorization"] == "[stripped]"
    assert config["models"]["policy"]["api_key_env"] == "OPENAI_API_KEY"  # the variable's name is not a secret


def test_rows_are_published_as_written_never_repaired(make_run, tmp_path: Path) -> None:
    run = make_run()
    rows = [json.loads(line) for line in (run / "data/preferences.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("constitution_hash")
    (run / "data/preferences.parquet").unlink()
    (run / "data/preferences.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CharterError, match=r"preferences.jsonl: row 0: constitution_hash: Field required"):
        publish(run, "org/x", dry_run=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_split_is_seeded(make_run, tmp_path: Path) -> None:
    run = make_run(n_pairs=40, human_labels=0)
    ids = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        publish(run, "org/x", dry_run=tmp_path / name, seed=seed, test_size=0.25)
        ids.append(
            pq.read_table(tmp_path / name / "data/preferences/test-00000-of-00001.parquet")
            .column("prompt_id")
            .to_pylist()
        )
    assert ids[0] == ids[1] and set(ids[0]) != set(ids[2]) and len(set(ids[0])) == 5
    assert not (tmp_path / "a/data/human_labels").exists()


def test_failing_gate_blocks_dry_run_unless_overridden(make_run, tmp_path: Path) -> None:
    run = make_run(human_labels=10, agreement={"min_kappa": 0.5, "bootstrap_samples": 100})
    with pytest.raises(GateFailed, match="kappa"):
        publish(run, "org/x", dry_run=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = publish(run, "org/x", dry_run=tmp_path / "out", override_gate=True)
    assert result.gate.overridden
    text = (tmp_path / "out/README.md").read_text()
    assert "**FAILED and overridden**" in text and "below the bar 0.5" in text


def test_dry_run_never_replaces_a_foreign_folder(make_run, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("keep me")
    with pytest.raises(CharterError, match="not empty"):
        publish(make_run(), "org/x", dry_run=tmp_path / "mine")
    assert (tmp_path / "mine/notes.txt").read_text() == "keep me"


def test_bad_inputs_are_one_line_errors(make_run, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["push", str(tmp_path / "nope"), "--repo-id", "org/x", "--dry-run", str(tmp_path / "o")]) == 2
    assert main(["push", str(make_run()), "--repo-id", "no-slash", "--dry-run", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such run directory" in err and "expected ORG/NAME" in err


def test_load_preferences_from_folder_and_run_dir(exported: Path, tmp_path: Path) -> None:
    from_folder = load_preferences(exported, cache_dir=tmp_path)
    from_run = load_preferences(exported.parent / "run")
    assert sorted(from_folder) == sorted(from_run) == ["test", "train"]
    assert from_folder["train"]["pair_id"] == from_run["train"]["pair_id"]
    assert {"synthetic", "constitution_hash", "run_id", "judge_model"} <= set(from_folder["train"].column_names)
    assert json.loads(from_folder["train"][0]["per_order"]).keys() == {"ab", "ba"}


def test_dpo_trainer_accepts_the_loaded_split(exported: Path, tmp_path: Path) -> None:
    from trl import DPOConfig, DPOTrainer

    from tests.support.tiny_models import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    train = load_preferences(exported, cache_dir=tmp_path)["train"]
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=2,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        max_length=128,
        use_cpu=True,
    )
    reference = copy.deepcopy(model)  # an in-memory model has no path TRL could load a reference from
    trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=train, processing_class=tokenizer)
    output = trainer.train()
    assert output.global_step == 1 and output.training_loss > 0


SPEC = """\
---
name: tiny-hhh
version: 2025-12-18
levels: [root, user]
---

# Overview {#overview}

Two rules.

## Avoid harm {#harmless authority=root}

Avoid helping with harm.

## Be honest {#honest authority=user}

Say only what is true.
"""


def test_the_card_names_the_spec_its_version_hash_and_skipped_sections(make_run, tmp_path: Path) -> None:
    spec = tmp_path / "hhh-spec.md"
    spec.write_text(SPEC, encoding="utf-8")
    imported = tmp_path / "hhh.yaml"
    assert main(["constitutions", "import", str(spec), "--from", "markdown", "-o", str(imported)]) == 0
    run = make_run(constitution_text=imported.read_text(encoding="utf-8"))
    publish(run, "org/x", dry_run=tmp_path / "out")
    text = " ".join(DatasetCard.load(tmp_path / "out" / "README.md").text.split())
    constitution = load_constitution(imported)
    digest = hashlib.sha256(spec.read_bytes()).hexdigest()
    assert f"sha256 `{constitution.hash}`" in text
    assert (
        f"Imported from the prose spec `hhh-spec.md`, version 2025-12-18 (the file's sha256 `{digest}`): of its 3 "
        "sections, 1 was skipped by the import, each reported with its reason." in text
    )
