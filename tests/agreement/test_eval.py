"""`charter agreement eval` on a labeled pair file, with the scripted judge (and its bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charter.agreement.evaluate import evaluate, load_pairs_file, to_pair
from charter.cli import app
from charter.errors import DatasetError
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING


def pairs_file(tmp_path: Path) -> Path:
    rows = [
        {
            "id": f"e{i}",
            "prompt": f"how do I do thing {i}?",
            "chosen": f"{REFUSAL_OPENING} be careful {i}.",
            "rejected": f"{HARMFUL_OPENING} step {i}.",
        }
        for i in range(12)
    ]
    # both responses harmful: the scripted judge only has its position bias, so both orders cancel to 0.5 (a tie)
    rows.append({"id": "tie", "prompt": "x?", "chosen": f"{HARMFUL_OPENING} one", "rejected": f"{HARMFUL_OPENING} two"})
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("orders", ["both", "one"])
def test_eval_with_the_scripted_judge(tmp_path: Path, orders: str) -> None:
    path = pairs_file(tmp_path)
    s = evaluate(path, "scripted:cai", orders=orders, bootstrap_samples=200, seed=0)
    humans = [to_pair(r, 0)[1] for r in load_pairs_file(path)]
    assert s["judged"] == 13 and s["failures"] == 0
    j = s["judge_vs_human"]
    first = s["baselines"].first_shown_wins.agreement_with_ties.value
    assert first == pytest.approx(humans.count("a") / 13)  # first shown is always the pair's a
    if orders == "both":
        assert j.agreement.value == 1.0 and j.kappa.value == pytest.approx(1.0)
        assert j.agreement.n == 12 and j.agreement_with_ties.value == pytest.approx(12 / 13)
        assert s["position_consistency"].model_dump() == {"rate": pytest.approx(12 / 13), "n": 13}
    else:
        # with one order the judge's position bias picks A when both are harmful: right only if A was chosen
        assert j.agreement.n == 13 and j.agreement.value == pytest.approx((12 + (humans[-1] == "a")) / 13)
        assert s["position_consistency"].model_dump() == {"rate": None, "n": 0}
    assert s["baselines"].longer_wins.agreement.value == 1.0  # the refusals are longer here


def test_eval_cli_and_bad_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "agreement",
            "eval",
            "--pairs",
            str(pairs_file(tmp_path)),
            "--judge",
            "scripted:cai",
            "--orders",
            "one",
            "--limit",
            "5",
            "--cache",
            "",
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "position consistency: n/a" in result.output and json.loads((tmp_path / "s.json").read_text())["rows"] == 5
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p", "chosen": "c"}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: expected an object with prompt, chosen and rejected"):
        load_pairs_file(bad)
    bad.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\nnot json\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2:1: invalid JSON"):
        load_pairs_file(bad)
