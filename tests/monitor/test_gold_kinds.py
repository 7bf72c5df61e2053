"""Two more gold evaluators: another judge rating the held-out answers under a constitution (refused when it is the
training judge itself), and people's labels of some answers correcting the gold estimate by PPI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import charter
from charter.errors import ConfigError, ConfigFieldError, DatasetError
from charter.monitor.callback import GoldMonitor, _logs
from charter.monitor.gold import (
    GoldEvaluator,
    GoldScore,
    MonitorConfig,
    label_key,
    monitor_lines,
    people_corrected,
    read_labels,
    refuse_same_judge,
)
from charter.online.config import OnlineConfig
from charter.stats.ppi import ppi_mean
from charter.testing.loopback import LoopbackServer
from tests.support.tiny_models import TOPICS

ANSWERS = ["GOOD the weather", "GOOD course", "plain bus", "GARBLED", "GOOD book", "plain"]


def _rating_reply(body: dict) -> str:
    """A gold judge in mode score (verdict reading): 5 for a response marked GOOD, 1 otherwise, nothing readable for
    a GARBLED one."""
    text = body["messages"][-1]["content"]
    if "GARBLED" in text:
        return "I would rather not say."
    return "5" if "GOOD" in text else "1"


def _held(tmp_path: Path) -> Path:
    path = tmp_path / "held.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Tell me about the {t}"}) + "\n" for t in TOPICS[:6]))
    return path


def _config(tmp_path: Path, judge: str, **gold: object) -> MonitorConfig:
    rating = {"mode": "score", "rating": "verdict", "principles_per_pair": 1}
    return MonitorConfig.model_validate(
        {
            "prompts": str(_held(tmp_path)),
            "gold": {"constitution": "harmless", "judge": judge, "rating": rating, **gold},
        }  # fmt: skip
    )


def _reward(tmp_path: Path, judge: str = "scripted:cai", **settings: object) -> charter.RewardFunction:
    return charter.reward_function(judge, "harmless", store=tmp_path / "rewards", cache=None, **settings)


def test_another_judge_rates_each_answer_on_0_to_1_and_a_failed_rating_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter.monitor import callback

    monkeypatch.setattr(callback, "greedy_answers", lambda *args: list(ANSWERS))
    reward = _reward(tmp_path, rating="verdict")
    with LoopbackServer(reply=_rating_reply).start() as server:
        judge = f"openai-compatible:gold-judge@{server.openai_url}"
        monitor = GoldMonitor(_config(tmp_path, judge), reward.unstored, cache=str(tmp_path / "cache.sqlite"))
        record = monitor.evaluate(None, None, 0, tmp_path / "out")
        assert record["gold_n"] == 5 and record["gold_failures"] == 1  # GARBLED: unread, never scored
        assert record["gold"] == pytest.approx(3 / 5)  # 5 -> 1.0, 1 -> 0.0 on the unit scale
        assert record["gold_low"] is not None and record["gold_low"] < 0.6 < record["gold_high"]
        assert record["people"] is None
        hits = server.hits
        again = monitor.evaluate(None, None, 1)
        assert server.hits == hits and again["cached"] == record["calls"] > 0  # the call cache answers
    rows = [json.loads(line) for line in (tmp_path / "out" / "monitor" / "step-0.jsonl").open()]
    assert rows[3]["gold"] is None and "no score" in rows[3]["gold_failure"]
    assert "rating under `harmless`" in monitor.summary()["gold"]
    reward.close()


def test_the_training_judge_with_the_same_prompt_and_settings_is_refused_as_gold(tmp_path: Path) -> None:
    same = GoldEvaluator(constitution="harmless", judge="scripted:cai", rating={"mode": "score"})
    reward = _reward(tmp_path, mode="score")
    with pytest.raises(ConfigError, match=r"monitor: the gold judge is the training judge \(scripted:cai"):
        refuse_same_judge(same, reward.unstored, "monitor")
    other_prompt = GoldEvaluator(constitution="helpful-honest", judge="scripted:cai", rating={"mode": "score"})
    refuse_same_judge(other_prompt, reward, "monitor")  # another constitution: another prompt
    scale = GoldEvaluator(constitution="harmless", judge="scripted:cai", rating={"mode": "score", "scale": 7})
    refuse_same_judge(scale, reward, "monitor")  # another order of scores: another judge
    refuse_same_judge(same, lambda **kw: [], "monitor")  # a user's own reward: nothing to compare
    reward.close()
    other = _reward(tmp_path, judge="scripted:constant", mode="score")
    refuse_same_judge(same, other, "monitor")  # another model
    other.close()


def test_an_online_config_refuses_its_own_judge_as_gold_in_one_line() -> None:
    base = {"prompts": {"inline": ["q"]}, "judge": {"model": "scripted:cai", "mode": "score"}}
    monitor = {"prompts": "held.jsonl", "gold": {"constitution": "harmless", "judge": "scripted:cai",
                                                 "rating": {"mode": "score"}}}  # fmt: skip
    with pytest.raises(ConfigFieldError, match="monitor.gold.judge: the gold judge is the training judge"):
        OnlineConfig(**base, monitor=monitor)
    other = {**monitor, "gold": {**monitor["gold"], "constitution": "helpful-honest"}}
    assert OnlineConfig(**base, monitor=other).monitor is not None


def test_people_corrected_gold_is_ppi_on_the_gold_scores_and_the_labels() -> None:
    gold = [GoldScore(s) for s in (1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0)] + [GoldScore(None, "call failed")]
    labels: list[float | None] = [1.0, 1.0, 0.0, 1.0, None, None, None, None, 1.0]  # the failed one is not used
    got = people_corrected(gold, labels)
    expected = ppi_mean([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0])
    assert got["labels"] == 4 and got["gold_n"] == 8
    assert got["value"] == pytest.approx(expected.within().value)
    assert got["low"] == pytest.approx(max(expected.low, 0.0)) and got["high"] == pytest.approx(min(expected.high, 1))
    one = people_corrected(gold, [1.0] + [None] * 8)
    assert one["value"] is None and one["labels"] == 1  # one label gives no interval: no estimate, counted


def test_people_labels_are_read_by_prompt_and_answer_and_a_bad_row_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": "Tell me  about the Weather"}],
                                "answer": "GOOD  the weather", "label": 1}) + "\n")  # fmt: skip
    labels = read_labels(path)
    assert labels == {label_key("tell me about the weather", "good the weather"): 1.0}
    path.write_text(json.dumps({"prompt": "q", "answer": "a", "label": 1}) + "\n"
                    + json.dumps({"prompt": "q", "answer": "b", "label": 3}) + "\n")  # fmt: skip
    with pytest.raises(DatasetError, match=r"labels.jsonl: row 1: label: expected a number within 0..1, got 3"):
        read_labels(path)
    path.write_text(json.dumps({"prompt": "q", "label": 1}) + "\n")
    with pytest.raises(DatasetError, match=r"labels.jsonl: row 0: answer: missing"):
        read_labels(path)


def test_the_monitor_corrects_gold_by_peoples_labels_where_they_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter.monitor import callback

    answers = iter([list(ANSWERS), ["other"] * 6])
    monkeypatch.setattr(callback, "greedy_answers", lambda *args: next(answers))
    people = {0: 1.0, 1: 0.0, 2: 0.0, 4: 1.0}  # a person disagrees with the gold judge on answer 1
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Tell me about the {TOPICS[i]}", "answer": ANSWERS[i],
                                        "label": label}) + "\n" for i, label in people.items()))  # fmt: skip
    reward = _reward(tmp_path, rating="verdict")
    with LoopbackServer(reply=_rating_reply).start() as server:
        judge = f"openai-compatible:gold-judge@{server.openai_url}"
        monitor = GoldMonitor(_config(tmp_path, judge, labels=str(path)), reward.unstored, cache=None)
        first = monitor.evaluate(None, None, 0, tmp_path / "out")
        second = monitor.evaluate(None, None, 1)
    corrected = first["people"]
    assert corrected is not None and corrected["labels"] == 4 and corrected["gold_n"] == 5
    expected = ppi_mean([1.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]).within()
    assert corrected["value"] == pytest.approx(expected.value) and corrected["low"] == pytest.approx(expected.low)
    assert second["people"] is not None and second["people"]["labels"] == 0 and second["people"]["value"] is None
    assert _logs(first)["monitor/labels"] == 4.0 and "monitor/gold_people" not in _logs(second)
    rows = [json.loads(line) for line in (tmp_path / "out" / "monitor" / "step-0.jsonl").open()]
    assert [r.get("label") for r in rows] == [1.0, 0.0, 0.0, None, 1.0, None]
    assert "people's labels" in monitor.summary()["gold"]
    shown = "\n".join(monitor_lines(monitor.summary()))
    assert f"step 0: {corrected['value']:.3f}" in shown and "from 4 labels" in shown and "step 1: n/a from 0" in shown
    reward.close()
