"""`charter iterate LOOP.yaml`: iterated constitutional rounds with a collapse monitor."""

from __future__ import annotations

from pathlib import Path

import typer


def iterate_command(
    config: Path = typer.Argument(..., help="Loop config YAML (a base run config, rounds, strategies, ...)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a loop config key: key.sub=value."),
    status: bool = typer.Option(
        False, "--status", help="Run nothing: print where the loop stands (rounds, synthetic shares, stops)."
    ),
    as_json: bool = typer.Option(False, "--json", help="With --status: print it as JSON on stdout."),
) -> None:
    """Run (or resume) rounds of generate, critique, judge and DPO, measuring win rates and collapse each round."""
    from charter.loop.run import iterate
    from charter.progress import console

    if status:
        print_status(config, set_, as_json)
        return
    result = iterate(config, set_)
    for arm, rows in result.rounds.items():
        last = rows[-1]
        win = (last.get("vs_base") or {}).get("win_rate")
        shown = "n/a" if win is None else f"{win:.3f}"
        share = (last.get("data") or {}).get("synthetic_share")
        console.print(
            f"{arm}: {len(rows) - 1} round(s); last policy {last['model']}; win vs base {shown}; "
            f"synthetic share {'n/a' if share is None else f'{share:.1%}'}; "
            f"flags: {'; '.join(last.get('flags') or []) or 'none'}"
        )
        if arm in result.stopped:
            console.print(f"  stopped {result.stopped[arm]}")
    console.print(f"  report: {result.report}")


def print_status(config: Path, overrides: list[str] | None, as_json: bool) -> None:
    import json

    from charter.errors import ConfigError
    from charter.loop.config import load_loop_config
    from charter.loop.report import is_loop_dir, loop_status, loop_summary

    loop_dir = load_loop_config(config, overrides).loop_dir()
    if not is_loop_dir(loop_dir):
        raise ConfigError(f"{config}: the loop has not started ({loop_dir} has no loop.sqlite)")
    found = loop_status(loop_dir)
    typer.echo(json.dumps(found, indent=1, default=str) if as_json else loop_summary(found))
