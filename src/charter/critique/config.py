"""The run config's `critique:` section."""

from __future__ import annotations

from pydantic import Field

from charter.yamlio import ConfigModel


class CritiqueConfig(ConfigModel):
    """SL-CAI: critique then revise, N rounds."""

    rounds: int = Field(default=1, ge=1)
    """Critique-revision rounds per prompt."""
    principles: list[str] | None = None
    """Fixed principle ids, one per round (cycled); default: sample by weight, seeded."""
    few_shot: bool = True
    """Put the constitution's worked examples in front of each critique."""
