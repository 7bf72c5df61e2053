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


#: The reward of a response, by its last word: the tiny reward model below reads nothing else. Polite answers end
#: in answer, below or suggestions, rude ones in yourself, me or idiot; two words go against their side.
REWARD_BY_LAST_WORD = {"answer": 1.0, "below": 1.0, "suggestions": -1.0, "yourself": -1.0, "me": 1.0, "idiot": -1.0}


def _last_word_reward_model(folder):  # noqa: ANN001, ANN202
    """A real sequence-classification reward model (tiny Llama) whose reward is known: attention and MLP write
    nothing, so the last token's hidden state is its embedding, normalised; the embedding of each word above points
    along the score head (or against it), every other word's is zero. Reward: sqrt(hidden) times the sign above."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from tests.support.tiny_models import tiny_tokenizer

    tok = tiny_tokenizer(chat_template=None)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)  # fmt: skip
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        for word, sign in REWARD_BY_LAST_WORD.items():
            model.model.embed_tokens.weight[tok.convert_tokens_to_ids(word), 0] = sign
        model.score.weight.zero_()
        model.score.weight[0, 0] = 1.0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


def test_charter_eval_rm_measures_a_reward_model_of_known_accuracy(tmp_path) -> None:  # noqa: ANN001
    import json

    from charter.cli import main
    from tests.support.tiny_models import preference_rows, write_jsonl

    rows = [{**r, "subset": "ab"[i % 2]} for i, r in enumerate(preference_rows(24, seed=3))]
    reward = {  # the known reward of each row's two responses
        side: [REWARD_BY_LAST_WORD[r[side][0]["content"].split()[-1]] for r in rows] for side in ("chosen", "rejected")
    }
    right = [1.0 if c > w else 0.5 if c == w else 0.0 for c, w in zip(reward["chosen"], reward["rejected"])]
    expected = sum(right) / len(right)
    assert 0.5 < expected < 1.0  # a flipped sign would read 1 - expected
    folder = _last_word_reward_model(tmp_path / "rm")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert main(["eval", "rm", str(folder), "--pairs", str(pairs), "--out", str(tmp_path / "rm.json")]) == 0
    summary = json.loads((tmp_path / "rm.json").read_text())
    assert summary["overall"]["accuracy"] == pytest.approx(expected)
    for name in ("a", "b"):
        mine = [x for x, r in zip(right, rows) if r["subset"] == name]
        assert summary["subsets"][name]["accuracy"] == pytest.approx(sum(mine) / len(mine))
