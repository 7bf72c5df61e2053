"""Two rounds of the loop end to end on the embedded SmolLM2-135M: runs, DPO, the monitor and the win rates."""

from __future__ import annotations

import pytest
import yaml

from charter.loop.config import load_loop_config
from charter.loop.run import Loop, LoopStore

pytestmark = pytest.mark.slow


def test_two_rounds_on_the_embedded_model(tmp_path) -> None:
    run = tmp_path / "run.yaml"
    tiny = {
        "model": "local:smollm2-135m-instruct",
        "params": {"temperature": 0.7, "max_tokens": 16, "seed": 0},
        "options": {"batch_size": 8},
    }
    run.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "constitution": "harmless",
                "cache": str(tmp_path / "cache.sqlite"),
                "report": False,
                "prompts": {"bundled": True, "shuffle": True, "limit": 3, "max_prompt_tokens": 256},
                "policy": tiny,
                "judge": {"model": "local:smollm2-135m-instruct", "options": {"batch_size": 8}},
                "critique": {"rounds": 1},
                "filters": {"drop_inconsistent": False},
            }
        )
    )
    loop = tmp_path / "loop.yaml"
    loop.write_text(
        yaml.safe_dump(
            {
                "run": "run.yaml",
                "output_dir": str(tmp_path / "loop"),
                "rounds": 2,
                "strategies": ["accumulate"],
                "dpo": {"trl": {"max_steps": 1, "per_device_train_batch_size": 2}, "probe_pairs": 0},
                "monitor": {"probes": {"bundled": True, "limit": 4}, "max_tokens": 16},
                "eval": {"limit": 2, "max_tokens": 16},
                "stop": {"on_collapse": False},
            }
        )
    )
    result = Loop(load_loop_config(loop)).run()
    rows = result.rounds["accumulate"]
    assert [r["policy"] for r in rows] == [0, 1, 2]
    assert rows[2]["model"] == f"local:{tmp_path / 'loop' / 'accumulate' / 'round-1' / 'dpo'}"
    assert (tmp_path / "loop" / "accumulate" / "round-1" / "dpo" / "model.safetensors").exists()
    for row in rows:
        assert row["metrics"]["distinct_1"] is not None and row["metrics"]["dispersion"] is not None
    for row in rows[1:]:
        assert row["vs_base"]["n"] == 2 and row["vs_previous"]["n"] == 2
        assert row["data"]["rows"] > 0
    assert rows[2]["data"]["from_rounds"] == [0, 1]
    assert "| 2 |" in result.report.read_text()
    store = LoopStore(tmp_path / "loop")
    # policy 0's monitor, then run, data, dpo, monitor, eval per round, then the arena of the three policies
    assert len(store.steps()) == 1 + 2 * 5 + 1
    assert result.ranking is not None and len(result.ranking["models"]) == 3
    store.close()
