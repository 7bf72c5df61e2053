"""The bundled constitutions load, have the promised shape, and cover the harm areas they claim."""

from __future__ import annotations

import pytest

import charter
from charter.constitutions import builtin_names, load_constitution
from charter.constitutions.importers import constitution_yaml
from charter.constitutions.schema import builtin_path, template_fields

FILL = {"prompt": "P", "response": "R", "critique": "C", "principle": "X"}


def test_both_bundled_constitutions_are_listed() -> None:
    assert {"harmless", "helpful-honest"} <= set(builtin_names())


def test_harmless_has_12_to_16_principles_covering_the_harm_areas() -> None:
    constitution = charter.load_constitution("harmless")
    assert 12 <= len(constitution.principles) <= 16
    tags = {tag for p in constitution.principles for tag in p.tags}
    wanted = {
        "violence",
        "weapons",
        "self-harm",
        "crime",
        "hate",
        "privacy",
        "child-safety",
        "cbrn",
        "manipulation",
        "medical",
        "legal",
        "financial",
        "cyber",
        "extremism",
        "over-refusal",
    }
    assert wanted <= tags, wanted - tags


def test_helpful_honest_has_at_least_8_principles() -> None:
    constitution = load_constitution("helpful-honest")
    assert len(constitution.principles) >= 8
    ids = set(constitution.principle_ids)
    assert {
        "helpfulness",
        "honesty",
        "calibration",
        "no-fabrication",
        "clarity",
        "instruction-following",
        "admits-limits",
        "concise",
    } <= ids


@pytest.mark.parametrize("name", ["harmless", "helpful-honest"])
def test_bundled_constitution_is_complete(name: str) -> None:
    constitution = load_constitution(name)
    assert constitution.name == name
    assert constitution.description and constitution.system_prompt
    assert 1 <= len(constitution.examples) <= 2
    for example in constitution.examples:
        assert example.principle in constitution.principle_ids
        assert example.conversation[0].role == "user" and example.conversation[-1].role == "assistant"
    for principle in constitution.principles:
        assert principle.tags and principle.weight > 0
        assert principle.comparison.rstrip().endswith("?"), principle.id
        for template in (principle.critique_request, principle.revision_request, principle.comparison):
            # plain text: the conversation stands in front of the request, and no stray braces
            assert template_fields(template) == set()
            assert template.format(**FILL) == template


@pytest.mark.parametrize("name", ["harmless", "helpful-honest"])
def test_bundled_constitution_survives_dump_and_reload(name: str, tmp_path) -> None:
    constitution = load_constitution(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(constitution_yaml(constitution), encoding="utf-8")
    reloaded = load_constitution(path)
    assert reloaded == constitution
    assert reloaded.hash == constitution.hash


def test_builtin_path_is_the_packaged_file() -> None:
    path = builtin_path("harmless")
    assert path.is_file() and path.parent.name == "library"
    assert load_constitution(path).hash == load_constitution("harmless").hash
