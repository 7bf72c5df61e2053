"""The prompt loader's duplicate check: ids held as 8-byte integers, the same answers as a set of the strings."""

from __future__ import annotations

import json
import random
from pathlib import Path

from charter.prompts import PromptsConfig, SeenIds, load_prompts, prompt_id


def test_seen_ids_answer_as_a_set_of_the_ids_does_across_merges(monkeypatch) -> None:
    monkeypatch.setattr(SeenIds, "LATEST", 7)  # many merges of the latest ids into the sorted array
    rng = random.Random(3)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(300)] + [
        "ffffffffffffffff",
        "0000000000000000",
        "8000000000000000",
    ]  # the ends of the range
    stream = ids + [rng.choice(ids) for _ in range(300)]
    rng.shuffle(stream)
    seen, reference = SeenIds(), set()
    for pid in stream:
        assert seen.add(pid) == (pid not in reference), pid
        reference.add(pid)
    assert len(seen.merged) + len(seen.latest) == len(reference)


def test_duplicates_are_counted_and_left_out_in_one_checking_pass(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    texts = [f"question {i % 40}" for i in range(100)]  # 40 distinct, 60 repeats
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    checked: list[str] = []
    loaded = load_prompts(
        PromptsConfig(path=str(path), limit=30), stream=True, check=lambda p: checked.append(p.prompt_id)
    )
    assert loaded.counts["prompts_duplicate"] == 60 and loaded.counts["prompts_used"] == 30
    rows = list(loaded.rows)
    assert [p.messages[0].content for p in rows] == [f"question {i}" for i in range(30)]
    assert checked == [p.prompt_id for p in rows]  # the prompts the run uses, each checked once
    assert rows[0].prompt_id == prompt_id(rows[0].messages)
