"""People's labels on `WinRateCallback`'s comparisons: the pairs file it writes at each evaluation, labelled and passed
back as `human_labels`, give the human-corrected (PPI) win rate beside the judge's, in a plain TRL DPOTrainer's log
history, metrics rows, the card's table; too few labels give no number and a note; a bad file is one line."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import charter
from charter.cli import main
from charter.errors import DatasetError
from charter.evals.callback import evaluations
from charter.evals.during import evaluation_lines
from charter.stats.ppi import ppi_mean
from charter.tables import read_jsonl
from tests.online.test_train import _config
from tests.online.test_winrate_callback import HARMFUL_OPENING  # registers scripted:fails-on-fail

#: Twelve prompts judged; the last one's judgment fails (never labelled, never in the judge's mean).
PROMPTS = [f"Question {i}: how do I do thing {i}?" for i in range(11)] + ["FAIL this one please"]
#: Even prompts get a harmful reference (the judge prefers the policy, P = 1), odd ones a harmless one (the judge's
#: two orders disagree: P = 0.5).
REFERENCES = [f"{HARMFUL_OPENING} step one" if i % 2 == 0 else f"A calm answer number {i}" for i in range(12)]


def _callback(tmp_path: Path, **kw):  # noqa: ANN003, ANN202
    return charter.WinRateCallback(
        PROMPTS, "scripted:fails-on-fail", "harmless", references=REFERENCES, every=1, max_new_tokens=4,
        mode="verdict", max_reasks=0, cache=tmp_path / "calls.sqlite", **kw,
    )  # fmt: skip


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pairs(tmp_path: Path) -> list[dict]:
    """The comparisons judged at step 1 of the tiny model, as the callback writes them for people to label."""
    from tests.support.tiny_models import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    _callback(tmp_path).evaluate(model, tokenizer, 1, tmp_path / "first")
    return read_jsonl(tmp_path / "first" / "winrate_eval" / "step-1.pairs.jsonl")


def test_the_pairs_file_holds_every_comparison_with_the_judges_p(tmp_path: Path) -> None:
    rows = _pairs(tmp_path)
    assert [r["prompt"] for r in rows] == PROMPTS and [r["reference"] for r in rows] == REFERENCES
    assert {r["step"] for r in rows} == {1} and all(isinstance(r["policy"], str) for r in rows)
    assert [r["p_policy"] for r in rows] == [1.0 if i % 2 == 0 else 0.5 for i in range(11)] + [None]


def test_ppi_corrects_the_judge_on_every_comparison_with_the_labelled_ones(tmp_path: Path) -> None:
    from tests.support.tiny_models import tiny_causal_lm

    rows = _pairs(tmp_path)
    # people label ten comparisons: they side with the policy against the harmful references but prefer three
    # harmless references the judge called even
    verdicts = ["policy", "reference", "policy", "reference", "policy", "reference", "policy", "tie", "policy", "tie"]
    labelled = [{"prompt": r["prompt"], "policy": r["policy"], "preferred": v} for r, v in zip(rows, verdicts)]
    labels = _write(tmp_path / "labels.jsonl", labelled)
    model, tokenizer = tiny_causal_lm()
    logs = _callback(tmp_path, human_labels=labels).evaluate(model, tokenizer, 1)

    judge_all = [r["p_policy"] for r in rows[:11]]  # every successful judgment, labelled or not
    judge_labelled = judge_all[:10]
    human = [{"policy": 1.0, "reference": 0.0, "tie": 0.5}[v] for v in verdicts]
    expected = ppi_mean(judge_all, judge_labelled, human).within(0, 1)
    assert logs["win_rate_ppi"] == pytest.approx(expected.value)
    assert (logs["win_rate_ppi_low"], logs["win_rate_ppi_high"]) == pytest.approx((expected.low, expected.high))
    lam = expected.lam  # by hand: lam * mean(judge, all) + mean(human - lam * judge, labelled)
    by_hand = lam * sum(judge_all) / 11 + sum(h - lam * j for h, j in zip(human, judge_labelled)) / 10
    assert expected.value == pytest.approx(by_hand) and lam > 0
    labelled_only = ppi_mean(judge_labelled, judge_labelled, human).value  # what ignoring the unlabelled would give
    assert logs["win_rate_ppi"] != pytest.approx(labelled_only)
    assert logs["win_rate_human"] == pytest.approx(sum(human) / 10) and logs["win_rate_human_n"] == 10
    assert logs["win_rate"] == pytest.approx(8.5 / 11)  # the judge's own rate (six wins, five ties) beside it


def test_ppi_is_logged_inside_a_dpo_trainer(tmp_path: Path) -> None:
    import datasets
    from trl import DPOConfig, DPOTrainer  # pyright: ignore[reportPrivateImportUsage] - TRL exports them lazily

    from tests.support.tiny_models import preference_rows, tiny_causal_lm

    # a person labels every comparison of step 1 as the judge would have called it; no `step`: any step's answers
    rows = [r for r in _pairs(tmp_path) if r["p_policy"] is not None]
    labelled = [{**r, "preferred": "policy" if r["p_policy"] == 1.0 else "tie"} for r in rows]
    for r in labelled:
        del r["step"]
    callback = _callback(tmp_path, human_labels=_write(tmp_path / "labels.jsonl", labelled))
    model, tokenizer = tiny_causal_lm()
    train = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in preference_rows(4)]
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=2,
        per_device_train_batch_size=2,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        max_length=64,
        use_cpu=True,
        learning_rate=0.0,
    )  # fmt: skip - the policy's answers stay those labelled
    trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                         train_dataset=datasets.Dataset.from_list(train), processing_class=tokenizer)  # fmt: skip
    trainer.add_callback(callback)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "win_rate" in e]
    assert [e["step"] for e in logged] == [1, 2]
    for e in logged:
        assert e["win_rate_human_n"] == 11 and e["win_rate_human"] == pytest.approx(e["win_rate"])
        assert 0 <= e["win_rate_ppi_low"] <= e["win_rate_human"] <= e["win_rate_ppi_high"] <= 1
        assert e["win_rate_ppi_low"] <= e["win_rate_ppi"] <= e["win_rate_ppi_high"]
    assert (tmp_path / "dpo" / "winrate_eval" / "step-2.pairs.jsonl").is_file()
    [row, _] = evaluations(callback)  # metrics.json's rows, the card's and the report's table
    assert row["human_n"] == 11 and row["ppi"] == pytest.approx(logged[0]["win_rate_ppi"])
    table = "\n".join(evaluation_lines([row]))
    assert "human-corrected (PPI)" in table and f"{row['ppi']:.3f} | {row['ppi_low']:.3f} – " in table


def test_too_few_labels_give_no_ppi_and_say_so(tmp_path: Path) -> None:
    from tests.support.tiny_models import tiny_causal_lm

    rows = _pairs(tmp_path)
    labels = [{"step": 1, "prompt": r["prompt"], "policy": r["policy"], "preferred": "policy"} for r in rows[:3]]
    labels.append({"step": 7, "prompt": rows[3]["prompt"], "policy": rows[3]["policy"], "preferred": "tie"})
    callback = _callback(tmp_path, human_labels=_write(tmp_path / "labels.jsonl", labels))
    model, tokenizer = tiny_causal_lm()
    state = SimpleNamespace(global_step=1, is_world_process_zero=True, log_history=[])
    callback.on_step_end(SimpleNamespace(output_dir=str(tmp_path / "out")), state, None, model=model,
                         processing_class=tokenizer)  # fmt: skip
    [logs] = state.log_history
    assert logs["win_rate_human_n"] == 3 and not any(k.startswith("win_rate_ppi") for k in logs)
    assert "win_rate_human" not in logs and "win_rate" in logs
    assert logs["win_rate_labels_note"] == "3 labels match, fewer than 10: too few for an interval to be trusted"
    [row] = evaluations(callback)
    assert row["ppi"] is None and row["human_n"] == 3
    assert row["labels_note"] == "3 labels match, fewer than 10: too few for an interval to be trusted"
    table = "\n".join(evaluation_lines([row]))
    assert "| - | - | 3 | - |" in table and "Step 1: 3 labels match, fewer than 10" in table


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"prompt": "p", "policy": "a", "preferred": "A"},
            "row 2: preferred: must be policy, reference or tie, got 'A'",
        ),
        ({"prompt": "p", "preferred": "tie"}, "row 2: policy: must be a string"),
        ({"prompt": "p", "policy": "a", "preferred": "tie", "step": "one"}, "row 2: step: must be a positive whole"),
        ({"prompt": "p", "policy": "a", "preferred": "tie", "reference": 3}, "row 2: reference: must be a string"),
    ],
)
def test_a_bad_labels_file_is_one_line_naming_file_row_and_key(tmp_path: Path, row: dict, message: str) -> None:
    labels = _write(tmp_path / "labels.jsonl", [{"prompt": "p", "policy": "b", "preferred": "tie"}, row])
    with pytest.raises(DatasetError, match=message) as raised:
        _callback(tmp_path, human_labels=labels)
    assert str(raised.value).startswith(f"{labels}: ") and "\n" not in str(raised.value)


def test_a_bad_labels_file_stops_charter_train_before_training(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = _write(tmp_path / "labels.jsonl", [{"prompt": "p", "policy": "a", "preferred": "yes"}])
    section = {"prompts": PROMPTS[:2], "judge": "scripted:cai", "human_labels": str(labels)}
    assert main(["train", "grpo", str(_config(tmp_path, tiny_model, winrate_eval=section))]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{labels}: row 1: preferred: must be policy, reference or tie, got 'yes'" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out" / "metrics.json").exists()
