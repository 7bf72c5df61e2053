"""`charter train reward CONFIG.yaml`, and the skeleton every `charter train` command shares (`run_trainer`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel

C = TypeVar("C", bound=BaseModel)
M = TypeVar("M", bound=Any)


def run_trainer(
    config_type: type[C], config: Path, overrides: list[str] | None, train: Callable[[C], M], saved: Callable[[C], str]
) -> tuple[C, M] | None:
    """Every `charter train` command's skeleton: load the YAML config (with its `--set` overrides) and train; on the
    main process, say where the model was saved (`saved`) and how the processes were laid out, and give the config
    and the metrics (None on the other processes)."""
    from charter.training.parallel import describe_parallel, is_main_process
    from charter.yamlio import load_model

    cfg = load_model(config_type, config, overrides)
    metrics = train(cfg)
    if not is_main_process():
        return None
    typer.echo(saved(cfg))
    typer.echo(describe_parallel(metrics["training"]))
    return cfg, metrics


def policy_saved(kind: str, out: Path) -> str:
    """The line that says where a trained policy went and how to load it."""
    return f"{kind} policy saved to {out} (use it as local:{out})"


def reward(
    config: Path = typer.Argument(..., help="YAML file with the reward_model settings (charter.reward_model.config)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a key: --set trl.num_train_epochs=2."),
) -> None:
    """Train a reward model (TRL RewardTrainer) and write the model, metrics.json and a model card."""
    from charter.reward_model.config import RewardModelConfig
    from charter.reward_model.train import output_dir_for, train_reward_model

    done = run_trainer(
        RewardModelConfig, config, set_, train_reward_model, lambda cfg: f"reward model saved to {output_dir_for(cfg)}"
    )
    if done is None:
        return
    _, metrics = done
    for key in ("held_out_accuracy", "train_accuracy", "mean_reward_gap"):
        value = metrics.get(key)
        if value is not None:
            typer.echo(f"  {key}: {value:.3f}")
    for path, result in metrics.get("human_eval", {}).items():
        typer.echo(f"  human pairs {Path(path).name}: accuracy {result['accuracy']:.3f} (n={result['n']})")
