"""Fixtures for the provider tests: one loopback server per session (reset for each test), canary keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from charter.providers.base import Limits
from charter.testing.loopback import DEFAULT_LOGPROBS, LoopbackServer, echo_reply

CANARY_OPENAI = "sk-canary-openai-" + "7f3Kq9ZxW2mB8vL4"
CANARY_ANTHROPIC = "sk-ant-canary-" + "Yt6Hn1Pq0Rs5Uv9W"

#: Limits for tests: real retries, tiny waits.
FAST = Limits(concurrency=8, max_retries=3, timeout_s=2.0, backoff_initial_s=0.01, backoff_max_s=0.2)


@pytest.fixture(scope="session")
def _server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(_server: LoopbackServer) -> Iterator[LoopbackServer]:
    """The loopback server, with no delay, no script and no recorded requests."""
    _server.reset()
    _server.delay_s, _server.reply, _server.logprobs = 0.0, echo_reply, dict(DEFAULT_LOGPROBS)
    yield _server
    _server.reset()


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_OPENAI)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return CANARY_OPENAI


@pytest.fixture
def anthropic_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_ANTHROPIC)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    return CANARY_ANTHROPIC
