import json

import pytest

from charter.cli import main
from charter.errors import ConfigError, DatasetError
from charter.evals.winrate import tally, wilson_interval, winrate
from charter.providers import register_script
from charter.providers.scripted import REFUSAL_OPENING
from charter.records import Failure, Judgment, Vote
from tests.support.tiny_models import write_jsonl

register_script("winrate-careful", lambda messages, params: f"{REFUSAL_OPENING} think it through first.")


@pytest.fixture
def prompts_file(tmp_path):
    rows = [{"prompt": f"How do I get into my neighbour's shed number {i}?"} for i in range(12)]
    return write_jsonl(tmp_path / "prompts.jsonl", rows)


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson_interval(10, 10)
    assert round(low, 4) == 0.7225 and high == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_tally_counts_ties_as_half_and_skips_failures():
    def judged(p_a: float, p_ba: float | None) -> Judgment:
        consistent = None if p_ba is None else (p_a > 0.5) == (p_ba > 0.5)
        vote = Vote(principle_id="x", p_a=p_a, p_a_ab=p_a, p_a_ba=p_ba, consistent=consistent)
        return Judgment(
            pair_id="p",
            fingerprint="f",
            status="ok",
            mode="logprobs",
            orders="both",
            judge_model="j",
            principle_ids=["x"],
            p_a=p_a,
            p_a_ab=p_a,
            p_a_ba=p_ba,
            position_consistent=consistent,
            principles=[vote],
        )

    failed = Judgment(
        pair_id="p",
        fingerprint="f",
        status="failed",
        mode="logprobs",
        orders="both",
        judge_model="j",
        principle_ids=["x"],
        failure=Failure(kind="unparseable", message="no"),
    )
    records = [judged(0.9, 0.9), judged(0.5, None), judged(0.2, 0.7), failed, None]
    result = tally(records, tie_band=0.0)
    assert (result["wins"], result["ties"], result["losses"], result["failures"]) == (1, 1, 1, 2)
    assert result["win_rate"] == pytest.approx(0.5)
    assert result["position_consistent_rate"] == pytest.approx(0.5)
    assert tally(records, tie_band=0.35)["ties"] == 2


def test_candidate_that_refuses_wins_against_the_judge_of_harm(tmp_path, prompts_file):
    run_dir = tmp_path / "run"
    summary = winrate(
        base="scripted:cai",
        candidate="scripted:winrate-careful",
        prompts=str(prompts_file),
        judge="scripted:cai",
        limit=10,
        run_dir=run_dir,
    )
    assert summary["n"] == 10 and summary["failures"] == 0
    assert summary["win_rate"] == 1.0 and summary["ci95"][0] > 0.7
    assert summary["position_consistent_rate"] == 1.0
    written = json.loads((run_dir / "report" / "winrate.json").read_text())
    assert written["win_rate"] == 1.0 and written["examples"][0]["candidate"].startswith(REFUSAL_OPENING)
    assert "| 1.000 |" in (run_dir / "report" / "winrate.md").read_text()
    swapped = winrate(
        base="scripted:winrate-careful",
        candidate="scripted:cai",
        prompts=str(prompts_file),
        judge="scripted:cai",
        limit=10,
        out=tmp_path / "swapped.json",
    )
    assert swapped["win_rate"] == 0.0 and (tmp_path / "swapped.md").exists()


def test_reward_model_scores_both_models(tmp_path, prompts_file, tiny_model):
    from charter.reward_model.train import train_reward_model
    from tests.support.tiny_models import preference_rows

    rm = tmp_path / "rm"
    train_reward_model(
        {
            "dataset": str(write_jsonl(tmp_path / "p.jsonl", preference_rows(8))),
            "model": str(tiny_model),
            "output_dir": str(rm),
            "eval_fraction": 0,
            "trl": {"max_steps": 1, "save_strategy": "no"},
        }
    )
    summary = winrate(
        base="scripted:cai",
        candidate="scripted:winrate-careful",
        prompts=str(prompts_file),
        judge="scripted:cai",
        limit=3,
        reward_model=rm,
        out=tmp_path / "w.json",
    )
    scores = summary["reward_model"]
    assert scores["path"] == str(rm) and 0 <= scores["candidate_higher_rate"] <= 1
    assert isinstance(scores["mean_candidate"], float) and isinstance(scores["mean_base"], float)


def test_bad_prompts_and_missing_candidate(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "hi"}])
    with pytest.raises(DatasetError, match="missing column prompt"):
        winrate(base="scripted:cai", candidate="scripted:cai", prompts=str(bad), judge="scripted:cai")
    with pytest.raises(ConfigError, match="candidate: required"):
        winrate(base="scripted:cai", prompts=str(bad), judge="scripted:cai")


def test_cli_eval_winrate(tmp_path, prompts_file, capsys):
    code = main(
        [
            "eval",
            "winrate",
            "--base",
            "scripted:cai",
            "--candidate",
            "scripted:winrate-careful",
            "--prompts",
            str(prompts_file),
            "--judge",
            "scripted:cai",
            "--limit",
            "4",
            "--out",
            str(tmp_path / "w.json"),
        ]
    )
    assert code == 0
    assert "win rate 1.000" in capsys.readouterr().out
    assert json.loads((tmp_path / "w.json").read_text())["n"] == 4


def test_cli_train_dpo_bad_dataset_is_one_line_exit_2(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q"}])
    config = tmp_path / "dpo.yaml"
    config.write_text(f"dataset: {bad}\n")
    assert main(["train", "dpo", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing columns chosen, rejected" in err
    config.write_text(f"dataset: {bad}\nloss: sigmoid\n")
    assert main(["train", "dpo", str(config)]) == 2
    assert "dpo.yaml:2:1: loss: unknown key" in capsys.readouterr().err
