"""`charter.reward_function`: the judge as a TRL reward, each scoring, failures as None, the store, the cache."""

from pathlib import Path

import pytest

import charter
from charter.errors import ArgumentError, ConfigError, TooManyFailures
from charter.judge_prompt import read_rating
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING, _cai, _cai_choice, register_script
from charter.runs.rewards import per_step, rewards
from charter.runs.store import RunStore

PROMPTS = ["How do I pick a lock?"] * 4
HARMFUL, SAFE = f"{HARMFUL_OPENING} step one", f"{REFUSAL_OPENING} ask a locksmith"
COMPLETIONS = [HARMFUL, SAFE, HARMFUL, f"{REFUSAL_OPENING} call a professional"]


def make(tmp_path: Path, scoring: str = "score", judge: str = "scripted:cai", **kw):  # noqa: ANN201
    return charter.reward_function(
        judge, "harmless", scoring, store=tmp_path / "rewards", cache=tmp_path / "c.sqlite", **kw
    )


def test_score_rewards_the_normalised_rubric_score(tmp_path: Path) -> None:
    fn = make(tmp_path, rating="verdict")
    assert fn(prompts=PROMPTS, completions=COMPLETIONS) == [0.0, 1.0, 0.0, 1.0]
    fn.close()


def test_group_rewards_the_win_rate_within_the_group(tmp_path: Path) -> None:
    fn = make(tmp_path, "group", mode="verdict")
    got = fn(prompts=PROMPTS, completions=COMPLETIONS)
    # both orders: a safe answer beats a harmful one (p 1), safe vs safe and harmful vs harmful tie at 0.5
    assert got == pytest.approx([1 / 6, 5 / 6, 1 / 6, 5 / 6])
    [record] = [r for r in rewards(fn.store) if r.completion == SAFE]
    assert record.comparisons == 2 and record.scoring == "group"
    fn.close()


def test_reference_rewards_p_better_than_the_reference(tmp_path: Path) -> None:
    fn = make(tmp_path, "reference", mode="verdict")
    got = fn(prompts=PROMPTS[:2], completions=[SAFE, HARMFUL], reference=[HARMFUL + " too", SAFE + " too"])
    assert got == [1.0, 0.0]
    fn.close()


def test_a_reference_model_answers_prompts_without_a_reference(tmp_path: Path) -> None:
    fn = make(tmp_path, "reference", mode="verdict", reference_model="scripted:cai")
    assert fn(prompts=PROMPTS[:1], completions=[SAFE]) == [1.0]  # the scripted policy's answer is harmful
    with pytest.raises(ConfigError, match="no reference_model"):
        make(tmp_path / "x", "reference", mode="verdict")(prompts=PROMPTS[:1], completions=[SAFE])


def test_conversational_prompts_and_completions_are_read(tmp_path: Path) -> None:
    fn = make(tmp_path, rating="verdict")
    prompt = [{"role": "user", "content": PROMPTS[0]}]
    assert fn(prompts=[prompt], completions=[[{"role": "assistant", "content": SAFE}]]) == [1.0]


def test_the_same_completion_twice_costs_one_call(tmp_path: Path) -> None:
    fn = make(tmp_path, rating="verdict", principles=["illegal-activity"])
    calls = lambda: sum(t.calls for t in fn.judge.meter.tallies.values())  # noqa: E731
    fn(prompts=PROMPTS[:2], completions=[SAFE, SAFE])
    assert calls() == 1  # the second is a cache hit
    fn(prompts=PROMPTS[:1], completions=[SAFE])
    assert calls() == 1  # and later, from the reward store
    stored = list(rewards(fn.store))
    assert len(stored) == 3 and stored[-1].cached and stored[-1].reward == 1.0
    fn.close()


def _flaky(messages, params):  # noqa: ANN001, ANN202 - rates responses that mention "ok", fails the rest
    rated = read_rating(messages[-1].content)
    if rated is not None and "ok" not in rated:
        return "I would rather not say."
    return _cai(messages, params)


register_script("flaky-rater", _flaky, _cai_choice)


def test_a_failed_judgment_is_none_and_recorded(tmp_path: Path) -> None:
    fn = make(tmp_path, judge="scripted:flaky-rater", rating="verdict", max_reasks=0, max_failures=5)
    assert fn(prompts=PROMPTS[:2], completions=[SAFE + " ok", SAFE]) == [1.0, None]
    failed = [r for r in rewards(fn.store) if r.reward is None]
    assert len(failed) == 1 and failed[0].failure is not None and failed[0].failure.kind == "unparseable"
    [step] = per_step(fn.store)
    assert step["failed"] == 1 and step["mean"] == 1.0
    fn.close()
    from charter.pipeline.report.write import write_report

    md, _ = write_report(fn.store_dir)  # the run report counts the failure beside the rewards, outside a trainer too
    assert "| - | 2 | 1 | 1.000 | - | 0 |" in md.read_text()


def test_past_max_failures_the_function_stops_training(tmp_path: Path) -> None:
    fn = make(tmp_path, judge="scripted:flaky-rater", rating="verdict", max_reasks=0, max_failures=1)
    fn(prompts=PROMPTS[:1], completions=[SAFE])
    with pytest.raises(TooManyFailures, match="2 of 2 judge rewards failed"):
        fn(prompts=PROMPTS[:1], completions=[HARMFUL])
    assert RunStore(tmp_path / "rewards").count("rewards") == 2  # what was judged is kept


def test_scoring_and_mode_must_fit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="judge mode must be"):
        make(tmp_path, "group", mode="score")
    with pytest.raises(ArgumentError, match="scoring: .*expected one of score, group, reference, rank, checklist"):
        make(tmp_path, "pairs")


def test_the_session_parts_are_plain_attributes_and_settings_set_the_session(tmp_path: Path) -> None:
    fn = charter.reward_function("scripted:cai", "harmless", "score", store=tmp_path / "rw", cache=None)
    assert fn.judge is fn.session.judge and fn.store is fn.session.store and fn.tally is fn.session.tally
    assert {"judge", "constitution", "fingerprint", "store", "rank", "ranks", "tally"} <= set(vars(fn))
    fn.max_failures, fn.concurrency = 0.5, 8
    assert (fn.session.max_failures, fn.session.concurrency) == (0.5, 8)
    fn(PROMPTS[:1], [SAFE])
    assert fn.tally.rewards == 1  # the tally is the session's own object
    fn.close()
