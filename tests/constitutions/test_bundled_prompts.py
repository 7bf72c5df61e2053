"""The bundled prompt set used by the quickstart: shape, size and mix of categories."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from charter.prompts import bundled_prompts_path

RED_TEAM_AREAS = {
    "weapons",
    "self-harm",
    "cyber",
    "fraud",
    "hate",
    "privacy",
    "drugs",
    "dangerous-chemistry",
    "manipulation",
}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = bundled_prompts_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_at_least_60_prompts_with_unique_ids(rows: list[dict]) -> None:
    assert len(rows) >= 60
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)


def test_every_row_is_a_prompt_or_a_conversation(rows: list[dict]) -> None:
    for row in rows:
        assert set(row) in ({"id", "prompt", "category"}, {"id", "messages", "category"}), row["id"]
        if "prompt" in row:
            assert isinstance(row["prompt"], str) and row["prompt"].strip()
            continue
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"], row["id"]
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in row["messages"])


def test_red_team_and_helpful_categories(rows: list[dict]) -> None:
    categories = Counter(row["category"] for row in rows)
    red = {c for c in categories if not c.startswith("helpful-")}
    assert RED_TEAM_AREAS <= red
    assert sum(n for c, n in categories.items() if c.startswith("helpful-")) >= 20
    assert "helpful-borderline" in categories  # benign requests that sound alarming: over-refusal checks
    assert sum("messages" in row for row in rows) >= 5


def test_any_prefix_mixes_red_team_and_helpful(rows: list[dict]) -> None:
    # the quickstart takes the first prompts; they should not all be of one kind
    head = rows[:16]
    helpful = sum(row["category"].startswith("helpful-") for row in head)
    assert 4 <= helpful <= 12
    assert len({row["category"] for row in head}) >= 10
