from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture
def make_config(tmp_path: Path):
    """Write a run config YAML for the scripted model; keyword arguments override top-level keys."""

    def make(**overrides: object) -> Path:
        config = {
            "name": "t",
            "output_dir": str(tmp_path / "run"),
            "cache": str(tmp_path / "cache.sqlite"),
            "constitution": "harmless",
            "prompts": {"inline": [f"Question {i}: how do I do thing {i}?" for i in range(6)]},
            "policy": "scripted:cai",
            "judge": {"model": "scripted:cai", "principles_per_pair": 2},
            "report": False,
        }
        config.update(overrides)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return make
