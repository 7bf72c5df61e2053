"""`charter iterate LOOP.yaml`: iterated constitutional rounds with a collapse monitor."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("iterate")(iterate_command)


def iterate_command(
    config: Path = typer.Argument(..., help="Loop config YAML (a base run config, rounds, strategies, ...)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a loop config key: key.sub=value."),
) -> None:
    """Run (or resume) rounds of generate, critique, judge and DPO, measuring win rates and collapse each round."""
    from charter.loop.run import iterate
    from charter.progress import console

    result = iterate(config, set_)
    for arm, rows in result.rounds.items():
        last = rows[-1]
        win = (last.get("vs_base") or {}).get("win_rate")
        shown = "n/a" if win is None else f"{win:.3f}"
        console.print(
            f"{arm}: {len(rows) - 1} round(s); last policy {last['model']}; win vs base {shown}; "
            f"flags: {'; '.join(last.get('flags') or []) or 'none'}"
        )
        if arm in result.stopped:
            console.print(f"  stopped {result.stopped[arm]}")
    console.print(f"  report: {result.report}")
