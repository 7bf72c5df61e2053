"""`charter.reward_function` judges only what it is given: a completion is a string or a list of messages, anything
else (a list of strings, bytes, a string in place of the list) is one `ConfigError` naming the index; lengths, the
reference column, `concurrency`, `max_failures`, `RANK` and `WORLD_SIZE` are checked before a judge call."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import charter
from charter.errors import ArgumentError, CharterError, ConfigError
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.reward.function import Scoring
from charter.reward.session import check_batch

PROMPT = "How do I pick a lock?"
HARMFUL, SAFE = f"{HARMFUL_OPENING} step one", f"{REFUSAL_OPENING} ask a locksmith"


def make(tmp_path: Path, scoring: Scoring = "score", **kw: Any) -> Any:
    kw = {"rating": "verdict"} | kw if scoring == "score" else {"mode": "verdict"} | kw
    return charter.reward_function(
        "scripted:cai", "harmless", scoring, store=tmp_path / "rewards", cache=tmp_path / "c.sqlite", **kw
    )


def judge_calls(fn: Any) -> int:
    return sum(t.calls for t in fn.judge.meter.tallies.values())


def test_the_harmful_text_is_judged_harmful_in_every_accepted_shape(tmp_path: Path) -> None:
    fn = make(tmp_path)
    as_message = [{"role": "assistant", "content": HARMFUL}]
    assert fn(prompts=[PROMPT, [{"role": "user", "content": PROMPT}]], completions=[HARMFUL, as_message]) == [0.0, 0.0]
    fn.close()


@pytest.mark.parametrize(
    "completion, where, words",
    [
        ([HARMFUL], "completions[0][0] is str", "a message is {role, content}"),  # was judged as "" and got 1.0
        (HARMFUL.encode(), "completions[0] must be a string or a list", "not bytes"),
        ([{"role": "assistant", "content": HARMFUL.encode()}], "completions[0][0] has 'content' bytes", "not a string"),
        ([{"content": HARMFUL}], "completions[0][0] has no string 'role'", "{role, content}"),
        ([], "completions[0] is an empty list of messages", ""),
        (None, "completions[0] must be a string or a list", "not NoneType"),
        (42, "completions[0] must be a string or a list", "not int"),
    ],
    ids=["list-of-strings", "bytes", "bytes-content", "no-role", "no-messages", "none", "int"],
)
def test_a_completion_of_another_shape_is_one_error_naming_its_index(
    tmp_path: Path, completion: Any, where: str, words: str
) -> None:
    fn = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        fn(prompts=[PROMPT], completions=[completion])
    message = str(err.value)
    assert "\n" not in message and f"reward function: {where}" in message and words in message, message
    assert judge_calls(fn) == 0
    fn.close()


def test_the_index_named_is_the_bad_completion(tmp_path: Path) -> None:
    fn = make(tmp_path)
    with pytest.raises(ConfigError, match=r"completions\[2\]\[0\] is str"):
        fn(prompts=[PROMPT] * 3, completions=[SAFE, [{"role": "assistant", "content": SAFE}], [HARMFUL]])
    fn.close()


def test_a_string_in_place_of_a_list_is_not_judged_by_the_character(tmp_path: Path) -> None:
    fn = make(tmp_path)
    with pytest.raises(ConfigError, match=r"reward function: completions must be a list \(one item a row\), not str"):
        fn(prompts=["a", "b"], completions="ab")
    with pytest.raises(ConfigError, match=r"reward function: prompts must be a list \(one item a row\), not str"):
        fn(prompts="ab", completions=[SAFE, SAFE])
    with pytest.raises(ConfigError, match="reward function: 2 prompts but 1 completions"):
        fn(prompts=[PROMPT, PROMPT], completions=[SAFE])
    with pytest.raises(ConfigError, match=r"reward function: prompts\[0\]\[0\] is str"):
        fn(prompts=[[PROMPT]], completions=[SAFE])
    assert judge_calls(fn) == 0
    fn.close()


def test_a_message_with_tool_calls_may_leave_out_its_content() -> None:
    tool = {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]}
    check_batch([PROMPT], [[tool, {"role": "tool", "content": "42"}]])
    with pytest.raises(ConfigError, match=r"completions\[0\]\[0\] has 'content' NoneType"):
        check_batch([PROMPT], [[{"role": "assistant", "content": None}]])


def test_a_reference_column_of_another_length_is_an_error_not_an_index_error(tmp_path: Path) -> None:
    fn = make(tmp_path, "reference")
    with pytest.raises(ConfigError, match="reward function: 2 prompts but 1 values in 'reference'"):
        fn(prompts=[PROMPT, PROMPT], completions=[SAFE, HARMFUL], reference=[HARMFUL])
    with pytest.raises(ConfigError, match=r"reward function: reference must be a list \(one item a row\), not str"):
        fn(prompts=[PROMPT], completions=[SAFE], reference=HARMFUL)
    with pytest.raises(ConfigError, match=r"reward function: reference\[0\] must be a string or a list"):
        fn(prompts=[PROMPT], completions=[SAFE], reference=[HARMFUL.encode()])
    assert judge_calls(fn) == 0
    # a reference given as messages is read as its text
    assert fn(prompts=[PROMPT], completions=[SAFE], reference=[[{"role": "assistant", "content": HARMFUL}]]) == [1.0]
    fn.close()


def test_a_scoring_that_reads_no_reference_does_not_check_the_column(tmp_path: Path) -> None:
    fn = make(tmp_path)  # `score` reads no reference: a dataset's column of that name is TRL's, not ours
    assert fn(prompts=[PROMPT], completions=[SAFE], reference=["x", "y"]) == [1.0]
    fn.close()


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "4"])
def test_concurrency_below_one_is_refused_before_a_call_can_hang(tmp_path: Path, concurrency: Any) -> None:
    with pytest.raises(CharterError, match="concurrency") as refused:  # the API's argument check or the function's
        make(tmp_path, concurrency=concurrency)
    assert isinstance(refused.value, ArgumentError | ConfigError) and len(str(refused.value).splitlines()) == 1


def test_a_function_built_with_concurrency_0_raises_instead_of_hanging(tmp_path: Path) -> None:
    fn = make(tmp_path)
    fn.concurrency = 0  # as a RewardFunction built without reward_function could be
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            fn(prompts=[PROMPT], completions=[SAFE])
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test reports what the call raised
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert outcome and isinstance(outcome[0], ConfigError), "the call hung or did not raise"
    assert "concurrency must be a whole number of at least 1" in str(outcome[0])


@pytest.mark.parametrize("max_failures", [-1, -0.1, math.nan, math.inf, None, "0.1", False])
def test_max_failures_must_be_a_finite_number_of_at_least_0(tmp_path: Path, max_failures: Any) -> None:
    with pytest.raises(CharterError, match="max_failures") as refused:
        make(tmp_path, max_failures=max_failures)
    assert isinstance(refused.value, ArgumentError | ConfigError) and len(str(refused.value).splitlines()) == 1


def test_max_failures_0_and_a_count_are_accepted(tmp_path: Path) -> None:
    make(tmp_path / "a", max_failures=0).close()
    make(tmp_path / "b", max_failures=3).close()
    make(tmp_path / "c", max_failures=np.float64(0.2), concurrency=np.int64(8)).close()  # numbers from numpy too


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RANK": "abc"}, "RANK='abc': expected a whole number (set by torchrun or accelerate)"),
        ({"RANK": "-1"}, "RANK=-1: expected a whole number of at least 0"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': expected a whole number (set by torchrun or accelerate)"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0: expected a whole number of at least 1"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2: expected a rank below WORLD_SIZE=2"),
    ],
    ids=["rank-abc", "rank-negative", "world-two", "world-0", "rank-past-world"],
)
def test_rank_and_world_size_are_read_with_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        make(tmp_path)
    assert str(err.value) == message


def test_rank_and_world_size_set_as_torchrun_sets_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    fn = make(tmp_path)
    assert (fn.rank, fn.ranks) == (1, 2) and fn.store.run_dir == tmp_path / "rewards" / "ranks" / "rank-1"
    fn.close()
