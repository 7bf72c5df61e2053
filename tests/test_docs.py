"""The docs hold what the code does: FORMATS.md is the records' own description, every Python block in
README.md and docs/ runs (scripted models stand in where a real one is named), every config key is described."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from charter.cli import main
from charter.formats import formats_markdown
from charter.pipeline.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
REAL_MODEL = re.compile(r"\b(?:local|openai|anthropic|openai-compatible):[\w./@:-]+")


def python_blocks(path: Path) -> list[str]:
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    return [t.content for t in tokens if t.type == "fence" and t.info.strip().split(" ")[:1] == ["python"]]


def scripted(text: str) -> str:
    """The same text with every real model string replaced by the scripted stand-in."""
    return REAL_MODEL.sub("scripted:cai", text)


def test_formats_md_is_generated_from_the_records() -> None:
    assert (ROOT / "docs" / "FORMATS.md").read_text(encoding="utf-8") == formats_markdown(), \
        "docs/FORMATS.md is stale: python -m charter.formats > docs/FORMATS.md"


def test_the_readme_has_a_python_example() -> None:
    assert python_blocks(ROOT / "README.md")


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file's blocks, in order, in one namespace, from a directory holding the examples (models scripted)."""
    (tmp_path / "examples").mkdir()
    for example in (ROOT / "examples").glob("*.yaml"):
        (tmp_path / "examples" / example.name).write_text(scripted(example.read_text(encoding="utf-8")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # the call cache goes to ~/.cache
    namespace: dict = {"__name__": "__docs__"}
    for block in python_blocks(path):
        exec(compile(scripted(block), f"{path.name} python block", "exec"), namespace)  # noqa: S102


def test_every_run_config_key_is_described() -> None:
    missing = []

    def walk(schema: dict, defs: dict, where: str) -> None:
        for name, prop in (schema.get("properties") or {}).items():
            if not prop.get("description"):
                missing.append(f"{where}{name}")
            for ref in _refs(prop):
                walk(defs[ref], defs, f"{where}{name}.")

    full = RunConfig.model_json_schema()
    walk(full, full.get("$defs", {}), "")
    assert missing == []


def _refs(prop: dict) -> list[str]:
    found = re.findall(r'"\$ref": "#/\$defs/(\w+)"', json.dumps(prop))
    return list(dict.fromkeys(found))


def test_config_schema_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "schema", "-o", str(tmp_path / "s.json")]) == 0
    schema = json.loads((tmp_path / "s.json").read_text())
    judge = schema["$defs"]["JudgeConfig"]["properties"]
    assert "both orders" in judge["orders"]["description"] and judge["mode"]["enum"] == ["logprobs", "cot", "verdict"]
    assert schema["properties"]["reward_model"]["description"].startswith("Reward-model training")
    assert main(["config", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema
