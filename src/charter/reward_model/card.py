"""The model card (README.md with YAML metadata) of a trained reward model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from charter.training.card import render_card


def write_card(out: Path, config: Any, metrics: Mapping[str, Any], rows: list[dict[str, Any]]) -> Path:
    """README.md for a reward model folder."""
    card = render_card("Reward model", config.model, config.dataset, metrics, rows, ["reward-model"])
    path = out / "README.md"
    card.save(path)
    return path
