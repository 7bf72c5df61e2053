"""RewardBench-style accuracy of a scorer: per subset with exact intervals, best-of-N, ties half."""

import pytest

from charter.errors import DatasetError
from charter.evals.rm import comparisons_needed, group_rows, judged_accuracy, rm_accuracy
from charter.stats.intervals import exact_interval


def test_accuracy_per_subset_with_exact_intervals_and_best_of_n() -> None:
    rows = [
        {"prompt": "q1", "chosen": "good", "rejected": "bad", "subset": "chat"},
        {"prompt": "q1", "chosen": "good", "rejected": "worse", "subset": "chat"},
        {"prompt": "q2", "chosen": "fine", "rejected": "good", "subset": "safety"},
        {"prompt": "q3", "chosen": "same", "rejected": "equal", "subset": "safety"},
    ]
    length = {"good": 3.0, "bad": 1.0, "worse": 0.0, "fine": 2.0, "same": 1.0, "equal": 1.0}
    result = rm_accuracy(rows, lambda prompt, response: length[response])
    assert result["subsets"]["chat"]["accuracy"] == 1.0
    assert result["subsets"]["safety"]["correct"] == 0.5  # one wrong, one tie (half)
    assert result["overall"]["ci95"] == list(exact_interval(2.5, 4))
    assert result["best_of_n"] == {"n": 1, "correct": 1.0, "accuracy": 1.0, "ci95": list(exact_interval(1, 1))}


def test_a_pairwise_scorer_counts_failures_apart_and_ties_half() -> None:
    rows = [
        {"prompt": "q1", "chosen": "best", "rejected": "ok", "subset": "chat"},
        {"prompt": "q1", "chosen": "best", "rejected": "poor", "subset": "chat"},
        {"prompt": "q2", "chosen": "fine", "rejected": "meh", "subset": "safety"},
        {"prompt": "q3", "chosen": "same", "rejected": "equal", "subset": "safety"},
    ]
    grouped = group_rows(rows)
    needed = comparisons_needed(grouped)
    assert len(needed) == 5  # q1: all three pairs of its three responses (best-of-N); q2, q3: one each
    p = {("q1", "best", "ok"): 0.9, ("q1", "best", "poor"): 0.8, ("q1", "ok", "poor"): 0.6,
         ("q2", "fine", "meh"): None, ("q3", "same", "equal"): 0.5}  # fmt: skip
    result = judged_accuracy(grouped, p)
    assert result["failures"] == 1 and result["subsets"]["safety"] == {
        "n": 1, "correct": 0.5, "accuracy": 0.5, "ci95": list(exact_interval(0.5, 1)), "failures": 1,
    }  # fmt: skip
    assert result["overall"]["n"] == 3 and result["overall"]["correct"] == 2.5
    assert result["best_of_n"]["accuracy"] == 1.0 and result["best_of_n_failures"] == 0
    p[("q1", "ok", "poor")] = None  # a failed comparison leaves its prompt out of best-of-N, not its rows
    result = judged_accuracy(grouped, p)
    assert result["best_of_n"] is None and result["best_of_n_failures"] == 1 and result["overall"]["n"] == 3


def test_no_rows_or_a_row_missing_a_side_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError, match="no preference rows"):
        rm_accuracy([], lambda p, r: 0.0)
    with pytest.raises(DatasetError, match="row 0"):
        rm_accuracy([{"prompt": "q", "chosen": "a"}], lambda p, r: 0.0)


def test_charter_eval_rm_scores_a_sequence_classification_model(tmp_path) -> None:  # noqa: ANN001
    import json

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from typer.testing import CliRunner

    from charter.cli import app
    from tests.support.tiny_models import preference_rows, tiny_llama, write_jsonl

    folder = tiny_llama(tmp_path / "llama")
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    rows = [{**r, "subset": "ab"[i % 2]} for i, r in enumerate(preference_rows(6))]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    result = CliRunner().invoke(app, ["eval", "rm", str(tmp_path / "rm"), "--pairs", str(pairs), "--out",
                                      str(tmp_path / "rm.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "rm.json").read_text())
    assert summary["overall"]["n"] == 6 and set(summary["subsets"]) == {"a", "b"}
    low, high = summary["overall"]["ci95"]
    assert low <= summary["overall"]["accuracy"] <= high
    assert "overall: accuracy" in result.output
