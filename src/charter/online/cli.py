"""`charter train grpo CONFIG.yaml` and `charter train rloo CONFIG.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from charter.reward_model.cli import policy_saved, run_trainer

CONFIG_HELP = "YAML file with the online-training settings (charter.online.config)."
SET_HELP = "Override a key: --set trl.max_steps=30."


def grpo(
    config: Path = typer.Argument(..., help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Train a policy with GRPO (TRL GRPOTrainer), the constitutional judge as its reward."""
    _train(config, set_, "grpo")


def rloo(
    config: Path = typer.Argument(..., help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Train a policy with RLOO (TRL RLOOTrainer), the constitutional judge as its reward."""
    _train(config, set_, "rloo")


def online_dpo(
    config: Path = typer.Argument(..., help=CONFIG_HELP),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Train a policy with online DPO (TRL OnlineDPOTrainer): pairs of its own completions, decided by the judge."""
    from charter.online.config import OnlineDPOConfig
    from charter.online.dpo import train_online_dpo

    done = run_trainer(
        OnlineDPOConfig, config, set_, train_online_dpo, lambda cfg: policy_saved("Online DPO", cfg.output_dir)
    )
    if done is None:
        return
    cfg, metrics = done
    out, usage, masked = cfg.output_dir, metrics["usage"], metrics["masked"]
    typer.echo(
        f"  {metrics['pairs']} pairs: {metrics['trained']} trained, masked {masked['failed']} failed and "
        f"{masked['undecided']} undecided; judge calls {usage['calls']} paid, {usage['cached']} cached, "
        f"${usage['cost_usd']:.4f}"
    )
    if metrics["skipped_steps"]:
        typer.echo(f"  {metrics['skipped_steps']} step(s) skipped: every pair masked, no optimizer step")
    _monitor_line(metrics)
    typer.echo(f"  reward store: {out}/run.sqlite; metrics: {out}/metrics.json; report: {out}/report/report.html")


def _train(config: Path, overrides: list[str] | None, trainer: str) -> None:
    from charter.online.config import OnlineConfig
    from charter.online.metrics import OnlineMetrics
    from charter.online.train import train_online

    def train(cfg: OnlineConfig) -> OnlineMetrics:
        return train_online(cfg, "grpo" if trainer == "grpo" else "rloo")

    done = run_trainer(
        OnlineConfig, config, overrides, train, lambda cfg: policy_saved(trainer.upper(), cfg.output_dir)
    )
    if done is None:
        return
    cfg, metrics = done
    out = cfg.output_dir
    steps, usage = metrics["steps"], metrics["usage"]
    if steps:
        first, last = steps[0]["mean"], steps[-1]["mean"]
        shown = " -> ".join("n/a" if v is None else f"{v:.3f}" for v in (first, last))
        typer.echo(f"  mean judge reward, first -> last step: {shown}")
    typer.echo(
        f"  {metrics['rewards']} rewards, {metrics['failures']} failed judgments; judge calls {usage['calls']} paid, "
        f"{usage['cached']} cached, ${usage['cost_usd']:.4f}"
    )
    _monitor_line(metrics)
    typer.echo(f"  reward store: {out}/run.sqlite; metrics: {out}/metrics.json; report: {out}/report/report.html")


def _monitor_line(metrics: Any) -> None:
    """The gold monitor's verdict in one line, where the run had one."""
    monitor = metrics.get("monitor")
    if monitor:
        flag = f"FLAGGED at step {monitor['flagged_at']}" if monitor["flagged_at"] is not None else "no step flagged"
        typer.echo(
            f"  gold monitor: {flag}; gold-best step {monitor['best_step']}"
            + (f" ({monitor['best_checkpoint']})" if monitor["best_checkpoint"] else "")
            + (f"; {monitor['stopped']}" if monitor["stopped"] else "")
        )
