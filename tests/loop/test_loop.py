"""The loop: collapse metrics against hand-computed values, stop rules, data strategies, the human mix, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from charter.loop.config import LoopConfig
from charter.loop.metrics import collapse_metrics, flags
from charter.loop.run import Loop, LoopStore
from charter.providers.scripted import HARMFUL_OPENING, register_script
from charter.stats.diversity import compression_ratio, distinct_n, self_bleu


def unit_embed(texts):
    """Texts with the same first word embed to the same axis: easy to compute dispersion by hand."""
    axes = sorted({t.split()[0] for t in texts})
    out = np.zeros((len(texts), len(axes)), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i, axes.index(t.split()[0])] = 1
    return out


def test_metrics_against_hand_computed_values() -> None:
    texts = ["the cat sat on the mat", "the cat sat on the hat", "a dog ran far away"]
    assert distinct_n(texts, 1) == pytest.approx(11 / 17)
    assert distinct_n(texts, 2) == pytest.approx(10 / 14)
    m = collapse_metrics(texts, embed=unit_embed)
    assert m["vocabulary"] == 11
    assert m["mean_length"] == pytest.approx(17 / 3)
    assert m["length_std"] == pytest.approx(np.std([6, 6, 5]))
    # pairs: (1,2) same axis cos 1, (1,3) and (2,3) cos 0: mean cosine 1/3, dispersion 2/3
    assert m["dispersion"] == pytest.approx(2 / 3) and m["mean_cosine"] == pytest.approx(1 / 3)
    # the shared estimators' full set: K/3 has eigenvalues 2/3 and 1/3
    assert m["distinct_3"] == pytest.approx(8 / 11)
    assert m["vendi"] == pytest.approx(np.exp(-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))))
    assert m["compression_ratio"] == pytest.approx(compression_ratio(texts))
    assert m["length_quartiles"] == [5.5, 6.0, 6.0] and m["self_bleu"] == pytest.approx(self_bleu(texts))
    assert m["refusal_rate"] == 0
    assert collapse_metrics(["I can't help with that.", "Sure: here."], embed=unit_embed)["refusal_rate"] == 0.5
    assert self_bleu(["same words here", "same words here"]) == pytest.approx(1.0)
    assert self_bleu(["alpha beta gamma", "delta epsilon zeta"]) == pytest.approx(0.0)
    assert distinct_n([], 1) is None and self_bleu(["one"]) is None


def test_flags_are_relative_to_round_zero() -> None:
    base = {
        "distinct_1": 0.5,
        "self_bleu": 0.2,
        "dispersion": 0.4,
        "vocabulary": 100.0,
        "length_std": 5.0,
        "mean_length": 40.0,
        "refusal_rate": 0.1,
        "distinct_2": 0.8,
    }
    same = flags(base, base, 0.25)
    assert same == []
    worse = dict(base, distinct_1=0.3, self_bleu=0.5, mean_length=10.0, refusal_rate=0.9)
    raised = flags(worse, base, 0.25)
    assert raised == ["distinct-1 -40% against round 0", "self-BLEU -38% against round 0"]


ANSWERS = {"base": ["alpha one two", "beta three four", "gamma five six", "delta seven eight"]}


def varied(prompt: str) -> str:
    """A harmful-looking answer (so the scripted judge prefers the revision) with words drawn from the prompt."""
    import hashlib

    words = [hashlib.md5(f"{prompt}{i}".encode()).hexdigest()[:6] for i in range(12)]
    return f"{HARMFUL_OPENING} {prompt} {' '.join(words)} step one, step two."


class FakeLoop(Loop):
    """A loop whose policies are scripted models and whose DPO and evaluation are stand-ins with known outcomes:
    the orchestration (steps, data strategies, human mix, stop rules, resume) is what is under test."""

    wins: dict[int, float] = {}
    collapse_from: int | None = None
    fail_at: tuple[str, int] | None = None

    def __init__(self, config, calls):
        super().__init__(config, log=lambda line: None)
        self.calls = calls

    def check(self):
        pass  # scripted policies stand in for the local ones DPO would train

    def policy(self, strategy, r):
        return "scripted:cai" if r == 0 else f"scripted:loop-{self.arm(strategy, r - 1)}-{r}"

    def step_dpo(self, strategy, r, data):
        self.calls.append(("dpo", strategy, r))
        if self.fail_at == ("dpo", r):
            raise KeyboardInterrupt
        name = f"loop-{self.arm(strategy, r)}-{r + 1}"
        collapsed = self.collapse_from is not None and r + 1 >= self.collapse_from
        register_script(name, lambda m, p, c=collapsed: "same answer every time" if c else varied(m[-1].content))
        return {"output_dir": name, "rows": data["rows"]}

    def step_eval(self, strategy, r):
        self.calls.append(("eval", strategy, r))
        win = self.wins.get(r, 0.6)
        score = {"win_rate": win, "ci95": [win - 0.1, win + 0.1], "n": 8}
        return {"vs_base": score, "vs_previous": score}


@pytest.fixture
def loop_config(make_config, tmp_path):
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


@pytest.fixture(autouse=True)
def _fast_embeddings(monkeypatch):
    monkeypatch.setattr("charter.providers.embeddings.embed", unit_embed)


def test_strategies_share_round_zero_and_accumulate_grows(loop_config, tmp_path) -> None:
    calls: list = []
    FakeLoop.wins, FakeLoop.collapse_from, FakeLoop.fail_at = {}, None, None
    human = tmp_path / "human.jsonl"
    result = FakeLoop(
        loop_config(human={"path": str(human), "share": [0.5, 0.25]}, stop={"on_collapse": False}), calls
    ).run()
    assert [c for c in calls if c[0] == "dpo"] == [
        ("dpo", "replace", 0),
        ("dpo", "replace", 1),
        ("dpo", "replace", 2),
        ("dpo", "accumulate", 1),
        ("dpo", "accumulate", 2),
    ]  # round 0 is shared
    replace, accumulate = result.rounds["replace"], result.rounds["accumulate"]
    assert [r["policy"] for r in replace] == [0, 1, 2, 3]
    assert replace[1]["data"] == accumulate[1]["data"]
    assert replace[3]["data"]["from_rounds"] == [2] and accumulate[3]["data"]["from_rounds"] == [0, 1, 2]
    synthetic = lambda row: row["data"]["rows"] - row["data"]["human_rows"]  # noqa: E731
    assert synthetic(accumulate[3]) > synthetic(replace[3])
    assert replace[1]["data"]["human_rows"] / replace[1]["data"]["rows"] == pytest.approx(0.5, abs=0.1)
    assert (tmp_path / "loop" / "round-0" / "run.sqlite").exists()
    assert (tmp_path / "loop" / "accumulate" / "round-2" / "run.sqlite").exists()
    report = result.report.read_text()
    assert "## Strategy: replace" in report and "## Strategy: accumulate" in report
    assert "distinct-1" in report and (result.report.parent / "distinct_1.png").exists()
    assert "Vendi score" in report and all(row["metrics"]["vendi"] is not None for row in replace)
    # every policy on one scale: the base and the five trained ones, the base scoring 0
    assert result.ranking is not None and result.ranking["reference"] == "scripted:cai"
    ranked = {m["model"]: m for m in result.ranking["models"]}
    assert len(ranked) == 6 and ranked["scripted:cai"]["score"] == 0
    assert "## Every policy on one scale" in report and (tmp_path / "loop" / "arena" / "arena.json").exists()


def test_collapse_and_plateau_stop_the_loop(loop_config) -> None:
    calls: list = []
    FakeLoop.wins, FakeLoop.collapse_from, FakeLoop.fail_at = {}, 2, None
    result = FakeLoop(loop_config(strategies=["replace"]), calls).run()
    assert len(result.rounds["replace"]) == 3  # policies 0, 1, 2: policy 2 collapsed
    assert "collapse flag" in result.stopped["replace"] and "after round 1" in result.stopped["replace"]
    assert result.rounds["replace"][2]["flags"]

    FakeLoop.collapse_from = None
    FakeLoop.wins = {0: 0.7, 1: 0.51, 2: 0.5}
    result = FakeLoop(
        loop_config(
            strategies=["replace"], output_dir=str(result.loop_dir) + "-b", stop={"plateau": 0.05, "patience": 2}
        ),
        [],
    ).run()
    assert "below 0.55 for 2 round(s)" in result.stopped["replace"]


def test_a_killed_loop_resumes_at_the_step_it_stopped(loop_config) -> None:
    calls: list = []
    FakeLoop.wins, FakeLoop.collapse_from, FakeLoop.fail_at = {}, None, ("dpo", 1)
    config = loop_config(strategies=["replace"])
    with pytest.raises(KeyboardInterrupt):
        FakeLoop(config, calls).run()
    store = LoopStore(config.loop_dir())
    done = {(a, r, s) for a, r, s, _ in store.steps()}
    store.close()
    assert ("replace", 1, "data") in done and ("replace", 1, "dpo") not in done
    FakeLoop.fail_at = None
    again: list = []
    result = FakeLoop(config, again).run()
    assert again[0] == ("dpo", "replace", 1)  # nothing before it was done again
    assert ("dpo", "replace", 0) not in again and len(result.rounds["replace"]) == 4


def test_loop_config_errors(tmp_path) -> None:
    from charter.cli import main

    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump({"run": "x.yaml", "strategies": ["replace", "replace"]}))
    assert main(["iterate", str(path)]) == 2
