"""A gold panel: several gold judges scoring every held-out answer, pooled by the judge panels' rule; a member's
failure is recorded per member and fails that answer's gold score; a member that is the training judge is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import charter
from charter.errors import ConfigError, ConfigFieldError
from charter.monitor.callback import GoldMonitor
from charter.monitor.gold import GoldEvaluator, GoldScore, MonitorConfig, monitor_lines, panel_gold, refuse_same_judge
from charter.online.config import OnlineConfig
from charter.testing.loopback import LoopbackServer
from tests.support.tiny_models import TOPICS

ANSWERS = ["GOOD the weather", "GOOD course", "plain bus", "GOOD book"]
RATING = {"mode": "score", "rating": "verdict", "principles_per_pair": 1}


def _reply(body: dict) -> str:
    """Judge `gold-a` gives 5 to an answer marked GOOD and 1 otherwise; judge `gold-b` gives 3 to every answer but
    `plain bus`, which it does not score."""
    text = body["messages"][-1]["content"]
    if body["model"] == "gold-a":
        return "5" if "GOOD" in text else "1"
    return "I would rather not say." if "plain bus" in text else "3"


def _held(tmp_path: Path) -> Path:
    path = tmp_path / "held.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Tell me about the {t}"}) + "\n" for t in TOPICS[:4]))
    return path


def test_the_panels_gold_is_its_members_mean_and_a_members_failure_fails_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter.monitor import callback

    monkeypatch.setattr(callback, "greedy_answers", lambda *args: list(ANSWERS))
    reward = charter.reward_function(
        "scripted:cai", "harmless", store=tmp_path / "rewards", cache=None, rating="verdict"
    )
    with LoopbackServer(reply=_reply).start() as server:
        models = [f"openai-compatible:gold-a@{server.openai_url}", f"openai-compatible:gold-b@{server.openai_url}"]
        config = MonitorConfig.model_validate(
            {"prompts": str(_held(tmp_path)), "gold": {"constitution": "harmless", "models": models, "rating": RATING}}
        )
        monitor = GoldMonitor(config, reward.unstored, cache=None)
        record = monitor.evaluate(None, None, 0, tmp_path / "out")
    assert record["gold_n"] == 3 and record["gold_failures"] == 1  # `plain bus`: gold-b gave no score
    assert record["gold"] == pytest.approx((1.0 + 0.5) / 2)  # gold-a 1.0, gold-b 0.5 on each GOOD answer
    assert record["member_failures"] == {models[0]: 0, models[1]: 1}
    rows = [json.loads(line) for line in (tmp_path / "out" / "monitor" / "step-0.jsonl").open()]
    failed = rows[2]
    assert failed["gold"] is None and failed["gold_failure"].startswith(f"panel member {models[1]}: ")
    assert failed["gold_members"][models[0]] == {"score": 0.0, "failure": None}  # kept, never read as the score
    assert failed["gold_members"][models[1]]["score"] is None
    summary = monitor.summary()
    assert summary["gold"].startswith(f"a panel of {models[0]} + {models[1]} rating under `harmless`")
    assert f"{models[1]} 1" in "\n".join(monitor_lines(summary))
    reward.close()


def test_weights_pool_the_members_as_the_judge_panels_do() -> None:
    a = [GoldScore(1.0), GoldScore(0.0)]
    b = [GoldScore(0.0), GoldScore(0.0)]
    pooled = panel_gold({"a": a, "b": b}, [3, 1])
    assert pooled[0].score == pytest.approx(0.75) and pooled[1].score == 0.0
    assert pooled[0].members == {"a": a[0], "b": b[0]}
    assert panel_gold({"a": a, "b": [GoldScore(None, "call failed"), b[1]]}, None)[0].failure == (
        "panel member b: call failed"
    )


@pytest.mark.parametrize(
    ("gold", "message"),
    [
        ({"models": ["scripted:a"]}, "a panel needs two or more gold judges"),
        ({"models": ["scripted:a", "scripted:a"]}, "scripted:a is on the panel twice"),
        ({"models": ["scripted:a", "scripted:b"], "judge": "scripted:c"}, "set judge or models"),
        ({"models": ["scripted:a", "scripted:b"], "weights": [1]}, "give 2 weights"),
        ({"judge": "scripted:a", "weights": [1, 2]}, "weights are for a panel"),
    ],
)
def test_a_bad_panel_is_one_line(gold: dict, message: str) -> None:
    with pytest.raises(ConfigFieldError, match=message):
        MonitorConfig(prompts="held.jsonl", gold={"constitution": "harmless", **gold})


def test_a_panel_member_that_is_the_training_judge_is_refused(tmp_path: Path) -> None:
    members = ["scripted:constant", "scripted:cai"]
    panel = GoldEvaluator(constitution="harmless", models=members, rating={"mode": "score"})
    reward = charter.reward_function("scripted:cai", "harmless", store=tmp_path / "r", cache=None, mode="score")
    with pytest.raises(ConfigError, match=r"monitor: the gold panel's member scripted:cai is the training judge"):
        refuse_same_judge(panel, reward.unstored, "monitor")
    reward.close()
    base = {"prompts": {"inline": ["q"]}, "judge": {"model": "scripted:cai", "mode": "score"}}
    gold = {"constitution": "harmless", "models": ["scripted:constant", "scripted:cai"], "rating": {"mode": "score"}}
    with pytest.raises(ConfigFieldError, match=r"monitor.gold.models\[1\]: the gold panel's member scripted:cai"):
        OnlineConfig(**base, monitor={"prompts": "held.jsonl", "gold": gold})
    apart = {**gold, "models": ["scripted:constant", "scripted:other"]}
    mitigated = {"panel": {"judges": ["scripted:other"]}}
    with pytest.raises(ConfigFieldError, match=r"member scripted:other is the training judge"):
        OnlineConfig(**base, mitigations=mitigated, monitor={"prompts": "held.jsonl", "gold": apart})
    assert OnlineConfig(**base, monitor={"prompts": "held.jsonl", "gold": apart}).monitor is not None
