"""`charter constitutions list | show | validate | import`, run through `charter.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charter.cli import main
from charter.constitutions import load_constitution
from charter.constitutions.schema import builtin_path


def test_list_shows_every_bundled_constitution(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["constitutions", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("harmless", "helpful-honest"):
        constitution = load_constitution(name)
        row = next(line for line in out.splitlines() if f" {name} " in line)
        assert constitution.short_hash in row and f" {len(constitution.principles)} " in row
        assert constitution.version in row
    assert "description" in out


def test_show_prints_every_principle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["constitutions", "show", "harmless"]) == 0
    out = capsys.readouterr().out
    constitution = load_constitution("harmless")
    assert constitution.hash in out
    for principle in constitution.principles:
        assert principle.id in out
    assert "critique:" in out and "revision:" in out and "comparison:" in out
    assert "2 few-shot examples (--examples to show them)" in out
    assert constitution.examples[0].conversation[0].content.split()[0] not in out.split("few-shot")[-1]


def test_show_examples_and_files(capsys: pytest.CaptureFixture[str]) -> None:
    path = builtin_path("helpful-honest")
    assert main(["constitutions", "show", str(path), "--examples"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # undo the terminal wrapping
    example = load_constitution(path).examples[1]
    assert "principle: no-sycophancy" in out
    assert " ".join(example.critique.split()[:8]) in out


def test_show_keeps_square_brackets_literal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "brackets.yaml"
    path.write_text(
        "name: brackets\nprinciples:\n  - id: a\n    description: Mentions [bold]markup[/bold] and [red].\n"
        "    critique_request: c\n    revision_request: r\n    comparison: q?\n",
        encoding="utf-8",
    )
    assert main(["constitutions", "show", str(path)]) == 0
    assert "Mentions [bold]markup[/bold] and [red]." in capsys.readouterr().out


def test_validate_prints_ok_and_the_hash(capsys: pytest.CaptureFixture[str]) -> None:
    path = builtin_path("harmless")
    assert main(["constitutions", "validate", str(path)]) == 0
    out = capsys.readouterr().out.strip()
    constitution = load_constitution(path)
    assert out.startswith(f"OK {path}: harmless version {constitution.version}, {len(constitution.principles)} ")
    assert out.endswith(constitution.hash)


def test_import_writes_a_valid_constitution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hf_recipe: dict
) -> None:
    source = tmp_path / "recipe.json"
    source.write_text(json.dumps(hf_recipe), encoding="utf-8")
    output = tmp_path / "imported.yaml"
    assert main(["constitutions", "import", str(source), "-o", str(output), "--name", "hf-demo"]) == 0
    captured = capsys.readouterr()
    loaded = load_constitution(output)
    assert loaded.name == "hf-demo" and len(loaded.principles) == 3 and len(loaded.examples) == 3
    assert captured.out.strip() == f"wrote {output}: 3 principles, 3 examples, sha256 {loaded.hash}"
    assert [line.split(":")[0] for line in captured.err.strip().splitlines()] == [
        "skipped system_chat[2]",
        "skipped system_chat[3]",
        "skipped system_chat[4]",
    ]
    assert output.read_text(encoding="utf-8").startswith(
        "# Imported from recipe.json by `charter constitutions import`"
    )

    assert main(["constitutions", "validate", str(output)]) == 0
    assert loaded.hash in capsys.readouterr().out


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["constitutions", "--help"]) == 0
    out = capsys.readouterr().out
    for command in ("list", "show", "validate", "import"):
        assert command in out
