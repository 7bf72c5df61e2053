"""People's labels read from a run's spot-check store (the labeling page's labels), matched to the held-out prompts
and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charter.monitor.callback import GoldMonitor
from charter.monitor.gold import label_key, monitor_lines, read_labels
from charter.stats.ppi import ppi_mean
from charter.testing.loopback import LoopbackServer
from tests.monitor.test_gold_kinds import ANSWERS, _config, _rating_reply, _reward
from tests.support.rundir import RunBuilder
from tests.support.tiny_models import TOPICS


def _labelled_run(tmp_path: Path) -> Path:
    """A run whose spot-check pairs set held-out answers against rivals, labelled by alice and bob; one pair's prompt
    is no held-out prompt, and one label is a skip."""
    run_dir = tmp_path / "spot-run"
    with RunBuilder(run_dir) as run:
        run.pair("p0", "q0", ANSWERS[0], "a rival answer", text=f"Tell me about the {TOPICS[0]}")
        run.pair("p1", "q1", "another rival", ANSWERS[1], text=f"  tell me ABOUT the {TOPICS[1]} ")
        run.pair("p2", "q2", ANSWERS[2], "a third rival", text=f"Tell me about the {TOPICS[2]}")
        run.pair("p3", "q3", "x", "y", text="What is love?")
        run.spot_sample([("p0", "harm", "ab"), ("p1", "harm", "ba"), ("p2", "harm", "ab"), ("p3", "harm", "ab")])
        run.label("p0", "alice", "a", "ab", created_at=1.0)
        run.label("p0", "bob", "tie", "ab", created_at=2.0)
        run.label("p1", "alice", "a", "ba", created_at=3.0)
        run.label("p2", "alice", "skip", "ab", created_at=4.0)
        run.label("p3", "alice", "b", "ab", created_at=5.0)
    return run_dir


def test_a_run_directorys_labels_score_each_answer_by_the_share_of_its_pair_it_won(tmp_path: Path) -> None:
    labels = read_labels(_labelled_run(tmp_path))
    prompt = f"Tell me about the {TOPICS[0]}"
    assert labels[label_key(prompt, ANSWERS[0])] == pytest.approx(0.75)  # alice: it won; bob: a tie
    assert labels[label_key(prompt, "a rival answer")] == pytest.approx(0.25)
    assert labels[label_key(f"Tell me about the {TOPICS[1]}", ANSWERS[1])] == 0.0  # alice preferred its rival
    assert label_key(f"Tell me about the {TOPICS[2]}", ANSWERS[2]) not in labels  # a skip says nothing
    assert len(labels) == 6
    held = [" ".join(f"Tell me about the {t}".lower().split()) for t in TOPICS[:6]]
    assert labels.matched(held) == (4, 2)  # the pair about love answers no held-out prompt


def test_the_monitor_corrects_gold_by_the_spot_check_labels_and_says_how_many_matched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charter.monitor import callback

    monkeypatch.setattr(callback, "greedy_answers", lambda *args: list(ANSWERS))
    run_dir = _labelled_run(tmp_path)
    reward = _reward(tmp_path, rating="verdict")
    with LoopbackServer(reply=_rating_reply).start() as server:
        judge = f"openai-compatible:gold-judge@{server.openai_url}"
        monitor = GoldMonitor(_config(tmp_path, judge, labels=str(run_dir)), reward.unstored, cache=None)
        record = monitor.evaluate(None, None, 0, tmp_path / "out")
    corrected = record["people"]
    assert corrected is not None and corrected["labels"] == 2
    expected = ppi_mean([1.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0], [0.75, 0.0]).within()
    assert corrected["value"] == pytest.approx(expected.value)
    summary = monitor.summary()
    assert summary["labels"] == {"source": str(run_dir), "read": 6, "matched": 4, "prompts": 2, "held_out": 6}
    shown = "\n".join(monitor_lines(summary))
    assert f"4 of the 6 labelled answers from {run_dir} answer held-out prompts (2 of the 6" in shown
    rows = [json.loads(line) for line in (tmp_path / "out" / "monitor" / "step-0.jsonl").open()]
    assert [r.get("label") for r in rows] == [0.75, 0.0, None, None, None, None]
    reward.close()
