"""`charter train dpo CONFIG.yaml`."""

from __future__ import annotations

from pathlib import Path

import typer

from charter.reward_model.cli import policy_saved, run_trainer


def dpo(
    config: Path = typer.Argument(..., help="YAML file with the dpo settings (charter.dpo.config)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a key: --set trl.beta=0.2."),
) -> None:
    """DPO-train a policy (TRL DPOTrainer); the result loads as local:OUTPUT_DIR."""
    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import output_dir_for, train_dpo

    done = run_trainer(DPOConfigModel, config, set_, train_dpo, lambda cfg: policy_saved("DPO", output_dir_for(cfg)))
    if done is None:
        return
    _, metrics = done
    for split, values in metrics["after"].items():
        margin, acc = values.get("rewards/margins"), values.get("rewards/accuracies")
        if margin is not None:
            typer.echo(f"  {split}: reward margin {margin:.3f}, reward accuracy {acc:.3f}")
