"""Providers are registered in one place each; a package adds its own through the `charter.providers` entry-point
group, and then works everywhere a model string does."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest

from charter.errors import ConfigError, UnknownModel
from charter.pipeline.config import RoleConfig
from charter.providers import SamplingParams, get_model, registry


@pytest.fixture
def plugins(monkeypatch):
    """Entry points as installed packages would declare them: a working provider and a broken one."""
    found = [
        importlib.metadata.EntryPoint("shout", "tests.providers.plugin_provider:PROVIDER", registry.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("broken", "tests.providers.no_such_module:PROVIDER", registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: found if group == registry.ENTRY_POINT_GROUP else []
    )
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_PROVIDERS", dict(registry._PROVIDERS))
    yield


async def test_a_plugin_provider_works_like_a_built_in_one(plugins, caplog):
    caplog.set_level(logging.WARNING)
    chat = get_model("shout:loud")
    [completion] = await chat.generate([[{"role": "user", "content": "hello"}]], SamplingParams())
    assert completion.text == "HELLO" and chat.model_id == "shout:loud"
    assert "tests.providers.no_such_module:PROVIDER" in caplog.text  # a broken plugin is one warning, no more
    assert RoleConfig.model_validate({"model": "shout:loud", "options": {"latency_s": 0}}).backend()
    with pytest.raises(ValueError, match="not known to the shout provider"):
        RoleConfig.model_validate({"model": "shout:loud", "options": {"dtype": "float32"}})
    with pytest.raises(ValueError, match="takes no key"):
        RoleConfig.model_validate({"model": "shout:loud", "api_key_env": "K"})


def test_every_built_in_provider_is_one_entry():
    built_in = {"openai", "anthropic", "openai-compatible", "local", "scripted"}
    assert built_in <= set(registry.providers())
    for name in built_in:
        entry = registry.provider(name)
        assert entry.name == name and callable(entry.create)
        assert (entry.endpoint is not None) == (name in {"openai", "anthropic", "openai-compatible"})


def test_unknown_providers_and_options_are_one_line():
    with pytest.raises(UnknownModel, match="unknown provider 'nope'"):
        get_model("nope:m")
    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):
        get_model("local:smollm2-135m-instruct", dtype="float8")


async def test_a_scripted_roles_limits_are_honoured():
    import asyncio
    import time

    from charter.records import Message

    role = RoleConfig.model_validate(
        {"model": "scripted:echo", "limits": {"concurrency": 2}, "options": {"latency_s": 0.05}}
    )
    backend = role.backend()
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(backend.generate([[Message(role="user", content=f"q{i}")]], SamplingParams()) for i in range(6))
    )
    assert [r[0].text for r in replies] == [f"q{i}" for i in range(6)]
    assert time.perf_counter() - started >= 3 * 0.05 * 0.95  # two at a time: three rounds of 50 ms
