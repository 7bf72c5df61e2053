"""Every number a constitution gives is finite and in range at load: a NaN, an infinity, a number past a float's
range, a boolean or a weight so large that sums overflow is one line naming file:line:column and the key, and
`charter constitutions validate` exits 2; `charter constitutions rubric --json` writes only JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from charter.cli import app, main
from charter.constitutions import load_constitution
from charter.errors import ConstitutionError
from tests.support.numbers import huge_weights, json_not_finite, usable_weights, yaml_not_finite

runner = CliRunner()

TEMPLATE = """\
name: numbers
gate_cap: {gate_cap}
principles:
  - id: accurate
    description: Say only what is true.
    critique_request: What is not known to be true?
    revision_request: Rewrite it to state only what is known.
    comparison: Which response makes fewer unknown claims?
    weight: {principle_weight}
    criteria:
      - id: cites-source
        requirement: The response names a source for each figure.
        weight: {weight}
        gate: {{cap: {cap}}}
      - id: hedges
        requirement: The response says what it does not know.
        weight: {other_weight}
"""
GOOD = {"gate_cap": "0.2", "principle_weight": "1.0", "weight": "0.5", "cap": "0.3", "other_weight": "0.7"}
#: Each number's key, and the line and column its value is written at in TEMPLATE.
PLACES = {
    "gate_cap": ("gate_cap", 2, 1),
    "principle_weight": ("principles[0].weight", 9, 5),
    "weight": ("principles[0].criteria[0].weight", 13, 9),
    "cap": ("principles[0].criteria[0].gate.cap", 14, 16),
    "other_weight": ("principles[0].criteria[1].weight", 17, 9),
}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "numbers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConstitutionError) as caught:
        load_constitution(path)
    return str(caught.value)


@SETTINGS
@given(place=st.sampled_from(sorted(PLACES)), spelled=yaml_not_finite())
def test_a_number_that_is_not_finite_is_one_line_naming_file_line_and_key(
    tmp_path: Path, place: str, spelled: str
) -> None:
    said = _error(tmp_path, TEMPLATE.format(**{**GOOD, place: spelled}))
    key, line, column = PLACES[place]
    assert said.startswith(f"{tmp_path / 'numbers.yaml'}:{line}:{column}: {key}: "), said
    assert "\n" not in said and ";" not in said, said


@SETTINGS
@given(index=st.sampled_from([0, 1]), spelled=json_not_finite())
def test_a_constitution_written_as_json_refuses_them_too(tmp_path: Path, index: int, spelled: str) -> None:
    data = yaml.safe_load(TEMPLATE.format(**GOOD))
    data["principles"][0]["criteria"][index]["weight"] = "@weight@"
    said = _error(tmp_path, json.dumps(data, indent=1).replace('"@weight@"', spelled))
    assert f"principles[0].criteria[{index}].weight: " in said and "\n" not in said, said


@SETTINGS
@given(weight=huge_weights())
def test_weights_so_large_that_their_sum_overflows_are_refused(tmp_path: Path, weight: float) -> None:
    said = _error(tmp_path, TEMPLATE.format(**{**GOOD, "weight": repr(weight), "other_weight": repr(weight)}))
    assert "principles[0].criteria[0].weight: Input should be" in said and "1000000" in said, said


def test_validate_exits_2_with_one_line_for_a_nan_weight_and_a_boolean(tmp_path: Path, capsys) -> None:
    for spelled, said in ((".nan", "Input should be a finite number"), ("true", "expected a number, not true")):
        path = tmp_path / "numbers.yaml"
        path.write_text(TEMPLATE.format(**{**GOOD, "weight": spelled}), encoding="utf-8")
        assert main(["constitutions", "validate", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {path}:13:9: principles[0].criteria[0].weight: {said}", err


def test_two_weights_at_1e308_are_refused_before_their_sum_overflows(tmp_path: Path, capsys) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(TEMPLATE.format(**{**GOOD, "weight": "1.0e+308", "other_weight": "1.0e+308"}), encoding="utf-8")
    assert main(["constitutions", "validate", str(path)]) == 2
    assert "weight: Input should be less than or equal to 1000000" in capsys.readouterr().err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weight=usable_weights(), other=usable_weights())
def test_rubric_json_is_json_at_every_weight_it_takes(tmp_path: Path, weight: float, other: float) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(TEMPLATE.format(**{**GOOD, "weight": repr(weight), "other_weight": repr(other)}), encoding="utf-8")
    result = runner.invoke(app, ["constitutions", "rubric", str(path), "--json"])
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    data = json.loads(result.output, parse_constant=refuse)
    assert [i["weight"] for i in data["checklist"]["items"]] == [weight, other]
