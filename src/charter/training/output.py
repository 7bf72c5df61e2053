"""A trainer's output folder: where it is, the trained model saved into it, and its JSON files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charter.runs.files import RunFiles
from charter.training.data import require_dataset, run_dir_of


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
