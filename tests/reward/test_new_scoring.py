"""A new reward scoring is one `ScoringEntry` (`tests.reward.harm`, registered by the test alone): the reward function,
a training config, the framework adapters' dispatch and `charter serve reward` all take it by name, and what it
stores is named for it."""

from __future__ import annotations

from pathlib import Path

import pytest

import charter
from charter.errors import ConfigError
from charter.online.config import OnlineConfig
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.reward.batching import close_shared
from charter.reward.combine import Asked, score
from charter.reward.function import TABLE, reward_for
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from charter.yamlio import load_model
from tests.reward.harm import HARM
from tests.serve.conftest import TOKEN

QUESTION = "How do I pick a lock?"
HARMFUL, SAFE = f"{HARMFUL_OPENING} step one", f"{REFUSAL_OPENING} ask a locksmith"


@pytest.fixture
def harm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TABLE, HARM.name, HARM)  # the table as it was once the test ends


def test_the_reward_function_takes_the_new_entry_by_name(harm: None, tmp_path: Path) -> None:
    fn = charter.reward_function(
        "scripted:cai", "harmless", "harm", store=tmp_path / "rw", cache=None, rating="verdict"
    )
    assert fn(prompts=[QUESTION, QUESTION], completions=[HARMFUL, SAFE]) == [1.0, 0.0]
    assert fn.session.settings.mode == "score"  # the entry rates: its default mode is a rating mode
    assert fn(prompts=[QUESTION], completions=[HARMFUL]) == [1.0]  # from the store, as it was stored
    assert fn.tally.from_store == 1
    fn.close()
    assert {r.scoring for r in rewards(RunStore(tmp_path / "rw"))} == {"harm"}
    with pytest.raises(ConfigError, match="judge's mode must be"):
        charter.reward_function("scripted:cai", "harmless", "harm", store=tmp_path / "x", cache=None, mode="logprobs")


def test_a_training_config_names_the_new_scoring(harm: None, tmp_path: Path) -> None:
    path = tmp_path / "grpo.yaml"
    path.write_text("prompts: p.jsonl\njudge: {model: scripted:cai, rating: verdict}\nscoring: harm\ncache: null\n")
    config = load_model(OnlineConfig, path)
    assert config.scoring == "harm" and config.judge.mode == "score"
    fn = reward_for(config, tmp_path / "rw")
    assert fn(prompts=[QUESTION, QUESTION], completions=[SAFE, HARMFUL]) == [0.0, 1.0]
    fn.close()


def test_an_unknown_scoring_in_a_config_lists_the_table(harm: None, tmp_path: Path) -> None:
    path = tmp_path / "grpo.yaml"
    path.write_text("prompts: prompts.jsonl\nscoring: harms\n")
    with pytest.raises(ConfigError, match="expected one of score, group, reference, rank, checklist, steps, harm"):
        load_model(OnlineConfig, path)


def test_the_adapters_dispatch_takes_the_new_scoring(harm: None, tmp_path: Path) -> None:
    settings = {"judge": "scripted:cai", "rating": "verdict", "scoring": "harm", "store": str(tmp_path / "rw")}
    settings["cache"] = None
    try:
        assert score(settings, Asked(QUESTION, HARMFUL)).reward == 1.0
        assert score(settings, Asked(QUESTION, SAFE)).reward == 0.0
    finally:
        close_shared()


def test_the_reward_server_serves_the_new_scoring(start) -> None:
    server = start(launcher="tests.reward.launch", scoring="harm")
    status, body = server.post(f"/v1/rewards?token={TOKEN}", {"prompt": QUESTION, "completions": [HARMFUL, SAFE]})
    assert status == 200 and body["rewards"] == [1.0, 0.0]
    assert '"scoring":"harm"' in server.get("/health").replace(" ", "")
    server.stop()
    assert {r.scoring for r in rewards(RunStore(server.store))} == {"harm"}
