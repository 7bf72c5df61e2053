"""`charter serve reward CONFIG.yaml`."""

from __future__ import annotations

from pathlib import Path

import typer

CONFIG_HELP = "YAML with the reward settings: a `charter train grpo` config works (training keys are ignored)."


def reward(
    config: Path = typer.Argument(..., help=CONFIG_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback is reachable from others."),
    port: int = typer.Option(
        8000, help="Port to listen on (0: a free one, announced at start); one in use is an error."
    ),
    token: str | None = typer.Option(
        None, envvar="CHARTER_SERVE_TOKEN", help="The token clients must send; generated and printed when not given."
    ),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a key: --set scoring=group."),
) -> None:
    """Serve the constitutional judge as a reward: OpenRLHF's /get_reward, NeMo Gym's /verify, a native /v1/rewards."""
    import logging

    from charter.serve.config import ServeConfig
    from charter.serve.server import serve
    from charter.yamlio import load_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_model(ServeConfig, config, set_)
    serve(cfg, host, port, token, announce=lambda line: typer.echo(line, err=True))


def merge(
    into: Path = typer.Argument(..., help="The reward store to gather into (made when missing)."),
    stores: list[Path] = typer.Argument(
        ..., help="The output_dir of each server, copied from its machine; each once, none of them INTO."
    ),
) -> None:
    """Gather the reward stores of several servers into one, for `charter status` and the report (once per store)."""
    from charter.serve.server import merge_stores

    count, unknown = merge_stores(into, stores)
    typer.echo(f"{count} rewards in {into}/run.sqlite from {len(stores)} stores")
    if unknown:
        typer.echo(
            f"{unknown} of them were stored with neither a reward nor a failure (by an earlier charter, from a reward "
            "that was not a finite number): read as failures of unknown cause",
            err=True,
        )
