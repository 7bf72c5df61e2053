"""`charter.mix_from_plan` and `charter mix build`: rows from each source at the manifest's weights, seeded; the
folder with its card recording the manifest; sources that do not exist or cannot give their share."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

import charter
from charter.cli import main
from charter.errors import ArgumentError, ConfigError, DatasetError, SecretFound
from charter.mixing.build import draw_counts, mix_from_plan
from charter.mixing.plan import load_manifest, mix_plan

SCORES = {
    "code": {"code": 0.91, "math": 0.40, "write": 0.30},
    "math": {"code": 0.35, "math": 0.88, "write": 0.32},
    "write": {"code": 0.30, "math": 0.33, "write": 0.90},
    "general": {"code": 0.70, "math": 0.70, "write": 0.70},
}


def _rows(path: Path, name: str, n: int) -> Path:
    rows = [
        {"id": f"{name}-{i}", "prompt": f"{name} prompt {i}", "chosen": "good", "rejected": "bad"} for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    """code and write as JSON Lines of plain strings, math as a charter run directory (its preferences)."""
    from .conftest import build_run

    run = build_run(tmp_path / "math-run", n_pairs=12, human_labels=0)
    return {
        "code": str(_rows(tmp_path / "code.jsonl", "code", 30)),
        "math": str(run),
        "write": str(_rows(tmp_path / "write.jsonl", "write", 30)),
        "general": str(_rows(tmp_path / "general.jsonl", "general", 30)),
    }


@pytest.fixture
def plan(tmp_path: Path, sources: dict[str, str]) -> Path:
    """code 0.5, math 0.25, write 0.25 (micro, the top source per target, code's target counting twice)."""
    path = tmp_path / "mixture.yaml"
    mix_plan(SCORES, top_n=1, target_weights={"code": 2}, sources=sources, out=path)
    return path


def test_each_source_gives_its_share_of_rows(plan: Path) -> None:
    mixed = mix_from_plan(plan, size=40, seed=0)
    assert Counter(mixed["mix_source"]) == {"code": 20, "math": 10, "write": 10}
    assert set(mixed["mix_fingerprint"]) == {load_manifest(plan).fingerprint}
    code = mixed.filter(lambda r: r["mix_source"] == "code")
    assert len(set(code["id"])) == 20 and all(i.startswith("code-") for i in code["id"])  # drawn without replacement
    assert code[0]["prompt"] == [{"role": "user", "content": code[0]["prompt"][0]["content"]}]
    assert code[0]["chosen"] == [{"role": "assistant", "content": "good"}]
    math = mixed.filter(lambda r: r["mix_source"] == "math")
    assert set(math["run_id"]) == {"run-test-0001"} and all(math["synthetic"])  # the run's provenance is kept


def test_without_a_size_as_many_rows_as_the_smallest_share_allows(plan: Path) -> None:
    mixed = mix_from_plan(plan)
    # math (the run's train split: 10 of its 12 pairs) at 0.25 -> 40 rows in all; code gives 20 of its 30, write 10.
    assert Counter(mixed["mix_source"]) == {"code": 20, "math": 10, "write": 10}
    assert Counter(mix_from_plan(plan, split="test")["mix_source"]) == {"code": 4, "math": 2, "write": 2}


def test_the_draw_is_seeded_and_shuffled(plan: Path) -> None:
    first, again, other = (mix_from_plan(plan, size=20, seed=s) for s in (3, 3, 4))
    assert first["id"] == again["id"] and first["id"] != other["id"]
    assert first["mix_source"] != sorted(first["mix_source"], key=["code", "math", "write"].index)


def test_draw_counts() -> None:
    assert draw_counts({"a": 10, "b": 10, "c": 10}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10) == {
        "a": 4,
        "b": 3,
        "c": 3,
    }
    assert draw_counts({"a": 100, "b": 7}, {"a": 0.5, "b": 0.5}, None) == {"a": 7, "b": 7}
    with pytest.raises(DatasetError, match=r"^cannot build 40 rows: source 'b' needs 20 at weight 0.5 and has 7$"):
        draw_counts({"a": 100, "b": 7}, {"a": 0.5, "b": 0.5}, 40)
    with pytest.raises(DatasetError, match=r"^2 rows give source 'c' \(weight 0.2\) no row: ask for at least 5 rows$"):
        draw_counts({"a": 9, "b": 9, "c": 9}, {"a": 0.6, "b": 0.2, "c": 0.2}, 2)


def test_the_folder_and_its_card_record_the_manifest(plan: Path, tmp_path: Path) -> None:
    import datasets
    import pyarrow.parquet as pq

    out = tmp_path / "mixed"
    mix_from_plan(plan, size=40, seed=1, out=out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "README.md",
        "data/train-00000-of-00001.parquet",
        "mixture.yaml",
    ]
    manifest = load_manifest(plan)
    assert load_manifest(out / "mixture.yaml") == manifest
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"fingerprint `{manifest.fingerprint}`" in card and "strategy **micro**" in card
    assert "| `code` |" in card and "| 0.5000 | 20 | chosen for code: 0.91, rank 1 of 4 |" in card
    assert "| `math` |" in card and "| 0.2500 | 10 | chosen for math: 0.88, rank 1 of 4 |" in card
    assert "- `general`: best on code: 0.7, rank 2 of 4; the top 1 of each target are chosen" in card
    assert "--seed 1 --size 40" in card
    block = re.search(r"```yaml\n(.*?)```", card, re.S)
    assert block is not None and yaml.safe_load(block.group(1))["fingerprint"] == manifest.fingerprint
    assert load_manifest(out / "mixture.yaml").model_validate(yaml.safe_load(block.group(1))) == manifest
    loaded = datasets.load_dataset(str(out), split="train")
    assert loaded.num_rows == 40 and Counter(loaded["mix_source"]) == {"code": 20, "math": 10, "write": 10}
    mix_from_plan(plan, size=8, out=out)  # an earlier mixture is replaced
    assert pq.read_table(out / "data" / "train-00000-of-00001.parquet").num_rows == 8


def test_a_folder_that_is_no_mixture_is_not_overwritten(plan: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="taken: exists and is not a mixture folder"):
        mix_from_plan(plan, out=tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_a_source_that_does_not_exist_is_named_by_its_line(plan: Path, tmp_path: Path) -> None:
    text = plan.read_text(encoding="utf-8")
    missing = tmp_path / "missing.yaml"
    missing.write_text(
        re.sub(r"\nfingerprint: .*\n", "\n", text.replace(str(tmp_path / "write.jsonl"), "gone/write.jsonl")),
        encoding="utf-8",
    )
    line = next(i for i, t in enumerate(missing.read_text().splitlines(), 1) if "gone/write.jsonl" in t)
    with pytest.raises(DatasetError) as caught:
        mix_from_plan(missing)
    assert str(caught.value) == (
        f"{missing}:{line}:3: sources[2].path: source 'write': gone/write.jsonl does not exist (relative paths are "
        "read from the current directory)"
    )
    with pytest.raises(ConfigError, match="fingerprint: the manifest was edited after planning"):
        mix_from_plan(_edited(plan, tmp_path))


def _edited(plan: Path, tmp_path: Path) -> Path:
    edited = tmp_path / "edited.yaml"
    edited.write_text(plan.read_text().replace("weight: 0.5", "weight: 0.6"), encoding="utf-8")
    return edited


def test_a_source_without_preference_columns_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c"}\n', encoding="utf-8")
    manifest = mix_plan({"bad": {"t": 1.0}}, sources={"bad": str(bad)})
    with pytest.raises(DatasetError, match=rf"^source 'bad' \({bad}\) row 0: missing column\(s\) rejected$"):
        mix_from_plan(manifest)


def test_the_python_api_takes_a_manifest_a_dict_or_a_file(plan: Path) -> None:
    manifest = load_manifest(plan)
    by_object = charter.mix_from_plan(manifest, size=12)
    by_dict = charter.mix_from_plan(manifest.model_dump(), size=12)
    by_file = charter.mix_from_plan(str(plan), size=12)
    assert by_object["id"] == by_dict["id"] == by_file["id"]
    with pytest.raises(ArgumentError, match=r"^size: must be at least 1"):
        charter.mix_from_plan(manifest, size=0)
    with pytest.raises(ArgumentError, match=r"^plan: expected a MixtureManifest"):
        charter.mix_from_plan(3)
    with pytest.raises(ConfigError, match=r"^plan: top_n: "):
        charter.mix_from_plan({**manifest.model_dump(), "top_n": 0})


def test_the_command_line_builds_and_refuses_in_one_line(
    plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli"
    assert main(["mix", "build", str(plan), "--out", str(out), "--size", "20", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines() == ["     10  code", "      5  math", "      5  write", f"wrote 20 rows to {out}"]
    assert (out / "README.md").exists()
    assert main(["mix", "build", str(plan), "--out", str(out), "--size", "1000"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: cannot build 1000 rows: source 'code' needs 500 at weight 0.5 and has 30"
    )
    assert main(["mix", "build", str(_edited(plan, tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'edited.yaml'}:") and len(err.splitlines()) == 1
    assert main(["mix", "build", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'none.yaml'}: file not found"


def test_a_key_in_the_sources_is_never_written_to_the_upload_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A source row that holds the literal value of $OPENAI_API_KEY (no known shape: only its value can find it)
    stops `charter mix build` with one line naming the file, the row and the column, never the key, and no folder."""
    key = "vendorkey-" + "Q7wz2Lp9Xc4Rb8Nm3Tk6"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    rows = [{"prompt": f"q{i}", "chosen": "fine", "rejected": f"use {key}" if i == 3 else "no"} for i in range(6)]
    leaky = tmp_path / "leaky.jsonl"
    leaky.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / "mixture.yaml"
    mix_plan({"leaky": {"t": 0.9}}, top_n=1, sources={"leaky": str(leaky)}, out=path)
    out = tmp_path / "mixed"
    assert main(["mix", "build", str(path), "--out", str(out), "--seed", "0"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: refusing to write {out}: a secret was found in data/train-00000-of-00001.parquet")
    assert "column 'rejected'" in line and "value of $OPENAI_API_KEY" in line and key not in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(SecretFound):
        mix_from_plan(path, out=out)
    assert not out.exists()
    assert mix_from_plan(path).num_rows == 6  # without a folder, the rows are the caller's
