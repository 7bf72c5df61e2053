"""A trainer's output folder: where it is, the trained model saved into it, its JSON files, the summary of how the
training went (the form every offline trainer's metrics.json shares) and the model card (README.md with YAML
metadata: the base model and the provenance)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from charter._version import __version__
from charter.runs.files import RunFiles
from charter.training.data import require_dataset, run_dir_of
from charter.training.parallel import ParallelSettings, parallel_settings


def output_folder(config: Any, in_run: Callable[[RunFiles], Path], default: str) -> Path:
    """The configured `output_dir`; else, when the dataset is a run directory, the folder `in_run` names in it;
    else `./default`."""
    if config.output_dir is not None:
        return Path(config.output_dir)
    run_dir = run_dir_of(require_dataset(config))
    return in_run(RunFiles(run_dir)) if run_dir else Path(default)


def save_trained(trainer: Any, tokenizer: Any, out: Path, merge_lora: bool) -> Any:
    """Save the trained model as a plain transformers folder (LoRA adapters merged in); returns the model.

    Every process calls it (under DeepSpeed ZeRO-3, gathering the weights to save is collective); only the main
    process writes."""
    main = trainer.is_world_process_zero()
    if merge_lora:
        model = trainer.model.merge_and_unload()
        if main:
            model.save_pretrained(str(out))
    else:
        model = trainer.model
        trainer.save_model(str(out))
    if main:
        tokenizer.save_pretrained(str(out))
    return model


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, written whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


class TrainingSummary(ParallelSettings):
    """How a training went: loss, steps, time, data sizes, device, and the parallel settings."""

    train_loss: float
    """TRL's mean training loss over the steps this call ran."""
    global_step: int
    """Optimizer steps at the end, those of a checkpoint resumed from included."""
    seconds: float
    """Wall-clock seconds training took, rounded to 0.01."""
    resumed_from: str | None
    """The checkpoint folder training resumed from (`checkpoint-N`); None for a fresh start."""
    train_pairs: int
    """Pairs trained on."""
    held_out_pairs: int
    """Pairs held out for evaluation (`eval_fraction`)."""
    device: str
    """Where training ran: cpu or cuda."""


def training_summary(
    trainer: Any,
    result: Any,
    seconds: float,
    resume: str | None,
    pairs: tuple[int, int],
    device: str,
    details: Mapping[str, Any] = MappingProxyType({}),
) -> TrainingSummary:
    """The summary of a finished `trainer.train()` call.

    Args:
        trainer: The transformers/TRL trainer that trained.
        result: What its `train()` returned (the mean training loss).
        seconds: Wall-clock seconds training took.
        resume: The checkpoint folder training resumed from, or None.
        pairs: Pairs trained on and pairs held out.
        device: Where training ran.
        details: A trainer's own fields, placed after `device` (a subclass of `TrainingSummary` declares them).
    """
    summary = {
        "train_loss": result.training_loss,
        **progress(trainer, seconds, resume),
        "train_pairs": pairs[0],
        "held_out_pairs": pairs[1],
        "device": device,
        **details,
        **parallel_settings(trainer.args),
    }
    return cast(TrainingSummary, summary)


def progress(trainer: Any, seconds: float, resume: str | None) -> dict[str, Any]:
    """How far a training went: its optimizer steps, its seconds (to 0.01), the checkpoint it resumed from."""
    return {
        "global_step": trainer.state.global_step,
        "seconds": round(seconds, 2),
        "resumed_from": Path(resume).name if resume else None,
    }


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


def data_origin(rows: list[dict[str, Any]]) -> list[str]:
    """The card's lines on where the training rows come from: the synthetic share, where the rows say (a `synthetic`
    column, as `charter mix` and `charter iterate` write); none where no row does."""
    marked = [r for r in rows if r.get("synthetic") is not None]
    if not marked:
        return []
    synthetic = sum(1 for r in marked if r["synthetic"])
    unmarked = f" ({len(rows) - len(marked)} rows do not say)" if len(marked) < len(rows) else ""
    return [
        "## Training data",
        "",
        f"Synthetic share: {synthetic / len(marked):.1%}: {synthetic} of {len(marked)} rows generated by charter, "
        f"{len(marked) - synthetic} real (human or source pairs){unmarked}.",
        "",
    ]


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
    lines += data_origin(rows)
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
