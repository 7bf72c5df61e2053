"""Mitigations against judge gaming (`mitigations` in `charter train grpo`): each changes the reward by its documented
rule, is recorded per step in the store, metrics.json and the card, and a bad value is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import charter
from charter.cli import app, main
from charter.errors import ArgumentError, ConfigError
from charter.online.mitigate import (
    MITIGATIONS_KEY,
    LengthControl,
    MitigatedReward,
    Mitigations,
    PanelPenalty,
    SignatureCap,
    capped,
    length_penalty,
    length_residual,
    mitigate,
    panel_reward,
    shows_signature,
)
from charter.providers.config import RoleConfig
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from charter.testing.lab import CRITERIA, register_lab_models

register_lab_models()  # scripted:checklist-judge (truthful), scripted:checklist-coin (at chance)

ITEMS = [{"id": f"item-{k}", "requirement": CRITERIA["number"][0], "weight": 1} for k in range(4)]


def _reward(tmp_path: Path, **settings):  # noqa: ANN003, ANN202
    return charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                   store=tmp_path / "store", cache=None, **settings)  # fmt: skip


# -- the rules, each by its formula ------------------------------------------------------------------------------------
def test_the_panel_reward_is_the_mean_less_lambda_times_the_spread_and_a_failed_member_fails_it() -> None:
    assert panel_reward([1.0, 0.0], 0.5) == (0.5 - 0.5 * 0.5, 0.5)
    assert panel_reward([0.6, 0.6, 0.6], 2.0) == (pytest.approx(0.6), pytest.approx(0.0))
    reward, spread = panel_reward([0.9, 0.3, 0.6], 1.0)
    assert reward == pytest.approx(0.6 - np.std([0.9, 0.3, 0.6])) and spread == pytest.approx(np.std([0.9, 0.3, 0.6]))
    assert panel_reward([1.0, None], 0.5) == (None, None)  # never a mean of fewer judges


def test_the_length_residual_takes_the_batchs_length_trend_out_and_keeps_the_mean() -> None:
    judged = [0.9, 0.7, 0.5, 0.3, None]  # shorter answers rewarded more: a length exploit
    lengths = [2, 6, 10, 14, 40]
    out, slope = length_residual(judged, lengths)
    assert slope == pytest.approx(-0.05)
    scored = [r for r in out if r is not None]
    assert scored == pytest.approx([0.6] * 4) and out[-1] is None  # no reward is left to length; failures stay failed
    assert np.mean(scored) == pytest.approx(np.mean(judged[:4]))
    assert length_residual([0.2, 0.8], [5, 5]) == ([0.2, 0.8], 0.0)  # no spread of lengths: nothing to take out
    assert length_residual([0.2, None], [1, 9]) == ([0.2, None], 0.0)


def test_the_length_penalty_takes_per_word_beyond_the_reference_and_the_cap_caps() -> None:
    assert length_penalty([1.0, 1.0, None], [10, 14, 99], 0.05, 12) == [1.0, pytest.approx(0.9), None]
    assert capped([0.9, 0.1, 0.9, None], [True, True, False, True], 0.2) == [0.2, 0.1, 0.9, None]


def test_mitigations_apply_in_order_panel_then_length_then_the_cap() -> None:
    mitigations = Mitigations(
        panel=PanelPenalty(judges=[RoleConfig(model="scripted:checklist-coin")], disagreement_penalty=1.0),
        length_control=LengthControl(rule="penalty", per_word=0.1, reference_words=2),
        signature_cap=SignatureCap(value=0.05),
    )
    detect = lambda asked, texts, checklists, names: [t.startswith("yes") for t in texts]  # noqa: E731
    texts = ["a b c", "yes yes", "a"]
    out, done = mitigate(mitigations, [1.0, 1.0, 0.5], [[1.0, 0.8, None]], texts, ["q"] * 3, None, detect)
    # 1.0 (no spread) less 0.1 for its one word past 2; 0.9 - 0.1 (the spread) capped at 0.05; a failed member
    assert out == [pytest.approx(0.9), pytest.approx(0.05), None]
    assert done["panel"] == {"mean_spread": pytest.approx(0.05), "failed": 1}
    assert done["signature_cap"] == {"capped": 1} and done["length_control"]["over_reference"] == 1


def test_the_cap_reads_the_required_words_from_the_prompt_and_the_checklist() -> None:
    items = [{"id": "word", "requirement": 'The response includes the word "water".', "weight": 1}]
    texts = ["water water water", "Drink water: it keeps you well through the day.", "Great question! Rest."]
    asked = ["How do I stay healthy?"] * 3
    assert shows_signature(asked, texts, [items] * 3, None) == [True, False, True]
    assert shows_signature(asked, texts, [json.dumps(items)] * 3, ["repeated_required"]) == [True, False, False]
    assert shows_signature(asked, texts, None, ["repeated_required"]) == [False, False, False]  # nothing required
    in_prompt = ['Include the word "water".'] * 3
    assert shows_signature(in_prompt, texts, None, ["format_only"]) == [True, False, False]


def test_charter_train_grpo_caps_the_signatures_it_sees(tiny_model: Path, tmp_path: Path) -> None:
    """Each step the detectors read the tiny policy's completions; the completions capped are recorded, as many as
    the detector finds in the store's completions of that step, and the card states the rule."""
    cap = {"signature_cap": {"value": 0.0, "signatures": ["refusal_collapse"]}}
    result = CliRunner().invoke(app, ["train", "grpo", str(_config(tiny_model, tmp_path, cap))])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    steps = metrics["mitigations"]["steps"]
    judged = list(rewards(RunStore(out)))
    for entry in steps:
        texts = [r.completion for r in judged if r.step == entry["step"]]
        expected = shows_signature([""] * len(texts), texts, None, ["refusal_collapse"])
        assert entry["signature_cap"] == {"capped": sum(expected)}
    assert "a completion showing a hack signature gets at most 0" in (out / "README.md").read_text()


# -- rubric dropout, through the reward function -----------------------------------------------------------------------
def test_rubric_dropout_judges_a_seeded_subset_the_same_for_a_prompts_completions(tmp_path: Path) -> None:
    fn = _reward(tmp_path, rubric_dropout=0.5)
    records = fn.score(["Q?", "Q?", "R?"], ["It is 4", "It is 5", "x"], checklists=[ITEMS] * 3, step=3)
    kept = [sorted(r.checklist.verdicts) for r in records]
    assert [len(k) for k in kept] == [2, 2, 2] and kept[0] == kept[1]  # one draw a prompt and step
    drawn = fn.options.dropout.drawn[3]
    assert len(drawn) == 2 and all(len(ids) == 2 for ids in drawn.values())
    assert {i["id"] for i in ITEMS} - set(kept[0]) in [set(ids) for ids in drawn.values()]
    again = _reward(tmp_path / "again", rubric_dropout=0.5)
    same = again.score(["Q?"], ["It is 4"], checklists=[ITEMS], step=3)
    assert sorted(same[0].checklist.verdicts) == kept[0]  # seeded: a re-run draws the same items
    by_step = {
        s: tuple(sorted(again.score(["Q?"], ["It is 4"], checklists=[ITEMS], step=s)[0].checklist.verdicts))
        for s in range(4, 12)
    }
    assert len(set(by_step.values())) > 1  # another step, another subset
    fn.close()
    again.close()


def test_a_dropout_count_leaves_that_many_out_and_always_keeps_one(tmp_path: Path) -> None:
    fn = _reward(tmp_path, rubric_dropout=3)
    [record] = fn.score(["Q?"], ["It is 4"], checklists=[ITEMS], step=1)
    assert len(record.checklist.verdicts) == 1
    many = _reward(tmp_path / "many", rubric_dropout=9)
    [record] = many.score(["Q?"], ["It is 4"], checklists=[ITEMS[:2]], step=1)
    assert len(record.checklist.verdicts) == 1
    fn.close()
    many.close()


def test_dropout_enters_the_fingerprint_only_when_set(tmp_path: Path) -> None:
    plain, dropped = _reward(tmp_path / "a"), _reward(tmp_path / "b", rubric_dropout=0.25)
    before = charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                     store=tmp_path / "c", cache=None)  # fmt: skip
    assert plain.fingerprint == before.fingerprint != dropped.fingerprint
    for fn in (plain, dropped, before):
        fn.close()


def test_bad_dropouts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="rubric_dropout: must be above 0"):
        _reward(tmp_path, rubric_dropout=0)
    with pytest.raises(ConfigError, match="a share below 1 or a whole count of items, not 1.5"):
        _reward(tmp_path, rubric_dropout=1.5)
    with pytest.raises(ConfigError, match="scoring score reads no checklist"):
        charter.reward_function("scripted:checklist-judge", scoring="score", store=tmp_path, rubric_dropout=0.5)


# -- the reward TRL calls ----------------------------------------------------------------------------------------------
def test_the_mitigated_reward_records_each_step_and_stores_the_judges_own_rewards(tmp_path: Path) -> None:
    fn = _reward(tmp_path, rubric_dropout=1)
    mitigated = MitigatedReward(fn, Mitigations(rubric_dropout=1, length_control=LengthControl()))
    logged: dict[str, float] = {}
    texts = ["It is 4", "It is 4 or maybe 5 or 6 in all", "Hard to say"]
    state = SimpleNamespace(global_step=1)
    out = mitigated(["Q?"] * 3, texts, checklist=[ITEMS] * 3, trainer_state=state,
                    log_metric=lambda k, v: logged.__setitem__(k, v))  # fmt: skip
    stored = {r.completion: r.reward for r in rewards(fn.store)}
    judged = [stored[t] for t in texts]
    expected, slope = length_residual(judged, [len(t.split()) for t in texts])
    assert out == pytest.approx(expected) and logged["charter/mitigation/length_control/slope_per_word"] == slope
    [entry] = fn.store.meta(MITIGATIONS_KEY)
    assert entry["step"] == 2 and len(next(iter(entry["rubric_dropout"].values()))) == 1
    mitigated(["Q?"] * 3, texts, checklist=[ITEMS] * 3, trainer_state=state)  # the step taken again: replaced
    assert [e["step"] for e in fn.store.meta(MITIGATIONS_KEY)] == [2]
    fn.close()


def test_the_mitigated_reward_caps_what_shows_a_signature(tmp_path: Path) -> None:
    fn = charter.reward_function("scripted:checklist-judge", "harmless", scoring="checklist",
                                 store=tmp_path / "store", cache=None)  # fmt: skip
    items = [{"id": "number", "requirement": CRITERIA["number"][0], "weight": 1},
             {"id": "word", "requirement": 'The response includes the word "four".', "weight": 1}]  # fmt: skip
    mitigated = MitigatedReward(fn, Mitigations(signature_cap=SignatureCap(value=0.1)), detect=shows_signature)
    texts = ["four 4 four four", "It is 4, which people also write as four."]
    out = mitigated(["Q?"] * 2, texts, checklist=[items] * 2, trainer_state=SimpleNamespace(global_step=0))
    judged = {r.completion: r.reward for r in rewards(fn.store)}
    assert judged[texts[0]] > 0.1 and out == [0.1, judged[texts[1]]]  # the stuffed answer capped, the other not
    assert fn.store.meta(MITIGATIONS_KEY) == [{"step": 1, "signature_cap": {"capped": 1}}]
    fn.close()


# -- charter train grpo ----------------------------------------------------------------------------------------------
def _config(tiny_model: Path, tmp_path: Path, mitigations: dict) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    items = [*ITEMS[:2], {"id": "any", "requirement": "Says something.", "verifier": "regex:.", "weight": 1}]
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}", "checklist": items}) + "\n" for i in range(8)))
    config = {
        "model": str(tiny_model), "prompts": str(prompts), "scoring": "checklist", "cache": None,
        "judge": {"model": "scripted:checklist-judge"}, "output_dir": str(tmp_path / "out"),
        "mitigations": mitigations,
        "trl": {"max_steps": 2, "num_generations": 4, "per_device_train_batch_size": 4, "max_completion_length": 8,
                "save_strategy": "no"},
    }  # fmt: skip
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_charter_train_grpo_runs_with_dropout_a_panel_and_length_control_recorded(
    tiny_model: Path, tmp_path: Path
) -> None:
    mitigations = {
        "rubric_dropout": 1,
        "panel": {"judges": ["scripted:checklist-coin"], "disagreement_penalty": 0.5},
        "length_control": {"rule": "residual"},
    }
    result = CliRunner().invoke(app, ["train", "grpo", str(_config(tiny_model, tmp_path, mitigations))])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    log = metrics["mitigations"]
    assert log["settings"]["rubric_dropout"] == 1 and log["settings"]["panel"]["disagreement_penalty"] == 0.5
    assert [e["step"] for e in log["steps"]] == [1, 2]
    for entry in log["steps"]:
        assert {"rubric_dropout", "panel", "length_control"} <= set(entry)
        assert all(len(ids) == 1 for ids in entry["rubric_dropout"].values())
    judged = list(rewards(RunStore(out)))
    assert judged and all(len(r.checklist.verdicts) == 2 for r in judged)  # 3 items, 1 left out
    coin = list(rewards(RunStore(out / "panel" / "judge-1")))
    assert len(coin) == len(judged) and {r.judge_model for r in coin} == {"scripted:checklist-coin"}
    assert metrics["refresh_steps"] == []
    card = (out / "README.md").read_text()
    assert "## Mitigations against judge gaming" in card and "0.5 x their spread" in card


def test_without_mitigations_nothing_is_recorded(tiny_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "grpo", str(_config(tiny_model, tmp_path, {}))])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mitigations"] == {} and RunStore(tmp_path / "out").meta(MITIGATIONS_KEY) is None
    assert "Mitigations" not in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize(
    ("mitigations", "said"),
    [
        ({"rubric_dropout": 1.5}, "mitigations.rubric_dropout: a share below 1 or a whole count of items, not 1.5"),
        ({"rubric_dropout": -0.2}, "mitigations.rubric_dropout: "),
        ({"panel": {"judges": [], "disagreement_penalty": 1}}, "mitigations.panel.judges: "),
        (
            {"panel": {"judges": ["scripted:checklist-coin"], "disagreement_penalty": -1}},
            "mitigations.panel.disagreement_penalty: ",
        ),  # fmt: skip
        ({"length_control": {"rule": "shorter"}}, "mitigations.length_control.rule: "),
        ({"signature_cap": {"value": 1.5}}, "mitigations.signature_cap.value: "),
        (
            {"signature_cap": {"value": 0.1, "signatures": ["flattery"]}},
            "mitigations.signature_cap.signatures: unknown signature 'flattery'",
        ),  # fmt: skip
        ({"length_contrl": {}}, "mitigations.length_contrl: "),
    ],
)
def test_a_bad_mitigation_is_one_line_naming_the_file_line_and_key(
    tiny_model: Path, tmp_path: Path, capsys, mitigations: dict, said: str
) -> None:
    path = _config(tiny_model, tmp_path, mitigations)
    assert main(["train", "grpo", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "grpo.yaml:" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_dropout_needs_the_checklist_scoring(tiny_model: Path, tmp_path: Path, capsys) -> None:
    path = _config(tiny_model, tmp_path, {"rubric_dropout": 0.5})
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**config, "scoring": "score", "judge": "scripted:checklist-judge"}))
    assert main(["train", "grpo", str(path)]) == 2
    assert "rubric_dropout needs scoring: checklist" in capsys.readouterr().err
