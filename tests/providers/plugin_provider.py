"""A provider as a third-party package would register it (through the `charter.providers` entry-point group)."""

from __future__ import annotations

from typing import Any

from charter.providers import Limits, Provider, ScriptedModel
from charter.providers.registry import ModelSpec


class ShoutModel(ScriptedModel):
    provider = "shout"  # type: ignore[assignment]


def _create(spec: ModelSpec, limits: Limits, api_key_env: str | None, options: dict[str, Any]) -> ShoutModel:
    return ShoutModel(spec.name, fn=lambda messages, params: messages[-1].content.upper(), **options)


PROVIDER = Provider("shout", _create, options=("latency_s",))
