"""Two settings, two names: the judge's `max_reasks` asks again where a reply cannot be read; the role's
`limits.max_retries` retries a call that failed (a host that is down, a 429, a 5xx). The judge's setting was once
called `max_retries` too: that name is still read as `max_reasks`, with one warning line that says which is which."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from pathlib import Path

import pytest
import yaml

import charter
from charter.errors import ConfigError
from charter.judge.settings import JudgeSettings
from charter.providers import Limits, get_model
from charter.providers.scripted import register_script

PAIR = {"prompt": "How do I pick a lock?", "a": "Ask a locksmith.", "b": "Use a pin."}
CALLS: Counter[str] = Counter()


def _mumble(messages, params) -> str:  # noqa: ANN001 - the scripted provider's signature
    CALLS["mumble"] += 1
    return "I really cannot decide."


register_script("reasks-mumble", _mumble)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_max_reasks_counts_the_re_asks_of_an_unreadable_reply() -> None:
    CALLS.clear()
    [judged] = charter.judge_pairs([PAIR], "scripted:reasks-mumble", mode="verdict", orders="one", max_reasks=1)
    assert judged.status == "failed" and judged.failure is not None and judged.failure.kind == "unparseable"
    assert CALLS["mumble"] == 2  # the first ask and one re-ask


def test_a_host_that_is_down_is_retried_by_the_roles_limits_not_by_max_reasks() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    for retries in (0, 2):
        limits = Limits(max_retries=retries, backoff_initial_s=0.0, backoff_max_s=0.0, timeout_s=2.0)
        model = get_model(f"openai-compatible:judge@{url}", limits=limits, cache=None)
        [judged] = charter.judge_pairs([PAIR], model, mode="verdict", orders="one", max_reasks=0)
        assert judged.status == "failed" and judged.failure is not None
        assert judged.failure.attempts == retries + 1  # max_reasks 0 leaves the call's own retries as they were


def test_the_former_name_is_read_as_max_reasks_with_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="charter"):
        settings = JudgeSettings(max_retries=0)  # type: ignore[call-arg]
    assert settings.max_reasks == 0 and "max_retries" not in JudgeSettings.model_fields
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("judge.max_retries is now judge.max_reasks: re-asks of a reply that cannot be read")
    assert "limits.max_retries" in line
    CALLS.clear()
    charter.judge_pairs([PAIR], "scripted:reasks-mumble", mode="verdict", orders="one", max_retries=2)
    assert CALLS["mumble"] == 3  # the former name, through the API, re-asks as max_reasks does


def test_both_names_at_once_is_one_error_naming_the_former() -> None:
    with pytest.raises(ConfigError, match="max_retries: the former name of max_reasks; give max_reasks only"):
        JudgeSettings(max_retries=0, max_reasks=1)  # type: ignore[call-arg]


def test_a_run_config_keeps_the_two_apart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = {
        "prompts": {"inline": ["hi"]},
        "policy": "scripted:cai",
        "judge": {"model": "scripted:cai", "mode": "verdict", "max_retries": 0, "limits": {"max_retries": 3}},
        "checklist": {"source": "model", "model": "scripted:cai", "max_retries": 1},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    with caplog.at_level(logging.WARNING, logger="charter"):
        loaded = charter.load_run_config(str(path))
    assert loaded.judge.max_reasks == 0 and loaded.judge.limits.max_retries == 3
    assert loaded.checklist is not None and loaded.checklist.max_reasks == 1
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "judge.max_retries is now judge.max_reasks",
        "checklist.max_retries is now checklist.max_reasks",
    ]
