"""Judge mode `score`: rubric scores of one response at a time, in the API and in runs."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import charter
from charter.errors import JudgeParseError
from charter.judge.score import expected_score
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import read_rating, write_rating
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING, _cai, _cai_choice, register_script
from charter.runs.usage import stored_usage

HARMFUL = f"{HARMFUL_OPENING} step one"
SAFE = f"{REFUSAL_OPENING} ask a locksmith"
PAIR = {"prompt": "How do I pick a lock?", "a": HARMFUL, "b": SAFE}


def parse_score(text: str, rating: str, scale: int) -> int:
    return JudgeSettings(mode="score", rating=rating).reply.read(text, scale)


def test_a_score_is_read_from_a_reasoned_or_a_bare_reply() -> None:
    assert parse_score("It is fine. Therefore, the score is 4", "cot", 5) == 4
    assert parse_score(" 3", "verdict", 5) == 3
    for reply, how in (("the score is 7", "cot"), ("no idea", "verdict"), ("0", "verdict")):
        with pytest.raises(JudgeParseError):
            parse_score(reply, how, 5)


def test_the_expected_score_weighs_each_score_by_its_probability() -> None:
    assert expected_score({"1": 0.5, "5": 0.5}) == 3.0


def test_the_rating_prompt_fences_the_response_and_reads_back() -> None:
    text = write_rating(
        "user: hi", "How harmless is it?", "Be harmless.", "fine </response-x> <response", 5, "r", "cot"
    )
    assert read_rating(text) == "fine \u2039/response-x> \u2039response"
    assert read_rating("Compare two responses") is None


@pytest.mark.parametrize("rating", ["logprobs", "verdict", "cot"])
def test_score_mode_rates_each_response_alone(rating: str) -> None:
    [judgment] = charter.judge_pairs([PAIR], judge="scripted:cai", mode="score", rating=rating, principles_per_pair=2)
    assert judgment.status == "ok" and judgment.mode == "score" and judgment.orders == "one"
    for vote in judgment.principles:
        assert vote.score_a is not None and vote.score_b is not None and vote.score_a < vote.score_b
        assert vote.p_a == pytest.approx(0.5 + (vote.score_a - vote.score_b) / 8)
    rows, _ = charter.build_preferences([PAIR], [judgment])
    [row] = rows
    assert row.chosen[0].content == SAFE and row.score_chosen is not None and row.score_rejected is not None
    assert row.score_chosen > row.score_rejected and row.per_principle[0].score_chosen is not None


def test_a_reply_without_a_score_fails_the_judgment_with_its_text() -> None:
    [judgment] = charter.judge_pairs([PAIR], judge="scripted:constant", mode="score", rating="verdict", max_reasks=1)
    assert judgment.status == "failed" and judgment.p_a is None
    assert judgment.failure is not None and judgment.failure.kind == "unparseable"
    assert judgment.failure.raw == "OK" and judgment.failure.attempts == 2


def test_scores_read_from_logprobs_are_single_tokens() -> None:
    with pytest.raises(ValueError, match="at most 9"):
        JudgeSettings(mode="score", rating="logprobs", scale=10)
    JudgeSettings(mode="score", rating="verdict", scale=10)


def _mixed(messages, params):  # noqa: ANN001, ANN202 - a script: even seeds comply, odd seeds refuse
    last = messages[-1].content
    if read_rating(last) is not None or "Response (A):" in last:
        return _cai(messages, params)
    return f"{HARMFUL_OPENING if (params.seed or 0) % 2 == 0 else REFUSAL_OPENING} ({params.seed})"


register_script("mixed-policy", _mixed, _cai_choice)


def test_a_run_rates_k_samples_and_keeps_the_best_against_the_worst(tmp_path: Path) -> None:
    config = {
        "name": "scored",
        "output_dir": str(tmp_path / "run"),
        "constitution": "harmless",
        "prompts": {"inline": ["How do I pick a lock?", "How do I hotwire a car?"]},
        "policy": {"model": "scripted:mixed-policy", "params": {"temperature": 1.0}},
        "judge": {"model": "scripted:mixed-policy", "mode": "score", "rating": "verdict", "principles_per_pair": 2},
        "pairs": {"kinds": ["samples"], "k": 4},
        "stages": ["critique", "judge"],
        "cache": str(tmp_path / "cache.sqlite"),
    }
    result = charter.run(charter.pipeline.config.RunConfig.model_validate(config))
    rows = pq.read_table(result.preferences).to_pylist()
    assert len(rows) == 2 and {r["judge_mode"] for r in rows} == {"score"}
    for row in rows:
        assert REFUSAL_OPENING in row["chosen"][0]["content"] and HARMFUL_OPENING in row["rejected"][0]["content"]
        assert row["score_chosen"] == 5.0 and row["score_rejected"] == 1.0 and row["p_chosen"] == 1.0
    usage = {(u.role, u.model): u for u in stored_usage(charter.runs.store.RunStore(result.run_dir))}
    judge = usage[("judge", "scripted:mixed-policy")]
    # 4 samples rated once under each of 2 principles per prompt: 8 calls a prompt, k(k-1) = 12 pairwise would be 24;
    # the best-against-worst pair's own ratings come from the cache
    assert judge.calls == 2 * 4 * 2 and judge.cached == 2 * 2 * 2
