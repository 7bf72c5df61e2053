"""The constitution hash: same meaning, same hash; any change of meaning, a new hash."""

from __future__ import annotations

from pathlib import Path

from charter.constitutions import load_constitution

BLOCK = """\
# comments do not matter
name: demo
version: "2"
description: >-
  A tiny constitution
  for hashing.
principles:
  - id: kind
    description: Be kind.
    critique_request: >-
      Was the assistant's last response unkind?
    revision_request: Rewrite the response to be kind.
    comparison: Which response is kinder?
    tags: [tone]
  - id: brief
    description: Be brief.
    critique_request: Was it too long?
    revision_request: Make it shorter.
    comparison: Which response is briefer?
    weight: 2
examples:
  - conversation:
      - {role: user, content: hi}
      - {role: assistant, content: go away}
    principle: kind
    critique: Rude.
    revision: Hello! How can I help?
"""

# The same constitution: keys reordered, flow style, quoting, explicit defaults, version as a number.
FLOW = """\
{"version": 2, "principles": [
  {"tags": ["tone"], "comparison": "Which response is kinder?", "weight": 1.0,
   "revision_request": "Rewrite the response to be kind.",
   "critique_request": "Was the assistant's last response unkind?", "description": "Be kind.", "id": "kind"},
  {"id": "brief", "weight": 2.0, "tags": [], "description": "Be brief.", "critique_request": "Was it too long?",
   "comparison": "Which response is briefer?", "revision_request": "Make it shorter."}],
 "examples": [{"revision": "Hello! How can I help?", "critique": "Rude.", "principle": "kind",
   "conversation": [{"content": "hi", "role": "user"}, {"content": "go away", "role": "assistant"}]}],
 "system_prompt": null,
 "description": "A tiny constitution for hashing.", "name": "demo"}
"""


def _load(tmp_path: Path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_constitution(path)


def test_formatting_and_key_order_do_not_change_the_hash(tmp_path: Path) -> None:
    block, flow = _load(tmp_path, BLOCK, "block.yaml"), _load(tmp_path, FLOW, "flow.yaml")
    assert block == flow
    assert block.hash == flow.hash
    assert len(block.hash) == 64 and block.short_hash == block.hash[:12]


def test_the_hash_is_pinned(tmp_path: Path) -> None:
    # Provenance columns carry this hash: a change to the hashing scheme (or a new schema field, which
    # enters every hash through its default) must be deliberate, so this pin is updated by hand.
    assert _load(tmp_path, BLOCK).hash == "99afb0ac271ec020bd52fb98d13ef41802146999995c182e7bdec42e863b6124"


def test_a_changed_principle_changes_the_hash(tmp_path: Path) -> None:
    base = _load(tmp_path, BLOCK, "base.yaml").hash
    edits = [
        ("Rewrite the response to be kind.", "Rewrite the response to be kinder."),
        ("weight: 2", "weight: 3"),
        ("tags: [tone]", "tags: [tone, style]"),
        ("comparison: Which response is briefer?", "comparison: Which response is shorter?"),
        ("id: brief", "id: short"),
        ("critique: Rude.", "critique: Very rude."),
    ]
    hashes = set()
    for old, new in edits:
        assert old in BLOCK
        hashes.add(_load(tmp_path, BLOCK.replace(old, new), "edited.yaml").hash)
    assert base not in hashes
    assert len(hashes) == len(edits)
