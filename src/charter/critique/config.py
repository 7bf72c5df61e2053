"""The run config's `critique:` section."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from charter.yamlio import ConfigModel


class CritiqueConfig(ConfigModel):
    """SL-CAI: critique then revise, N rounds."""

    rounds: int = Field(default=1, ge=1)
    """Critique-revision rounds per prompt."""
    principles: list[str] | None = None
    """Fixed principle ids, one per round (cycled); default: sample by weight, seeded."""
    few_shot: bool = True
    """Put the constitution's worked examples in front of each critique."""
    spec_examples: int = Field(default=0, ge=0, le=8)
    """Before each critique under a principle imported from a prose spec, show up to this many of its own examples
    as worked examples: the conversation, the reply the spec calls bad, a critique (the spec's reason, where it gives
    one), and the reply it calls good as the revision. Never one whose conversation is the prompt's. 0 (the default):
    none, and chains and their fingerprints are as they were."""

    @model_serializer(mode="wrap")
    def _no_examples_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # left out at 0, so that a chain's fingerprint from before the setting existed stays the same
        data = handler(self)
        if not self.spec_examples:
            data.pop("spec_examples", None)
        return data
