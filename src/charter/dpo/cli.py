"""`charter train dpo CONFIG.yaml`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from charter.reward_model.cli import train_group

    train_group(app).command("dpo")(dpo)


def dpo(
    config: Path = typer.Argument(..., help="YAML file with the dpo settings (charter.dpo.config)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a key: --set trl.beta=0.2."),
) -> None:
    """DPO-train a policy (TRL DPOTrainer); the result loads as local:OUTPUT_DIR."""
    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import output_dir_for, train_dpo
    from charter.training.parallel import describe_parallel, is_main_process
    from charter.yamlio import load_model

    cfg = load_model(DPOConfigModel, config, set_)
    metrics = train_dpo(cfg)
    if not is_main_process():
        return
    out = output_dir_for(cfg)
    typer.echo(f"DPO policy saved to {out} (use it as local:{out})")
    typer.echo(describe_parallel(metrics["training"]))
    for split, values in metrics["after"].items():
        margin, acc = values.get("rewards/margins"), values.get("rewards/accuracies")
        if margin is not None:
            typer.echo(f"  {split}: reward margin {margin:.3f}, reward accuracy {acc:.3f}")
