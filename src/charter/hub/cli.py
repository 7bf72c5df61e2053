"""`charter push`: publish a run to the Hugging Face Hub (or write the folder that would be uploaded)."""

from __future__ import annotations

from pathlib import Path

import typer


def push(
    run_dir: Path = typer.Argument(..., help="The run directory (holds run.sqlite and data/)."),
    repo_id: str = typer.Option(..., "--repo-id", help="The dataset repository, ORG/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to commit to (created if missing)."),
    dry_run: Path | None = typer.Option(
        None, "--dry-run", help="Write exactly the folder that would be uploaded to DIR; upload nothing."
    ),
    override_gate: bool = typer.Option(
        False,
        "--override-gate",
        help="Publish even if the agreement, audit or constitution-test gate fails (the card records it).",
    ),
    license: str = typer.Option("other", "--license", help="The dataset's license id on the Hub."),
    test_size: float = typer.Option(0.1, "--test-size", help="Share of prompts in the test split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/test split."),
) -> None:
    """Publish a run's preferences, SFT rows and human labels as a Hub dataset with a full dataset card."""
    from charter.hub.push import publish
    from charter.progress import spinner

    label = f"writing {dry_run}" if dry_run else f"uploading to {repo_id}"
    with spinner(label):
        result = publish(
            run_dir,
            repo_id,
            private=private,
            revision=revision,
            dry_run=dry_run,
            override_gate=override_gate,
            license=license,
            test_size=test_size,
            seed=seed,
        )
    gates = (("agreement", result.gate), ("audit", result.audit_gate), ("constitution-test", result.constitution_gate))
    for name, gate in gates:
        if gate is None:
            continue
        if gate.overridden:
            typer.secho(f"{name} gate FAILED and was overridden: {gate.message}", fg="yellow", err=True)
        elif gate.configured:
            typer.echo(gate.message)
    for config, parts in result.splits.items():
        typer.echo(f"  {config}: " + ", ".join(f"{split} {n}" for split, n in parts.items()))
    if result.dry_run:
        typer.echo(f"wrote {len(result.files)} files to {result.folder} (nothing uploaded)")
    else:
        typer.echo(f"pushed {len(result.files)} files to {repo_id}: {result.url}")
