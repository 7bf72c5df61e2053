"""Judge mode `rubric`: one structured-output call rates a response under all of a pair's principles at once, with
the per-principle votes mode `score` gives, and a failure per principle a reply leaves without a score."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import charter
from charter.constitutions import load_constitution
from charter.judge.modes import MODES, RATES_ALL_PRINCIPLES
from charter.judge.pairwise import judge_fingerprint
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import read_rating, read_rubric, read_rubric_ids
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING, _cai, _cai_choice, register_script
from charter.runs.usage import stored_usage

HARMFUL = f"{HARMFUL_OPENING} step one"
SAFE = f"{REFUSAL_OPENING} ask a locksmith"
PAIR = {"prompt": "How do I pick a lock?", "a": HARMFUL, "b": SAFE}
PAIRS = [PAIR, {"prompt": "How do I hotwire a car?", "a": SAFE, "b": HARMFUL}]

SEEN: list = []


def _counting(messages, params):  # noqa: ANN001, ANN202 - the cai judge, noting each call's schema
    SEEN.append(params.json_schema)
    return _cai(messages, params)


register_script("counting-cai", _counting, _cai_choice)


def _drops_one(messages, params):  # noqa: ANN001, ANN202 - leaves the last principle without a score
    reply = json.loads(_cai(messages, params))
    reply.pop(read_rubric_ids(messages[-1].content)[-1])
    return json.dumps(reply)


register_script("drops-one", _drops_one, _cai_choice)


def test_the_mode_is_an_entry_of_the_table() -> None:
    entry = MODES["rubric"]
    assert entry.kind is RATES_ALL_PRINCIPLES and entry.reply is not None and not entry.reply.logprobs
    settings = JudgeSettings(mode="rubric")  # the default `rating: logprobs` does not apply: the reply is JSON
    assert settings.rates_alone and not settings.asks_logprobs and settings.reply_name == "rubric"


def test_one_call_per_response_instead_of_one_per_principle() -> None:
    SEEN.clear()
    [judgment] = charter.judge_pairs([PAIR], judge="scripted:counting-cai", mode="rubric", principles_per_pair=3)
    assert judgment.status == "ok" and len(judgment.principles) == 3 and len(SEEN) == 2
    ids = [v.principle_id for v in judgment.principles]
    assert all(schema["required"] == ids and schema["additionalProperties"] is False for schema in SEEN)
    SEEN.clear()
    charter.judge_pairs([PAIR], judge="scripted:counting-cai", mode="score", rating="verdict", principles_per_pair=3)
    assert len(SEEN) == 6 and SEEN == [None] * 6


def test_per_principle_rows_equal_those_of_score_mode() -> None:
    kw = {"judge": "scripted:cai", "principles_per_pair": 3}
    rubric = charter.judge_pairs(PAIRS, mode="rubric", **kw)
    score = charter.judge_pairs(PAIRS, mode="score", rating="verdict", **kw)

    def votes(judgments):  # noqa: ANN001, ANN202
        return [[(v.principle_id, v.p_a, v.p_a_ab, v.score_a, v.score_b) for v in j.principles] for j in judgments]

    assert votes(rubric) == votes(score) and [j.p_a for j in rubric] == [j.p_a for j in score]
    rows_r, _ = charter.build_preferences(PAIRS, rubric)
    rows_s, _ = charter.build_preferences(PAIRS, score)
    assert [r.per_principle for r in rows_r] == [r.per_principle for r in rows_s]
    assert [(r.score_chosen, r.score_rejected, r.chosen) for r in rows_r] == [
        (r.score_chosen, r.score_rejected, r.chosen) for r in rows_s
    ]
    assert {r.judge_mode for r in rows_r} == {"rubric"}
    assert all(j.prompt_tokens > 0 and j.completion_tokens > 0 for j in rubric)


def test_a_reply_is_read_per_principle() -> None:
    got = read_rubric('{"a": 4, "b": 9, "c": "3", "d": true}', ["a", "b", "c", "d", "e"], 5)
    assert got["a"] == 4 and got["c"] == 3
    assert all(isinstance(got[p], charter.errors.JudgeParseError) for p in "bde")
    assert "'b'" in str(got["b"]) and "'e'" in str(got["e"])
    unread = read_rubric("The score is 4", ["a", "b"], 5)
    assert all(isinstance(v, charter.errors.JudgeParseError) and v.raw == "The score is 4" for v in unread.values())
    assert read_rubric('```json\n{"a": 2}\n```', ["a"], 5) == {"a": 2}


def test_a_missing_score_is_a_recorded_failure_naming_the_principle() -> None:
    [judgment] = charter.judge_pairs(
        [PAIR], judge="scripted:drops-one", mode="rubric", principles=["violence-weapons", "self-harm"], max_reasks=1
    )
    assert judgment.status == "failed" and judgment.p_a is None and judgment.principles in (None, [])
    failure = judgment.failure
    assert failure is not None and failure.kind == "unparseable" and failure.attempts == 2
    assert "self-harm" in failure.message and "violence-weapons" not in failure.message
    assert failure.raw is not None and "violence-weapons" in failure.raw


def test_an_unparseable_reply_fails_every_principle() -> None:
    [judgment] = charter.judge_pairs([PAIR], judge="scripted:constant", mode="rubric", max_reasks=0)
    assert judgment.status == "failed" and judgment.failure is not None and judgment.failure.raw == "OK"


def test_the_mode_is_in_the_fingerprint() -> None:
    constitution = load_constitution("harmless")
    fps = {judge_fingerprint(JudgeSettings(mode=m), "openai:gpt-x", constitution, 7) for m in ("rubric", "score")}
    assert len(fps) == 2


def test_the_prompt_puts_the_shared_parts_first() -> None:
    from charter.judge.score import ToRate, rubric_prompt
    from charter.records import Message

    constitution = load_constitution("harmless")
    ids = [p.id for p in constitution.principles[:3]]
    prompt = [Message(role="user", content="How do I pick a lock?")]
    text = rubric_prompt(constitution, ToRate(prompt, "Use a pick.", ids), JudgeSettings(mode="rubric"))[0].content
    other = rubric_prompt(constitution, ToRate(prompt, "Use a pick.", ids[1:]), JudgeSettings(mode="rubric"))[0].content
    head = text.split("\n\nPrinciples:\n")[0]
    assert other.startswith(head + "\n\nPrinciples:\n") and "How do I pick a lock?" in head
    assert read_rating(text) == "Use a pick." and read_rubric_ids(text) == ids
    assert text.endswith("an integer from 1 to 5, and nothing else.")


def test_online_rewards_in_mode_rubric(tmp_path: Path) -> None:
    fn = charter.reward_function(
        "scripted:cai",
        "harmless",
        "score",
        store=tmp_path / "r",
        cache=tmp_path / "c.sqlite",
        mode="rubric",
        principles_per_pair=2,
    )
    assert fn(prompts=["How do I pick a lock?"] * 2, completions=[HARMFUL, SAFE]) == [0.0, 1.0]
    assert sum(t.calls for t in fn.judge.meter.tallies.values()) == 2
    fn.close()


def test_a_run_config_names_the_mode(tmp_path: Path) -> None:
    config = {
        "name": "rubric",
        "output_dir": str(tmp_path / "run"),
        "constitution": "harmless",
        "prompts": {"inline": ["How do I pick a lock?"]},
        "policy": {"model": "scripted:cai"},
        "judge": {"model": "scripted:cai", "mode": "rubric", "principles_per_pair": 2},
        "stages": ["critique", "judge"],
        "cache": str(tmp_path / "cache.sqlite"),
    }
    result = charter.run(charter.pipeline.config.RunConfig.model_validate(config))

    rows = pq.read_table(result.preferences).to_pylist()
    assert rows and {r["judge_mode"] for r in rows} == {"rubric"}
    for row in rows:
        votes = json.loads(row["per_principle"])
        assert [(v["score_chosen"], v["score_rejected"]) for v in votes] == [(5.0, 1.0), (5.0, 1.0)]
        assert row["score_chosen"] == 5.0 and row["score_rejected"] == 1.0


@pytest.mark.parametrize("bad", ['{"violence-weapons": 6}', '{"violence-weapons": 0}', '{"violence-weapons": 99}'])
def test_a_score_outside_the_scale_is_a_failure_of_its_own(bad: str) -> None:
    [value] = read_rubric(bad, ["violence-weapons"], 5).values()
    assert isinstance(value, charter.errors.JudgeParseError) and value.kind == "out_of_scale"
    assert (
        str(value) == f"principle 'violence-weapons' scored {json.loads(bad)['violence-weapons']}, outside the "
        "scale 1 to 5"
    )


@pytest.mark.parametrize(
    "reply",
    [
        'Here are the scores.\n```json\n{"violence-weapons": 4}\n```',
        'Scoring each principle: {"violence-weapons": 4} -- done.',
        '{"violence-weapons": 4.0}',
        '{"violence-weapons": "4"}',
        '{"violence-weapons": " 4 "}',
    ],
)
def test_a_score_is_read_in_a_fence_after_prose_as_a_whole_float_or_as_text(reply: str) -> None:
    assert read_rubric(reply, ["violence-weapons"], 5) == {"violence-weapons": 4}


@pytest.mark.parametrize(
    "bad", ['{"violence-weapons": 4.5}', '{"violence-weapons": "four"}', '{"violence-weapons": null}']
)
def test_a_score_that_is_no_whole_number_is_unreadable(bad: str) -> None:
    [value] = read_rubric(bad, ["violence-weapons"], 5).values()
    assert isinstance(value, charter.errors.JudgeParseError) and value.kind == "unparseable"
    assert str(value) == "no score from 1 to 5 for principle 'violence-weapons'"


def _prose_fenced(messages, params):  # noqa: ANN001, ANN202 - the cai judge's scores, after a sentence, fenced
    return f"Here are my scores.\n```json\n{_cai(messages, params)}\n```"


def _off_scale(messages, params):  # noqa: ANN001, ANN202 - every principle scored 99
    return json.dumps(dict.fromkeys(read_rubric_ids(messages[-1].content), 99))


register_script("rubric-prose-fenced", _prose_fenced)
register_script("rubric-off-scale", _off_scale)
register_script("score-99", lambda messages, params: "99")


def test_a_fenced_reply_after_prose_is_judged_and_an_off_scale_one_fails_as_such() -> None:
    ids = ["violence-weapons", "self-harm"]
    [fenced] = charter.judge_pairs([PAIR], judge="scripted:rubric-prose-fenced", mode="rubric", principles=ids)
    [plain] = charter.judge_pairs([PAIR], judge="scripted:cai", mode="rubric", principles=ids)
    assert fenced.status == "ok" and fenced.p_a == plain.p_a
    [off] = charter.judge_pairs([PAIR], judge="scripted:rubric-off-scale", mode="rubric", principles=ids, max_reasks=1)
    assert off.status == "failed" and off.failure is not None and off.failure.kind == "out_of_scale"
    assert off.failure.message == (
        "principle 'violence-weapons' scored 99, outside the scale 1 to 5; principle 'self-harm' scored 99, outside "
        "the scale 1 to 5 in the judge's reply after 2 tries"
    )


def test_a_single_score_outside_the_scale_is_recorded_as_such() -> None:
    [off] = charter.judge_pairs([PAIR], judge="scripted:score-99", mode="score", rating="verdict", max_reasks=1)
    assert off.failure is not None and off.failure.kind == "out_of_scale" and off.failure.raw == "99"
    assert off.failure.message == "a score outside the scale in the judge's reply after 2 tries"


def _length_rater(messages, params):  # noqa: ANN001, ANN202 - scores a response by its length, whatever the principle
    SEEN.append(params.json_schema)
    last = messages[-1].content
    rated = read_rating(last) or ""
    score = min(5, 1 + len(rated.split()) // 15)
    ids = read_rubric_ids(last)
    return str(score) if ids is None else json.dumps({pid: score for pid in ids})


register_script("length-rater-test", _length_rater)


def test_on_the_shared_hhh_pairs_rubric_votes_equal_score_votes_in_a_third_of_the_calls(shared_data: Path) -> None:
    from charter.agreement.evaluate import load_pairs_file, select, to_pair

    rows = select(load_pairs_file(shared_data / "human_preferences" / "hhh_harmless_helpful.jsonl"), 20, 0)
    pairs = [to_pair(r, 0)[0] for r in rows]
    judged = {}
    for mode in ("score", "rubric"):
        SEEN.clear()
        settings = {"mode": mode, "rating": "verdict", "principles_per_pair": 3}
        judged[mode] = charter.judge_pairs(pairs, judge="scripted:length-rater-test", settings=settings)
        assert all(j.status == "ok" and len(j.principles) == 3 for j in judged[mode])
        assert len(SEEN) == (2 if mode == "rubric" else 6) * len(pairs)
    votes = {
        m: [[(v.principle_id, v.score_a, v.score_b, v.p_a) for v in j.principles] for j in js]
        for m, js in judged.items()
    }
    assert votes["rubric"] == votes["score"] and len({v[1] != v[2] for vs in votes["rubric"] for v in vs}) == 2


def _mixed(messages, params):  # noqa: ANN001, ANN202 - a script: even seeds comply, odd seeds refuse
    last = messages[-1].content
    if read_rating(last) is not None or "Response (A):" in last:
        return _cai(messages, params)
    return f"{HARMFUL_OPENING if (params.seed or 0) % 2 == 0 else REFUSAL_OPENING} ({params.seed})"


register_script("mixed-policy-rubric", _mixed, _cai_choice)


def test_a_run_ranks_k_samples_with_one_call_per_sample(tmp_path: Path) -> None:
    config = {
        "name": "ranked",
        "output_dir": str(tmp_path / "run"),
        "constitution": "harmless",
        "prompts": {"inline": ["How do I pick a lock?", "How do I hotwire a car?"]},
        "policy": {"model": "scripted:mixed-policy-rubric", "params": {"temperature": 1.0}},
        "judge": {"model": "scripted:mixed-policy-rubric", "mode": "rubric", "principles_per_pair": 2},
        "pairs": {"kinds": ["samples"], "k": 4},
        "stages": ["critique", "judge"],
        "cache": str(tmp_path / "cache.sqlite"),
    }
    result = charter.run(charter.pipeline.config.RunConfig.model_validate(config))
    rows = pq.read_table(result.preferences).to_pylist()
    assert len(rows) == 2 and all(r["score_chosen"] == 5.0 and r["score_rejected"] == 1.0 for r in rows)
    usage = {(u.role, u.model): u for u in stored_usage(charter.runs.store.RunStore(result.run_dir))}
    judge = usage[("judge", "scripted:mixed-policy-rubric")]
    assert judge.calls == 2 * 4  # one call a sample for both principles (mode score: 2 * 4 * 2)


def test_a_principle_scored_twice_differently_fails_with_both_scores() -> None:
    """A repeated key, or a second object, that scores a principle differently fails it (both scores named); scores
    that agree, and principles only one object scores, are read."""
    got = read_rubric('{"a": 5, "b": 3, "a": 1}', ["a", "b"], 5)
    assert got["b"] == 3 and isinstance(got["a"], charter.errors.JudgeParseError)
    assert "disagree" in str(got["a"]) and "5; 1" in str(got["a"])
    got = read_rubric('{"a": 4, "b": 2}\nCorrection: {"a": 4.0, "b": 5}', ["a", "b"], 5)
    assert got["a"] == 4 and isinstance(got["b"], charter.errors.JudgeParseError)
    assert read_rubric('{"a": 4, "b": 2}\nAnd: {"a": 4}', ["a", "b"], 5) == {"a": 4, "b": 2}
