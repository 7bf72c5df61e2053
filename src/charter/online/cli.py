"""`charter train grpo CONFIG.yaml` and `charter train rloo CONFIG.yaml`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from charter.reward_model.cli import train_group

    group = train_group(app)
    group.command("grpo")(grpo)
    group.command("rloo")(rloo)
    group.command("online-dpo")(online_dpo)


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
    from charter.training.parallel import describe_parallel, is_main_process
    from charter.yamlio import load_model

    cfg = load_model(OnlineDPOConfig, config, set_)
    metrics = train_online_dpo(cfg)
    if not is_main_process():
        return
    out, usage, masked = cfg.output_dir, metrics["usage"], metrics["masked"]
    typer.echo(f"Online DPO policy saved to {out} (use it as local:{out})")
    typer.echo(describe_parallel(metrics["training"]))
    typer.echo(
        f"  {metrics['pairs']} pairs: {metrics['trained']} trained, masked {masked['failed']} failed and "
        f"{masked['undecided']} undecided; judge calls {usage['calls']} paid, {usage['cached']} cached, "
        f"${usage['cost_usd']:.4f}"
    )
    if metrics["skipped_steps"]:
        typer.echo(f"  {metrics['skipped_steps']} step(s) skipped: every pair masked, no optimizer step")
    typer.echo(f"  reward store: {out}/run.sqlite; metrics: {out}/metrics.json; report: {out}/report/report.html")


def _train(config: Path, overrides: list[str] | None, trainer: str) -> None:
    from charter.online.config import OnlineConfig
    from charter.online.train import train_online
    from charter.training.parallel import describe_parallel, is_main_process
    from charter.yamlio import load_model

    cfg = load_model(OnlineConfig, config, overrides)
    metrics = train_online(cfg, "grpo" if trainer == "grpo" else "rloo")
    if not is_main_process():
        return
    out = cfg.output_dir
    typer.echo(f"{trainer.upper()} policy saved to {out} (use it as local:{out})")
    typer.echo(describe_parallel(metrics["training"]))
    steps, usage = metrics["steps"], metrics["usage"]
    if steps:
        first, last = steps[0]["mean"], steps[-1]["mean"]
        shown = " -> ".join("n/a" if v is None else f"{v:.3f}" for v in (first, last))
        typer.echo(f"  mean judge reward, first -> last step: {shown}")
    typer.echo(
        f"  {metrics['rewards']} rewards, {metrics['failures']} failed judgments; judge calls {usage['calls']} paid, "
        f"{usage['cached']} cached, ${usage['cost_usd']:.4f}"
    )
    typer.echo(f"  reward store: {out}/run.sqlite; metrics: {out}/metrics.json; report: {out}/report/report.html")
