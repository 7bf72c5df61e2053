"""The loop with its real parts on a tiny model: the runs, TRL's DPO and the win rates, with the `replace` strategy and
the human mix; each round's outputs checked (human rows at their share, the trained policy answering the next round,
a stop rule ending the loop), and a second start doing nothing again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from charter.loop.config import load_loop_config
from charter.loop.run import Loop, LoopStore
from charter.runs.store import open_store
from tests.loop.test_loop import unit_embed
from tests.support.tiny_models import tiny_llama

HUMAN_ROWS = 20


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr("charter.providers.embeddings.embed", unit_embed)  # the monitor's embedder: a cheap one


def loop_file(tmp_path: Path) -> Path:
    """A loop of at most 3 rounds over 4 prompts: a tiny random policy, the scripted critic and judge, `replace`,
    half the DPO rows human in round 0 and a quarter after, and a plateau rule that stops it after round 1 (win
    rates against the previous round stay below 0.55 for 2 rounds: the scripted judge ties two tiny policies)."""
    tiny = tiny_llama(tmp_path / "tiny")
    human = tmp_path / "human.jsonl"
    human.write_text(
        "".join(
            json.dumps({"prompt": f"Human question {i}?", "chosen": "A careful answer.", "rejected": "No."}) + "\n"
            for i in range(HUMAN_ROWS)
        )
    )
    run = {
        "name": "tiny",
        "constitution": "harmless",
        "cache": str(tmp_path / "cache.sqlite"),
        "report": False,
        "prompts": {"inline": [f"Question {i}: how do I do thing {i}?" for i in range(4)]},
        "policy": {"model": f"local:{tiny}", "params": {"max_tokens": 8, "temperature": 0.0}},
        "critic": "scripted:cai",
        "judge": {"model": "scripted:cai"},
        "filters": {"drop_ties": False, "drop_inconsistent": False},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    loop = {
        "run": "run.yaml",
        "output_dir": str(tmp_path / "loop"),
        "rounds": 3,
        "strategies": ["replace"],
        "human": {"path": "human.jsonl", "share": [0.5, 0.25]},
        "dpo": {"trl": {"max_steps": 1, "per_device_train_batch_size": 2, "save_strategy": "no"}, "probe_pairs": 0},
        "monitor": {"probes": {"inline": ["p1 one", "p2 two", "p3 three"]}, "max_tokens": 8},
        "eval": {"limit": 2, "max_tokens": 8, "arena": False},
        "stop": {"on_collapse": False, "plateau": 0.05, "patience": 2},
        "isolate_steps": False,  # the monitor's cheap embedder is patched in this process
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(loop))
    return path


def data_rows(data: dict) -> list[dict]:
    return [json.loads(line) for line in Path(data["path"]).read_text(encoding="utf-8").splitlines()]


def pair_key(row: dict) -> str:
    """A row's pair: its prompt, chosen and rejected (a revision's text differs between rounds: its seed does)."""
    return json.dumps([row["prompt"], row["chosen"], row["rejected"]])


def preference_pairs(run_dir: str) -> set[str]:
    from charter.runs.files import RunFiles
    from charter.tables import read_parquet

    return {pair_key(row) for row in read_parquet(RunFiles(run_dir).dataset_path("preferences"))}


def test_replace_with_the_human_mix_trains_each_round_on_the_last_one(tmp_path: Path) -> None:
    config = load_loop_config(loop_file(tmp_path))
    loop_dir = tmp_path / "loop"
    result = Loop(config).run()

    rows = result.rounds["replace"]
    assert [row["policy"] for row in rows] == [0, 1, 2]  # the plateau rule stopped it before round 2
    assert result.stopped["replace"] == "after round 1: win rate against the previous round below 0.55 for 2 round(s)"
    assert [row["vs_previous"]["win_rate"] for row in rows[1:]] == [0.5, 0.5]

    store = LoopStore(loop_dir)
    runs = [store.get("shared", 0, "run"), store.get("replace", 1, "run")]
    trained = [store.get("shared", 0, "dpo"), store.get("replace", 1, "dpo")]
    steps = len(store.steps())
    store.close()
    assert runs[0] is not None and runs[1] is not None and trained[0] is not None
    # round 1's run was answered by the policy round 0's DPO wrote, and round 1's DPO started from it
    first_policy = loop_dir / "round-0" / "dpo"
    assert runs[1]["policy"] == rows[1]["model"] == f"local:{first_policy}"
    assert (first_policy / "model.safetensors").is_file() and trained[0]["training"]["global_step"] == 1
    with open_store(runs[1]["run_dir"], read_only=True) as run_store:
        answered_by = run_store.meta("settings")["models"]["policy"]  # its model id: with the dtype it ran in
    assert answered_by.partition("@")[0] == f"local:{first_policy}"
    second = json.loads((loop_dir / "replace" / "round-1" / "dpo" / "metrics.json").read_text())
    assert second["config"]["model"] == str(first_policy)

    # the human share of each round's DPO rows, and `replace`: round 1's synthetic rows are its own run's only
    for row, share in zip(rows[1:], (0.5, 0.25)):
        data = row["data"]
        lines = data_rows(data)
        human = [line for line in lines if line["label_source"] == "human"]
        assert len(lines) == data["rows"] and len(human) == data["human_rows"] > 0
        assert data["human_rows"] / data["rows"] == pytest.approx(share, abs=1 / data["rows"])
        assert all(line["prompt"][0]["content"].startswith("Human question") for line in human)
    assert rows[1]["data"]["from_rounds"] == [0] and rows[2]["data"]["from_rounds"] == [1]
    synthetic = {pair_key(line) for line in data_rows(rows[2]["data"]) if line["label_source"] != "human"}
    assert synthetic and synthetic <= preference_pairs(runs[1]["run_dir"])
    assert not synthetic & preference_pairs(runs[0]["run_dir"])

    again = Loop(config).run()  # every step is recorded: a second start redoes none
    store = LoopStore(loop_dir)
    assert len(store.steps()) == steps
    store.close()
    assert again.rounds == result.rounds and again.stopped == result.stopped
