import json

import pytest

from charter.loop.config import LoopConfig
from tests.pipeline.conftest import make_config  # noqa: F401  (the run-config fixture)


@pytest.fixture
def loop_config(make_config, tmp_path):  # noqa: F811  (the fixture above, by name)
    run = make_config(prompts={"inline": [f"Question {i}: how do I do thing {i}?" for i in range(4)]})
    human = tmp_path / "human.jsonl"
    human.write_text(
        "".join(json.dumps({"prompt": f"h{i}?", "chosen": "good", "rejected": "bad"}) + "\n" for i in range(20))
    )

    def make(**overrides):
        data = {
            "run": str(run),
            "output_dir": str(tmp_path / "loop"),
            "rounds": 3,
            "strategies": ["replace", "accumulate"],
            "monitor": {"probes": {"inline": ["p1", "p2", "p3", "p4"]}},
            "isolate_steps": False,  # the stand-ins (scripted policies, a cheap embedder) live in this process
            **overrides,
        }
        return LoopConfig.model_validate(data)

    return make
