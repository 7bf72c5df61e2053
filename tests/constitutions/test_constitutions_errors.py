"""Every kind of bad constitution is one error line with file:line:column and the key, and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter.cli import main
from charter.constitutions import load_constitution
from charter.errors import ConstitutionError

GOOD = """\
name: demo
principles:
  - id: kind
    description: Be kind.
    critique_request: Was the assistant's last response unkind?
    revision_request: Rewrite the response to be kind.
    comparison: Which response is kinder?
  - id: brief
    description: Be brief.
    critique_request: Was it too long?
    revision_request: Make it shorter.
    comparison: Which response is briefer?
examples:
  - conversation:
      - {role: user, content: hi}
      - {role: assistant, content: go away}
    principle: kind
    critique: Rude.
    revision: Hello!
"""

# (case, old text, new text, expected "line:column: key", words the message must contain)
CASES = [
    (
        "malformed-yaml",
        "    comparison: Which response is briefer?",
        "    comparison: Which: response is briefer?",
        "12:22",
        ["invalid YAML", "mapping values are not allowed"],
    ),
    (
        "unknown-key",
        "    description: Be brief.",
        "    description: Be brief.\n    colour: blue",
        "10:5: principles[1].colour",
        ["unknown key"],
    ),
    (
        "missing-field",
        "    comparison: Which response is kinder?\n",
        "",
        "3:5: principles[0].comparison",
        ["required key is missing"],
    ),
    ("duplicate-id", "  - id: brief", "  - id: kind", "8:5: principles[1].id", ["duplicate principle id 'kind'"]),
    (
        "unknown-variable",
        "Make it shorter.",
        "Make {answer} shorter.",
        "11:5: principles[1].revision_request",
        ["unknown template variable {answer}", "allowed"],
    ),
    (
        "unbalanced-brace",
        "Was it too long?",
        "Was it too {long?",
        "10:5: principles[1].critique_request",
        ["invalid template"],
    ),
    (
        "empty-principles",
        GOOD[GOOD.index("  - id: kind") : GOOD.index("examples:")],
        " []\n",
        "2:1: principles",
        ["at least 1"],
    ),
    (
        "unknown-example-principle",
        "    principle: kind",
        "    principle: polite",
        "17:5: examples[0].principle",
        ["unknown principle 'polite'"],
    ),
    (
        "duplicate-key",
        "    revision_request: Make it shorter.",
        "    revision_request: Make it shorter.\n    revision_request: Shorter.",
        "12:5",
        ["duplicate key 'revision_request'"],
    ),
    (
        "bad-role",
        "{role: user, content: hi}",
        "{role: human, content: hi}",
        "15:10: examples[0].conversation[0].role",
        ["'system', 'developer', 'user', 'assistant' or 'tool'"],
    ),
    ("wrong-type", "  - id: brief", "  - id: 42", "8:5: principles[1].id", ["string"]),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "constitution.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_good_file_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["constitutions", "validate", str(_write(tmp_path, GOOD))]) == 0
    assert capsys.readouterr().out.startswith("OK ")


@pytest.mark.parametrize("case, old, new, where, words", CASES, ids=[c[0] for c in CASES])
def test_bad_constitution_is_one_line_with_position_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, old: str, new: str, where: str, words: list[str]
) -> None:
    assert old in GOOD, case
    path = _write(tmp_path, GOOD.replace(old, new, 1))

    assert main(["constitutions", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = captured.err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"error: {path}:{where}"), line
    for word in words:
        assert word in line, line

    with pytest.raises(ConstitutionError) as raised:
        load_constitution(path)
    assert f"error: {raised.value}" == line


def test_empty_file_names_the_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "")
    assert main(["constitutions", "validate", str(path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"error: {path}") and "name: required key is missing" in line


def test_missing_file_and_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["constitutions", "validate", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: file not found" in capsys.readouterr().err
    assert main(["constitutions", "show", "no-such-constitution"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "bundled: harmless, helpful-honest" in line
