"""Criteria in the constitution: weights or categories, gates with caps, verifiers checked at load; a constitution
without criteria hashes as it always did; a bad criterion is one line naming file:line:column and the key, exit 2;
`charter constitutions rubric` prints the compiled rubric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charter.cli import app, main
from charter.constitutions import load_constitution
from charter.constitutions.importers import constitution_yaml
from charter.constitutions.schema import CATEGORY_WEIGHTS, DEFAULT_GATE_CAP
from charter.errors import ConstitutionError

runner = CliRunner()

WITH_CRITERIA = """\
name: graded
gate_cap: 0.2
principles:
  - id: accurate
    description: Say only what is true.
    critique_request: What is not known to be true?
    revision_request: Rewrite it to state only what is known.
    comparison: Which response makes fewer unknown claims?
    criteria:
      - id: cites-source
        requirement: The response names a source for each figure.
        category: essential
        gate: true
      - id: hedges
        requirement: The response says what it does not know.
        weight: 0.5
      - id: invents
        requirement: The response invents a feature or a policy.
        category: pitfall
        gate: {cap: 0.1}
  - id: brief
    description: Be brief.
    critique_request: Was it too long?
    revision_request: Make it shorter.
    comparison: Which response is briefer?
    criteria:
      - id: short
        requirement: The response is under 100 words.
        verifier: "regex:^(?:\\\\S+\\\\s+){0,99}\\\\S*$"
      - id: plain
        requirement: The response uses plain words.
  - id: kind
    description: Be kind.
    critique_request: Was it unkind?
    revision_request: Make it kind.
    comparison: Which response is kinder?
"""

# Bundled constitutions' hashes before criteria existed: criteria enter the hash only where a principle has some.
BUNDLED_HASHES = {
    "harmless": "b9119e989e7620cddf0b147d078eca8146cd1dadaa1a5bd9463c5d2a210ed4be",
    "helpful-honest": "a1534425b92d74188a91dfe51d1b6137daba4476456c43a7144e16e6893b7c85",
}


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(BUNDLED_HASHES))
def test_the_bundled_constitutions_hash_as_before_criteria_existed(name: str) -> None:
    assert load_constitution(name).hash == BUNDLED_HASHES[name]


def test_criteria_load_with_their_weights_gates_and_verifiers(tmp_path: Path) -> None:
    constitution = load_constitution(_write(tmp_path, WITH_CRITERIA))
    accurate, brief, kind = constitution.principles
    cites, hedges, invents = accurate.criteria
    assert (cites.effective_weight, hedges.effective_weight, invents.effective_weight) == (1.0, 0.5, -0.9)
    assert brief.criteria[1].effective_weight == CATEGORY_WEIGHTS["important"] == 0.7  # neither: important
    assert constitution.gate_cap_of(cites) == 0.2  # the constitution's cap
    assert constitution.gate_cap_of(invents) == 0.1  # the gate's own
    assert constitution.gate_cap_of(hedges) is None
    assert brief.criteria[0].verifier is not None and kind.criteria == []
    assert constitution.has_criteria


def test_criteria_are_part_of_the_hash_and_a_file_with_them_dumps_and_loads_back(tmp_path: Path) -> None:
    constitution = load_constitution(_write(tmp_path, WITH_CRITERIA))
    data = constitution.model_dump()
    data["principles"][0]["criteria"][1]["weight"] = 0.6
    changed = type(constitution).model_validate(data)
    assert changed.hash != constitution.hash
    without = {**constitution.model_dump(), "gate_cap": None}
    without["principles"] = [{**p, "criteria": []} for p in without["principles"]]
    bare = type(constitution).model_validate(without)
    assert bare.hash != constitution.hash
    dumped = constitution_yaml(constitution)
    assert "criteria: []" not in dumped and "gate: false" not in dumped
    assert load_constitution(_write(tmp_path, dumped, "back.yaml")).hash == constitution.hash


def test_a_principle_without_criteria_dumps_as_before(tmp_path: Path) -> None:
    assert "criteria" not in constitution_yaml(load_constitution("harmless"))
    assert DEFAULT_GATE_CAP == 0.0


VERIFIER_LINE = next(line for line in WITH_CRITERIA.splitlines() if "verifier:" in line)
# (case, old text, new text, "line:column: key", words the message must contain)
BAD = [
    (
        "weight-and-category",
        "        weight: 0.5",
        "        weight: 0.5\n        category: optional",
        "16:9: principles[0].criteria[1].weight",
        ["not both"],
    ),
    ("zero-weight", "        weight: 0.5", "        weight: 0", "16:9: principles[0].criteria[1].weight", ["0"]),
    ("unknown-category", "category: essential", "category: vital", "12:9: principles[0].criteria[0].category", []),
    ("bad-cap", "gate: {cap: 0.1}", "gate: {cap: 1.5}", "20:16: principles[0].criteria[2].gate.cap", ["1"]),
    ("bad-gate", "gate: {cap: 0.1}", "gate: sometimes", "20:9: principles[0].criteria[2].gate", ["true, false"]),
    (
        "duplicate-id",
        "      - id: hedges",
        "      - id: cites-source",
        "14:9: principles[0].criteria[1].id",
        ["duplicate"],
    ),
    (
        "unknown-verifier",
        VERIFIER_LINE,
        "        verifier: nosuch",
        "29:9: principles[1].criteria[0].verifier",
        ["unknown"],
    ),
    (
        "verifier-needs-reference",
        VERIFIER_LINE,
        "        verifier: number",
        "29:9: principles[1].criteria[0].verifier",
        ["reference"],
    ),
    (
        "unknown-key",
        "        requirement: The response uses plain words.",
        "        requirement: x\n        colour: red",
        "32:9: principles[1].criteria[1].colour",
        ["unknown key"],
    ),
]


@pytest.mark.parametrize("case,old,new,where,words", BAD, ids=[c[0] for c in BAD])
def test_a_bad_criterion_is_one_line_naming_the_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, old: str, new: str, where: str, words: list[str]
) -> None:
    assert old in WITH_CRITERIA, case
    path = _write(tmp_path, WITH_CRITERIA.replace(old, new, 1))
    with pytest.raises(ConstitutionError) as caught:
        load_constitution(path)
    message = str(caught.value)
    assert f"{path}:{where}" in message, message
    assert all(w in message for w in words), message
    assert main(["constitutions", "validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0], err


def test_the_rubric_command_prints_the_compiled_rubric_and_its_json(tmp_path: Path) -> None:
    path = _write(tmp_path, WITH_CRITERIA)
    result = runner.invoke(app, ["constitutions", "rubric", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[essential +1, gate: caps at 0.2] cites-source: The response names a source" in result.output
    assert "[pitfall -0.9, gate: caps at 0.1] invents:" in result.output
    assert "[+0.5] hedges:" in result.output and "checked by verifier regex:" in result.output
    assert "kind: no criteria (judged as a whole)" in result.output
    result = runner.invoke(app, ["constitutions", "rubric", str(path), "--json"])
    data = json.loads(result.output)
    assert data["constitution_hash"] == load_constitution(path).hash and data["judged_whole"] == ["kind"]
    items = {i["id"]: i for i in data["checklist"]["items"]}
    assert items["invents"]["weight"] == -0.9 and items["invents"]["gate_cap"] == 0.1
    assert items["short"]["verifier"].startswith("regex:") and data["checklist"]["source"] == "criteria"


def test_the_rubric_of_a_constitution_without_criteria_says_so() -> None:
    result = runner.invoke(app, ["constitutions", "rubric", "harmless"])
    assert result.exit_code == 0 and "no principle carries criteria" in result.output
    data = json.loads(runner.invoke(app, ["constitutions", "rubric", "harmless", "--json"]).output)
    assert data["checklist"] is None and len(data["judged_whole"]) == 15
