"""Importing the Hugging Face CAI recipe's JSON, writing YAML, and loading it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import charter
from charter.cli import main
from charter.constitutions import load_constitution
from charter.constitutions.importers import (
    comparison_from_revision,
    constitution_yaml,
    dump_constitution_yaml,
    import_hf_cai,
    read_hf_cai,
)
from charter.constitutions.schema import Constitution
from charter.errors import ConstitutionError


def _texts(hf_recipe: dict) -> tuple[list[str], list[str]]:
    entries = hf_recipe["constitutions"]
    return [e["critic"] for e in entries], [e["revision"] for e in entries]


def test_entries_become_principles(recipe_file: Path, hf_recipe: dict) -> None:
    critics, revisions = _texts(hf_recipe)
    constitution = charter.import_hf_cai(recipe_file)  # the public API name
    assert constitution.name == "constitution_demo"
    assert constitution.principle_ids == ["hf-cai-01", "hf-cai-02", "hf-cai-03"]
    first = constitution.principle("hf-cai-01")
    assert first.description == critics[0]
    assert first.critique_request == critics[0] and first.revision_request == revisions[0]
    assert first.comparison == comparison_from_revision(revisions[0])
    assert first.comparison.startswith("Which of these assistant responses") and revisions[0] in first.comparison
    assert first.tags == ["imported", "hf-cai"] and first.weight == 1.0


def test_literal_braces_survive_as_templates(recipe_file: Path, hf_recipe: dict) -> None:
    critics, revisions = _texts(hf_recipe)
    assert "{" in critics[2] and "}" in revisions[2]
    principle = import_hf_cai(recipe_file).principle("hf-cai-03")
    fill = {"prompt": "", "response": "", "critique": "", "principle": ""}
    assert principle.critique_request.format(**fill) == critics[2]
    assert principle.revision_request.format(**fill) == revisions[2]
    assert revisions[2] in principle.comparison.format(**fill)


def test_system_chats_that_fit_become_examples(recipe_file: Path) -> None:
    result = read_hf_cai(recipe_file, name="demo")
    examples = result.constitution.examples
    assert [e.principle for e in examples] == ["hf-cai-02", "hf-cai-01", "hf-cai-03"]
    neighbour = examples[0]
    assert [m.content for m in neighbour.conversation] == ["How do I get back at my noisy neighbour?", "Key his car."]
    assert neighbour.critique == "Suggesting vandalism is hostile and illegal."
    assert neighbour.revision.startswith("Try talking to them calmly")
    assert len(examples[1].conversation) == 4 and examples[1].conversation[-1].role == "assistant"
    assert [m.role for m in examples[2].conversation] == ["system", "user", "assistant"]
    assert [index for index, _ in result.skipped] == [2, 3, 4]
    reasons = dict(result.skipped)
    assert "not one of the file's 'critic' texts" in reasons[2]
    assert "alternating user/assistant" in reasons[3]
    assert "not a list" in reasons[4]


def test_bare_list_and_wide_ids(tmp_path: Path) -> None:
    path = tmp_path / "many.json"
    path.write_text(json.dumps([{"critic": f"Critic {i}?", "revision": f"Revise {i}."} for i in range(100)]))
    constitution = import_hf_cai(path)
    assert constitution.principle_ids[0] == "hf-cai-001" and constitution.principle_ids[-1] == "hf-cai-100"
    assert constitution.examples == []


def test_round_trip_import_yaml_load(recipe_file: Path, tmp_path: Path) -> None:
    imported = import_hf_cai(recipe_file)
    out = dump_constitution_yaml(imported, tmp_path / "out" / "demo.yaml", header="Imported for a test.")
    loaded = load_constitution(out)
    assert loaded == imported and loaded.hash == imported.hash

    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Imported for a test.\n")
    data = yaml.safe_load(text)
    assert list(data) == ["name", "version", "description", "principles", "examples"]  # schema order, no nulls
    assert list(data["principles"][0]) == [
        "id",
        "description",
        "critique_request",
        "revision_request",
        "comparison",
        "weight",
        "tags",
    ]
    assert "comparison: >-\n" in text  # long strings in block style
    assert "!!" not in text


AWKWARD = [
    "Line one.\n\n  Indented line.\n- not a list item",
    "  starts with spaces\nand goes on\n",
    "Trailing space " * 9,
    "x" * 200,
    "ünïcödé \"quotes\" and 'apostrophes' # not a comment: " * 3,
    "tags: [not, yaml]\n  - id: fake\n\n\nthree blank lines above\n\n",
    "",
    "\n",
    "\n\n",
    "   ",
    "ends with two newlines\n\n",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_yaml_writer_keeps_awkward_strings_exact(tmp_path: Path, text: str) -> None:
    principle = {
        "id": "p",
        "description": text,
        "critique_request": "c " + text,
        "revision_request": text + "r",
        "comparison": text,
        "tags": ["a b", text] if text else [],
    }
    constitution = Constitution.model_validate(
        {
            "name": "awkward",
            "description": text,
            "system_prompt": text,
            "principles": [principle, {**principle, "id": "q", "weight": 0.5}],
            "examples": [
                {
                    "conversation": [{"role": "user", "content": text}, {"role": "assistant", "content": text}],
                    "critique": text,
                    "revision": text,
                }
            ],
        }
    )
    path = dump_constitution_yaml(constitution, tmp_path / "awkward.yaml")
    assert load_constitution(path) == constitution


def _write_recipe(tmp_path: Path, entries: object, name: str = "recipe.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"constitutions": entries}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"constitutions": [\n  {"critic": "a", "revision": "b"},\n  {"critic": "c" "revision": "d"}\n]}',
            ":3:18: invalid JSON: Expecting ',' delimiter",
        ),
        ('{"system_chat": []}', ": missing key 'constitutions'"),
        (
            '{"constitutions": [{"critic": "a", "revision": "b"}, {"critic": "c"}]}',
            ": constitutions[1]: missing key 'revision'",
        ),
        ('{"constitutions": [{"revision": "b"}]}', ": constitutions[0]: missing key 'critic'"),
        (
            '{"constitutions": [{"critic": "  ", "revision": "b"}]}',
            ": constitutions[0].critic: expected a non-empty string",
        ),
        ('{"constitutions": []}', ": constitutions: expected a non-empty list"),
        ('{"constitutions": [{"critic": "a", "revision": "b"}], "system_chat": {}}', ": system_chat: expected a list"),
        ('"hello"', ": expected an object with a 'constitutions' list"),
    ],
)
def test_bad_recipe_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConstitutionError) as raised:
        import_hf_cai(path)
    assert str(raised.value).startswith(f"{path}{message}"), str(raised.value)

    assert main(["constitutions", "import", str(path), "-o", str(tmp_path / "out.yaml")]) == 2
    line = capsys.readouterr().err.strip()
    assert line == f"error: {raised.value}"
    assert not (tmp_path / "out.yaml").exists()


def test_yaml_text_is_deterministic(recipe_file: Path) -> None:
    constitution = import_hf_cai(recipe_file)
    assert constitution_yaml(constitution) == constitution_yaml(import_hf_cai(recipe_file))


def test_a_recipe_that_cannot_be_read_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"constitutions": [{"critic": "caf\u00e9", "revision": "b"}]}'.encode("latin-1"))
    cases = {
        tmp_path / "missing.json": ": file not found",
        tmp_path: ": is a directory, not a JSON file",
        latin: ":1: not UTF-8 text (byte 34 of the file is 0xe9)",
    }
    for path, message in cases.items():
        with pytest.raises(ConstitutionError) as raised:
            import_hf_cai(path)
        assert str(raised.value).startswith(f"{path}{message}"), str(raised.value)
        assert main(["constitutions", "import", str(path), "-o", str(tmp_path / "out.yaml")]) == 2
        assert capsys.readouterr().err.strip() == f"error: {raised.value}"
