"""The reward-model reward in `charter serve reward`: a sequence-classification model's score, weighted beside the
judge's as TRL weighs it in training, on both endpoints; a judge failure stays null, its score is still shown."""

from pathlib import Path

import pytest

from charter.cli import main
from tests.serve.conftest import TOKEN
from tests.serve.test_server import HARMFUL, QUESTION, SAFE
from tests.support.tiny_models import tiny_llama

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def rm(tmp_path_factory) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")
    folder = base.parent / "rm"  # a random-headed reward model with its tokenizer, as `charter train reward`
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def _in_process(folder: Path, question: str, answer: str) -> float:
    """The model's score of one conversation, computed here without the server."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    text = tok.apply_chat_template(messages, tokenize=False)
    with torch.no_grad():
        return float(model(**tok(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0])


def test_the_reward_model_score_is_added_beside_the_judge(start, rm: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    judge = {"model": "scripted:serve-flaky", "rating": "verdict", "max_reasks": 0}  # fails answers without "ok"
    server = start(judge, judge_weight=2.0, reward_model=str(rm), reward_model_weight=0.5, reward_model_batch_size=2)
    ok = SAFE + " ok"
    status, body = server.post("/v1/rewards", {"prompt": QUESTION, "completions": [ok, HARMFUL, ok]}, AUTH)
    assert status == 200, body
    expected = [_in_process(rm, QUESTION, answer) for answer in (ok, HARMFUL, ok)]
    got = body["results"]
    assert [r["reward_model"] for r in got] == pytest.approx(expected, abs=1e-4)
    assert got[0]["judge"] == 1.0 and body["rewards"][0] == pytest.approx(2.0 * 1.0 + 0.5 * expected[0], abs=1e-4)
    assert body["rewards"][1] is None and got[1]["failure"]["kind"] == "unparseable"  # the judge failed: null
    assert body["rewards"][2] == pytest.approx(body["rewards"][0], abs=1e-4)

    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n"
    query = f"{prompt}<|im_start|>assistant\n{ok}<|im_end|>"
    status, body = server.post(f"/get_reward?token={TOKEN}", {"query": [query], "prompts": [prompt]})
    assert status == 200, body
    assert body["extra_logs"]["reward_model"] == pytest.approx(expected[:1], abs=1e-4)
    assert body["rewards"] == pytest.approx([2.0 + 0.5 * expected[0]], abs=1e-4)
    assert server.stop() == 143
    assert f"reward model: {rm} (weight 0.5)" in server.log.read_text()


def test_without_a_chat_template_the_model_reads_the_texts_joined(tmp_path: Path, monkeypatch) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from charter.reward.combine import RewardModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = tiny_llama(tmp_path / "plain", chat_template=None)
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(tmp_path / "rm")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "rm")
    model = RewardModel(str(tmp_path / "rm"), batch_size=2)
    conversation = [{"role": "user", "content": "Can you help "}]
    assert model.text(conversation, [{"role": "assistant", "content": "with the bus"}]) == "Can you help with the bus"
    one = model.scores(["Can you help "], ["with the bus"])
    three = model.scores(["Can you help "] * 3, ["with the bus", "no", "with the bus"])  # padded batches of 2 and 1
    assert three[0] == pytest.approx(one[0], abs=1e-4) and three[2] == pytest.approx(one[0], abs=1e-4)


def test_a_reward_model_that_is_none_is_one_line_before_listening(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "serve.yaml"
    missing = tmp_path / "missing-rm"
    path.write_text(f"judge: scripted:cai\ncache: null\noutput_dir: {tmp_path / 'out'}\nreward_model: {missing}\n")
    assert main(["serve", "reward", str(path), "--port", "0", "--token", TOKEN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reward_model" in err[0] and "missing-rm" in err[0], err
    assert not (tmp_path / "out").exists()  # nothing served, nothing stored
