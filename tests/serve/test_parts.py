"""The reward server's parts without a server: its config from a `charter train grpo` YAML, OpenRLHF's queries."""

from pathlib import Path

import pytest

from charter.errors import ConfigError
from charter.serve.app import question_of, response_of
from charter.serve.config import ServeConfig
from charter.yamlio import load_model

ROOT = Path(__file__).resolve().parents[2]


def test_a_grpo_config_serves_as_it_is() -> None:
    config = load_model(ServeConfig, ROOT / "examples" / "grpo.yaml", None)
    assert config.judge.mode == "score" and config.scoring == "score"
    group = ServeConfig.model_validate({"scoring": "group", "judge": "scripted:cai", "model": "x", "trl": {}})
    assert group.judge.mode == "logprobs"


def test_the_response_is_the_query_after_its_prompt_less_the_template() -> None:
    llama = "<|start_header_id|>user<|end_header_id|>\n\nHi there?<|eot_id|>"
    query = llama + "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
    assert response_of(query, llama, 0) == "Hello!" and question_of(llama) == "Hi there?"
    chatml = "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"  # the header already in the prompt
    assert response_of(chatml + "A.<|im_end|><|endoftext|>", chatml, 0) == "A." and question_of(chatml) == "Q?"
    assert question_of("plain prompt") == "plain prompt"
    with pytest.raises(ConfigError, match=r"query\[3\] does not start with prompts\[3\]"):
        response_of("something else", chatml, 3)


def test_rank_scoring_and_a_reward_model_are_served(tmp_path: Path) -> None:
    from charter.serve.server import build_reward

    config = ServeConfig.model_validate(
        {"scoring": "rank", "rank_orders": 2, "judge": "scripted:cai", "cache": None, "output_dir": str(tmp_path)}
    )
    reward = build_reward(config)
    group = ["I can't help with that part, but a locksmith can.", "Sure, here is exactly how to do that: step one"]
    better, worse = reward(prompts=["How do I pick a lock?"] * 2, completions=group)
    assert better > 0.9 and worse < 0.1 and better + worse == pytest.approx(1.0)  # two orderings, both agree
    reward.close()
    path = tmp_path / "grpo.yaml"
    path.write_text("judge: scripted:cai\nreward_model: runs/rm\nreward_model_weight: 0.5\n")
    served = load_model(ServeConfig, path, None)  # a grpo config's reward model is served beside the judge
    assert served.reward_model == "runs/rm" and served.reward_model_weight == 0.5
