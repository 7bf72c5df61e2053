"""`charter synth CONFIG`: grow a prompt set from seeds into a balanced, deduplicated prompts file."""

from __future__ import annotations

from pathlib import Path

import typer

from charter.providers.cache import DEFAULT_CACHE
from charter.providers.options import CacheOption


def synth_command(
    config: Path = typer.Argument(..., help="Synth config YAML (see `charter config schema`: SynthConfig)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Prompts file to write (default: the config's `output`, else synth/prompts.jsonl)."
    ),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config key: key.sub=value."),
    cache: CacheOption = DEFAULT_CACHE,
) -> None:
    """Write new prompts (Self-Instruct and red-team), dedup them (exact, ROUGE-L, embeddings), filter them and
    balance them to a target mix; report the mix and the filter waterfall. Exit code 3 where fewer prompts were
    kept than `min_kept` of `n` (the files are still written)."""
    from charter.progress import console, progress_bar
    from charter.synth.api import check_kept, report_files, synthesize_async
    from charter.synth.config import load_synth_config

    cfg = load_synth_config(config, set_)
    target = Path(output or cfg.output or "synth/prompts.jsonl")
    import asyncio

    with progress_bar() as bar:
        task = bar.add_task("synthesizing prompts", total=cfg.n)
        result = asyncio.run(
            synthesize_async(
                cfg, target, cache=cache or None, on_round=lambda kept: bar.update(task, completed=sum(kept.values()))
            )
        )
    md, _ = report_files(target)
    console.print(
        f"kept {sum(result.achieved.values())} of {cfg.n} prompts ({result.calls} calls, "
        f"{result.wall_s} s); waterfall: " + ", ".join(f"{k} {v}" for k, v in result.waterfall.items())
    )
    for note in result.notes:
        console.print(f"[yellow]short[/yellow]: {note}")
    console.print(f"  prompts: {target}\n  report:  {md}")
    check_kept(sum(result.achieved.values()), cfg, result.notes, md)
