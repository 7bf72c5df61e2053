"""Model cards (README.md with YAML metadata) for charter-trained models: the base model and the provenance."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from charter._version import __version__


def provenance(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Distinct provenance values (constitution, models, run ids) found in the dataset rows."""
    keys = (
        "constitution_name",
        "constitution_hash",
        "policy_model",
        "critic_model",
        "judge_model",
        "judge_mode",
        "run_id",
    )
    found: dict[str, list[str]] = {}
    for key in keys:
        values = sorted({str(r[key]) for r in rows if r.get(key) is not None})
        if values:
            found[key] = values[:5]
    return found


def base_model(name: str) -> str | None:
    """A Hub id for the card's base_model field; local folders and aliases have none."""
    aliases = {
        "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
        "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
    if name in aliases:
        return aliases[name]
    return name if name.count("/") == 1 and not Path(name).exists() else None


def render_card(
    kind: str,
    model: str,
    dataset: str,
    metrics: Mapping[str, Any],
    rows: list[dict[str, Any]],
    tags: list[str],
    sections: Sequence[str] = (),
) -> Any:
    """A huggingface_hub ModelCard for a charter-trained model; `sections`: markdown lines put after the metrics."""
    from huggingface_hub import ModelCard, ModelCardData

    base = base_model(model)
    card_data = ModelCardData(
        library_name="transformers", tags=["charter", "trl", *tags], base_model=base, license=None
    )
    summary = {
        k: v for k, v in metrics.items() if k not in ("config", "reward_chosen", "reward_rejected", "winrate_eval")
    }
    prov = provenance(rows)
    lines = [
        f"# {kind} trained with charter",
        "",
        f"Trained with charter {__version__} (TRL) from `{model}` on `{dataset}`"
        f" ({len(rows)} preference pairs, AI-judged against a constitution unless noted).",
        "",
        "## Metrics",
        "",
        "```json",
        json.dumps(summary, indent=2, default=str),
        "```",
        "",
        *sections,
    ]
    if "reward_chosen" in metrics:
        lines += ["## Reward distribution", "", "| | mean | std | median |", "|---|---|---|---|"]
        for name in ("reward_chosen", "reward_rejected"):
            d = metrics[name]
            if d.get("n"):
                lines.append(f"| {name[7:]} | {d['mean']:.3f} | {d['std']:.3f} | {d['quantiles']['0.5']:.3f} |")
        lines.append("")
    if prov:
        lines += ["## Provenance", ""] + [f"- {k}: {', '.join(v)}" for k, v in prov.items()] + [""]
    lines += [
        "## Training config",
        "",
        "```json",
        json.dumps(metrics.get("config", {}), indent=2, default=str),
        "```",
        "",
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))
