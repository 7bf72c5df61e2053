"""The length-controlled win rate (AlpacaEval 2.0's logistic model with a length term): a judge that favours longer
answers is not allowed to decide the win rate; a length-neutral judge's rate is left as it is. Simulated answers
(numpy, seeded) and one run of `charter eval winrate` with scripted models."""

import hashlib
import json
import math

import numpy as np
import pytest

from charter.cli import main
from charter.evals.winrate import length_controlled
from charter.judge_prompt import read_comparison
from charter.providers import register_script
from tests.support.tiny_models import write_jsonl

N = 400


def _p_longer(a: str, b: str) -> float:
    """A judge that favours the longer answer, more the longer it is: P(A better) = sigmoid(2.2 tanh((|A|-|B|)/300))."""
    return 1 / (1 + math.exp(-2.2 * math.tanh((len(a) - len(b)) / 300)))


def _answers(seed: int, padding: float) -> tuple[list[str], list[str]]:
    """Base answers of 300-900 characters; the candidate's of the same content, padded by about `padding`."""
    rng = np.random.default_rng(seed)
    base = ["b" * int(n) for n in rng.integers(300, 900, N)]
    candidate = ["c" * max(1, int(len(b) + d)) for b, d in zip(base, rng.normal(padding, 300, N))]
    return candidate, base


@pytest.mark.parametrize("seed", range(5))
def test_a_padded_candidate_wins_raw_but_not_length_controlled(seed: int) -> None:
    candidate, base = _answers(seed, padding=500)
    p = [_p_longer(c, b) for c, b in zip(candidate, base)]
    longer = [c for c, b in zip(candidate, base) if len(c) != len(b)]
    prefers_longer = np.mean([max(x, 1 - x) for x, c, b in zip(p, candidate, base) if len(c) != len(b)])
    assert longer and prefers_longer == pytest.approx(0.85, abs=0.03)  # the judge's taste for length
    found = length_controlled(p, candidate, base, bootstrap=200, seed=seed)
    assert found["raw"] is not None and found["raw"] >= 0.8
    assert found["win_rate"] == pytest.approx(0.5, abs=0.05)
    assert found["length_coefficient"] is not None and found["length_coefficient"] > 1
    assert found["ci95"] is not None and found["ci95"][0] <= found["win_rate"] <= found["ci95"][1]


@pytest.mark.parametrize("seed", range(5))
def test_a_length_neutral_judge_keeps_its_rate(seed: int) -> None:
    candidate, base = _answers(seed, padding=0)
    rng = np.random.default_rng(100 + seed)
    p = list(np.clip(rng.normal(0.65, 0.15, N), 0.01, 0.99))  # prefers the candidate, whatever the lengths
    found = length_controlled(p, candidate, base, bootstrap=200, seed=seed)
    assert found["raw"] is not None and found["win_rate"] is not None
    assert abs(found["win_rate"] - found["raw"]) <= 0.02


def test_too_few_judgments_or_equal_lengths_say_why() -> None:
    assert "at least 10" in (length_controlled([0.6] * 3, ["a"] * 3, ["b"] * 3)["note"] or "")
    equal = length_controlled([0.6] * 20, ["aa"] * 20, ["b"] * 20)
    assert equal["win_rate"] is None and "never varies" in (equal["note"] or "")


def _sized(messages, params) -> str:  # noqa: ANN001 - a base answer of 300-900 characters, by prompt
    digest = int(hashlib.sha256(messages[-1].content.encode()).hexdigest(), 16)
    return "b" * (300 + digest % 600)


def _padded(messages, params) -> str:  # noqa: ANN001 - the same answer, padded by 0 to 590 characters
    digest = int(hashlib.sha256(messages[-1].content.encode()).hexdigest(), 16)
    return _sized(messages, params) + " and so on" * (digest % 60)


def _length_judge(messages, options):  # noqa: ANN001, ANN202
    a, b = read_comparison(messages[-1].content) or ("", "")
    p_a = _p_longer(a, b)
    return {o: {"A": p_a, "B": 1 - p_a}.get(o, 0.0) for o in options}


register_script("lc-base", _sized)
register_script("lc-padded", _padded)
register_script("lc-length-judge", lambda m, p: "A", _length_judge)


def test_charter_eval_winrate_reports_the_length_controlled_rate(tmp_path) -> None:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Explain topic {i}."} for i in range(40)])
    out = tmp_path / "winrate.json"
    args = ["eval", "winrate", "--base", "scripted:lc-base", "--candidate", "scripted:lc-padded"]
    assert main([*args, "--prompts", str(prompts), "--judge", "scripted:lc-length-judge", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    lc = summary["length_controlled"]
    assert summary["win_rate"] > 0.9 and lc["longer_rate"] > 0.9 and lc["n"] == 40
    assert lc["raw"] > 0.7 and lc["win_rate"] < lc["raw"] - 0.1 and lc["length_coefficient"] > 0
    assert "Length-controlled win rate" in out.with_suffix(".md").read_text(), lc


def test_people_s_labels_on_some_comparisons_give_the_ppi_win_rate(tmp_path) -> None:
    """The length-loving judge gives the padded candidate a high win rate; people, who prefer it on about half the
    prompts, label a random half of the comparisons."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Explain topic {i}."} for i in range(60)])
    out = tmp_path / "winrate.json"
    args = ["eval", "winrate", "--base", "scripted:lc-base", "--candidate", "scripted:lc-padded", "--limit", "60"]
    args += ["--prompts", str(prompts), "--judge", "scripted:lc-length-judge", "--out", str(out)]
    assert main(args) == 0
    pairs = [json.loads(line) for line in out.with_suffix(".pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 60 and all(r["p_candidate"] is not None for r in pairs)
    people = {r["pair_id"]: int(hashlib.sha256(r["prompt"].encode()).hexdigest(), 16) % 2 for r in pairs}
    labelled = np.random.default_rng(0).choice(60, 30, replace=False)
    rows = [{**pairs[i], "preferred": "candidate" if people[pairs[i]["pair_id"]] else "base"} for i in labelled]
    rows.append({"prompt": "never asked", "candidate": "x", "base": "y", "preferred": "tie"})
    labels = write_jsonl(tmp_path / "labels.jsonl", rows)
    assert main([*args, "--human-labels", str(labels)]) == 0
    summary = json.loads(out.read_text())
    found, truth = summary["human_labels"], float(np.mean(list(people.values())))
    assert found["labels"] == 31 and found["matched"] == 30 and "1 of 31 labels" in found["note"]
    assert (
        found["ppi"]["low"] <= truth <= found["ppi"]["high"]
        and found["human"]["low"] <= truth <= found["human"]["high"]
    )
    assert summary["win_rate"] > 0.9 and summary["win_rate"] > found["ppi"]["high"]  # the judge alone is far off
    assert "prediction-powered" in out.with_suffix(".md").read_text()


def test_a_bad_label_row_is_one_clear_line(tmp_path, capsys) -> None:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Explain."}])
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"prompt": "p", "candidate": "c", "base": "b", "preferred": "A"}])
    args = ["eval", "winrate", "--base", "scripted:lc-base", "--candidate", "scripted:lc-padded", "--prompts"]
    assert main([*args, str(prompts), "--judge", "scripted:lc-length-judge", "--human-labels", str(labels)]) == 2
    assert "labels.jsonl: row 1: preferred: must be candidate, base or tie, got 'A'" in capsys.readouterr().err
