"""`charter run`, `charter status` and `charter config schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

config_app = typer.Typer(help="The run config: its JSON Schema, for editors and validation.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("status")(status_command)
    config_app.command("schema")(schema_command)
    app.add_typer(config_app, name="config")


def run_command(
    config: Path = typer.Argument(..., help="Run config YAML."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key: key.sub=value (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check config, constitution, prompts and credentials only."),
) -> None:
    """Run (or resume) a pipeline from a YAML config."""
    from charter.pipeline.config import load_run_config
    from charter.pipeline.run import Runner, run
    from charter.progress import console

    cfg = load_run_config(config, set_)
    if dry_run:  # the same checks a run makes before it writes anything
        runner = Runner(cfg, str(config))
        prompts = runner.prepare()
        count = f"{len(prompts.rows)} prompts" if prompts is not None else "the run's stored prompts"
        console.print(f"[green]ok[/green] {config}: constitution {runner.constitution.name} "
                      f"({runner.constitution.short_hash}), {count}, stages {', '.join(cfg.stages)}, "
                      f"policy {cfg.policy.model}, critic {cfg.critic_role.model}, judge {cfg.judge.model}")
        return
    result = run(cfg, str(config))
    c = result.counts
    console.print(f"[bold green]done[/bold green]: {c.get('chains', 0)} chains, {c.get('judged', 0)} judged pairs, "
                  f"{c.get('preferences', 0)} preference rows ({c.get('judge_failures', 0)} judge failures)")
    console.print(f"  preferences: {result.preferences}")
    console.print(f"  sft:         {result.sft}")
    for stage in ("reward_model", "dpo"):
        if stage in result.training:
            console.print(f"  {stage + ':':<13}{result.run_dir / stage}")
    if "eval" in result.training:
        win = result.training["eval"]
        if win["win_rate"] is None:
            console.print(f"  win rate:    no judgment succeeded ({win['failures']} failures)")
        else:
            low, high = win["ci95"]
            console.print(f"  win rate:    {win['win_rate']:.3f} (95% CI {low:.3f}-{high:.3f}) of {win['candidate']} "
                          f"against {win['base']}")
    if result.report:
        console.print(f"  report:      {result.report}")


def status_command(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Stage progress, counts, failures, tokens and cost of a run."""
    from charter.pipeline.status import print_status

    print_status(run_dir)


def schema_command(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the schema here instead of stdout."),
) -> None:
    """Print the JSON Schema of the run config (point a YAML language server at it for completion and checks)."""
    from charter.pipeline.config import RunConfig

    text = json.dumps(RunConfig.model_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
