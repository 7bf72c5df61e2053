"""`charter.mix`: synthetic share, provenance kept, plain-string human rows made conversational, seeded."""

from __future__ import annotations

import pytest

from charter.errors import DatasetError
from charter.hub.export import load_preferences
from charter.mixing.mix import mix, mix_counts


@pytest.fixture(scope="module")
def charter_prefs(tmp_path_factory: pytest.TempPathFactory):
    from .conftest import build_run

    return load_preferences(build_run(tmp_path_factory.mktemp("mix") / "run", n_pairs=20, human_labels=0))


def _human_rows(n: int) -> list[dict]:
    return [
        {
            "id": f"h{i}",
            "prompt": f"human prompt {i}",
            "chosen": f"good {i}",
            "rejected": f"bad {i}",
            "label_source": "annotators",
        }
        for i in range(n)
    ]


def test_mix_hits_the_synthetic_share_and_keeps_provenance(charter_prefs) -> None:
    mixed = mix(charter_prefs, _human_rows(30), ratio=0.25, seed=0)
    synthetic = mixed.filter(lambda r: r["synthetic"])
    human = mixed.filter(lambda r: not r["synthetic"])
    assert (synthetic.num_rows, human.num_rows) == (10, 30)  # 30 human rows allow 40 rows at a 25% share
    assert set(synthetic["run_id"]) == {"run-test-0001"} and set(synthetic["label_source"]) == {"ai-judge:scripted:cai"}
    row = human[0]
    assert row["label_source"] == "annotators" and row["run_id"] is None and row["pair_id"].startswith("h")
    assert row["prompt"][0] == {"role": "user", "content": row["prompt"][0]["content"]}
    assert row["chosen"][0]["role"] == "assistant" and row["chosen"][0]["content"].startswith("good")


def test_mix_is_seeded_and_shuffled(charter_prefs) -> None:
    first = mix(charter_prefs, _human_rows(30), ratio=0.5, seed=3)
    again = mix(charter_prefs, _human_rows(30), ratio=0.5, seed=3)
    other = mix(charter_prefs, _human_rows(30), ratio=0.5, seed=4)
    assert first["pair_id"] == again["pair_id"] and first["pair_id"] != other["pair_id"]
    assert first["synthetic"] != sorted(first["synthetic"]), "rows are interleaved, not stacked"


def test_mix_with_the_shared_human_set_trains_in_trl_format(charter_prefs, shared_data) -> None:
    human = shared_data / "human_preferences" / "hhh_harmless_helpful.jsonl"
    mixed = mix(charter_prefs["train"], human, ratio=0.5, size=20, seed=0)
    assert mixed.num_rows == 20 and sum(mixed["synthetic"]) == 10
    human = mixed.filter(lambda r: not r["synthetic"])
    assert set(human["label_source"]) == {"bigbench hhh_alignment (author consensus)"}
    assert all(len(r["prompt"]) == 1 and r["rejected"][0]["role"] == "assistant" for r in human)


def test_mix_counts() -> None:
    assert mix_counts(100, 10, 0.5, None) == (10, 10)
    assert mix_counts(100, 10, 1.0, None) == (100, 0)
    assert mix_counts(3, 100, 0.0, None) == (0, 100)
    with pytest.raises(DatasetError, match="needs 8 synthetic"):
        mix_counts(5, 100, 0.8, 10)
    with pytest.raises(DatasetError, match="between 0 and 1"):
        mix_counts(5, 5, 1.5, None)


def test_human_rows_without_the_columns_are_refused(charter_prefs) -> None:
    with pytest.raises(DatasetError, match="row 0: missing column"):
        mix(charter_prefs, [{"prompt": "x", "chosen": "y"}], ratio=0.5)
