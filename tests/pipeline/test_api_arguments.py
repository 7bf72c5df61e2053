"""The stage functions of the Python API say which argument is wrong, in one line, before any call is made."""

from __future__ import annotations

import pytest

import charter
from charter.errors import ArgumentError, DatasetError


def test_critique_chains_names_an_unknown_principle_and_a_bad_round_count() -> None:
    with pytest.raises(ArgumentError) as err:
        charter.critique_chains(["hi"], "harmless", "scripted:cai", principles=["self-harm", "no-such-rule"])
    assert err.value.argument == "principles" and "'no-such-rule' not in constitution 'harmless'" in str(err.value)
    assert "violence-weapons" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ArgumentError) as err:
        charter.critique_chains(["hi"], "harmless", "scripted:cai", rounds=0)
    assert err.value.argument == "rounds" and "must be at least 1 (got 0)" in str(err.value)


def test_judge_pairs_names_a_bad_setting_and_a_bad_pair_field() -> None:
    pair = {"prompt": "hi", "a": "hello", "b": "go away"}
    with pytest.raises(ArgumentError) as err:
        charter.judge_pairs([pair], "scripted:cai", mode="guess")
    assert err.value.argument == "mode" and "\n" not in str(err.value)
    with pytest.raises(ArgumentError, match="orderz: unknown argument"):
        charter.judge_pairs([pair], "scripted:cai", orderz="both")
    with pytest.raises(DatasetError, match=r"pairs\[1\]\.a: Input should be a valid string"):
        charter.judge_pairs([pair, {**pair, "a": 3}], "scripted:cai")
