"""Canary keys must never reach a log line, a cache row or an error message; a missing key is one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from charter.cli import main
from charter.errors import ProviderError
from charter.providers import CallCache, SamplingParams, get_model
from charter.testing.loopback import drop, status

from .conftest import FAST

HELLO = [{"role": "user", "content": "hello"}]


def _leaks(secret: str, *texts: str) -> list[str]:
    """The texts that contain the secret, or a long enough piece of it to matter."""
    pieces = {secret, secret[-12:], secret[:16]}
    return [t for t in texts if any(p in t for p in pieces)]


def _cache_bytes(path: Path) -> bytes:
    """The database file and its WAL, as they lie on disk."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def _exercise(chat, server) -> list[str]:
    """Good calls, retried failures and a 401 whose body echoes the key; returns the error messages."""
    await chat.generate([HELLO, [{"role": "user", "content": "again"}]], SamplingParams(seed=1))
    server.script(status(429, retry_after_ms="10"), status(500), drop())
    await chat.generate([[{"role": "user", "content": "retried"}]], SamplingParams())
    server.script(status(401))
    with pytest.raises(ProviderError) as err:
        await chat.generate([[{"role": "user", "content": "denied"}]], SamplingParams())
    return [str(err.value), repr(err.value)]


CANARY_VENDOR = "sk-canary-vendor-" + "Qw8Er5Ty2Ui7Op4A"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_canary_key_goes_nowhere(
    provider, loopback, openai_key, anthropic_key, tmp_path, caplog, capfd, monkeypatch
):
    """At a host that is not the provider's own API, the role's named key is sent (and masked everywhere), and neither
    OPENAI_API_KEY nor ANTHROPIC_API_KEY is."""
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx's included
    monkeypatch.setenv("VENDOR_API_KEY", CANARY_VENDOR)
    cache_path = tmp_path / "cache.sqlite"
    monkeypatch.setenv("OPENAI_BASE_URL", loopback.openai_url)  # `openai:` honours the SDK's variable
    if provider == "openai":
        chat = get_model("openai:gpt-test", limits=FAST, cache=CallCache(cache_path), api_key_env="VENDOR_API_KEY")
    else:
        chat = get_model(
            "anthropic:claude-test",
            limits=FAST,
            cache=CallCache(cache_path),
            api_key_env="VENDOR_API_KEY",
            base_url=loopback.url,
        )
    errors = await _exercise(chat, loopback)
    await chat.aclose()
    chat.cache.close()

    sent = [" ".join(r.headers.values()) for r in loopback.requests]
    assert all(CANARY_VENDOR in h for h in sent)  # the named key was sent, on every request...
    assert not any(openai_key in h or anthropic_key in h for h in sent)  # ...and the official keys on none
    assert any("retry" in r.getMessage() for r in caplog.records)  # retries were logged...
    out, err = capfd.readouterr()
    logged = [r.getMessage() for r in caplog.records] + [caplog.text, out, err]
    for secret in (CANARY_VENDOR, openai_key, anthropic_key):  # ...and no key is in a log line, an error or the cache
        assert _leaks(secret, *logged, *errors) == []
        assert secret.encode() not in _cache_bytes(cache_path)
        assert secret[-12:].encode() not in _cache_bytes(cache_path)
    assert "echo: hello" in str(CallCache(cache_path).get_many(list(_keys(cache_path))))


def _keys(path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return [k for (k,) in db.execute("SELECT key FROM calls")]


def test_cli_missing_key_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["generate", "-m", "openai:gpt-4o-mini", "-p", "hi"])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "OPENAI_API_KEY" in lines[0] and "Traceback" not in err


def test_cli_rejected_key_is_not_echoed(loopback, openai_key, capsys):
    loopback.script(status(401))
    code = main(
        [
            "generate",
            "-m",
            f"openai-compatible:llama@{loopback.openai_url}",
            "-p",
            "hi",
            "--api-key-env",
            "OPENAI_API_KEY",
        ]
    )  # named: this host is meant to get it
    out, err = capsys.readouterr()
    assert code == 2 and "HTTP 401" in err and len(err.strip().splitlines()) == 1
    assert _leaks(openai_key, out, err) == []
    assert loopback.requests[0].headers["authorization"] == f"Bearer {openai_key}"
