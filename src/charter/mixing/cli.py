"""`charter mix plan`, `build` and `probe`: choose training sources per target subtask from their scores, build the
training set a manifest describes, and fill the scores with a small training run per source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

#: mix_plan's arguments that `charter mix plan` spells otherwise
PLAN_OPTIONS = {"sources": "--source", "target_weights": "--target-weight", "trainer": "--trainer"}


def _spelled(exc: Any) -> Any:
    """An `ArgumentError` of the API with the option as `charter mix` spells it."""
    from charter.errors import ArgumentError

    option = PLAN_OPTIONS.get(exc.argument)
    return exc if option is None else ArgumentError(exc.argument, exc.detail, option=option)


def _pairs(values: list[str], option: str, number: bool) -> dict[str, Any]:
    """`NAME=VALUE` options as a dict; a malformed one is an `ArgumentError` naming the option."""
    from charter.errors import ArgumentError

    out: dict[str, Any] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise ArgumentError(option, f"expected NAME=VALUE (got {value!r})", option=PLAN_OPTIONS[option])
        try:
            out[name] = float(rest) if number else rest
        except ValueError:
            raise ArgumentError(option, f"{name}: not a number ({rest!r})", option=PLAN_OPTIONS[option]) from None
    return out


def plan(
    scores: list[str] = typer.Argument(
        ...,
        metavar="SCORES",
        help="Score tables: .csv/.json/.jsonl (long: source,target,score[,n]; wide: source + one column per "
        "target), or `charter eval rm` summaries, one per source (NAME=PATH, else the file's stem names it).",
    ),
    strategy: str = typer.Option(
        "micro", help="micro (top N per target, then their union), macro (top N by mean) or all."
    ),
    top_n: int = typer.Option(2, "--top-n", help="Sources chosen per target (micro) or in all (macro)."),
    weighting: str = typer.Option(
        "targets", help="targets (each target's weight split over its choices), uniform or gain."
    ),
    target_weight: list[str] = typer.Option(
        [], "--target-weight", metavar="TARGET=W", help="A target's weight (default 1; 0 leaves it out). Repeat."
    ),
    source: list[str] = typer.Option(
        [], "--source", metavar="NAME=PATH", help="Where a source's rows are (default: its name). Repeat."
    ),
    baseline: str | None = typer.Option(None, help="A source to measure gains against (not a candidate)."),
    out: Path = typer.Option(Path("mixture.yaml"), "--out", help="The manifest to write."),
) -> None:
    """Choose sources from their scores per target subtask (micro-mixing) and write a manifest that says why."""
    from charter.errors import ArgumentError
    from charter.mixing.plan import mix_plan

    try:
        manifest = mix_plan(
            scores,
            strategy=strategy,  # type: ignore[arg-type]  # checked by mix_plan
            top_n=top_n,
            weighting=weighting,  # type: ignore[arg-type]
            target_weights=_pairs(target_weight, "target_weights", number=True),
            sources=_pairs(source, "sources", number=False),
            baseline=baseline,
            out=out,
        )
    except ArgumentError as exc:
        raise _spelled(exc) from None
    for chosen in manifest.sources:
        typer.echo(f"{chosen.weight:.3f}  {chosen.name}: {chosen.summary}")
    for left in manifest.left_out:
        typer.echo(f"  -    {left.name}: left out ({left.reason})")
    for note in manifest.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {out} (fingerprint {manifest.fingerprint})")


def build(
    manifest: Path = typer.Argument(..., help="The mixture manifest (from `charter mix plan`)."),
    out: Path = typer.Option(..., "--out", help="The folder to write: data/, mixture.yaml and README.md (the card)."),
    size: int | None = typer.Option(None, help="Rows in the training set (default: as many as the sources allow)."),
    seed: int = typer.Option(0, help="Seed of the draw and the shuffle."),
    split: str = typer.Option("train", help="The split to take from a source that has several."),
) -> None:
    """Build the training set a manifest describes: each source's share of rows, with a card that records it."""
    from charter.mixing.build import build_from_file

    drawn = build_from_file(manifest, out, size, seed, split)
    for name, n in drawn.items():
        typer.echo(f"{n:>7}  {name}")
    typer.echo(f"wrote {sum(drawn.values())} rows to {out}")


def probe(
    source: list[str] = typer.Option(
        ..., "--source", metavar="NAME=PATH", help="A source to probe and where its rows are. Repeat."
    ),
    pairs: str = typer.Option(..., help="Target pairs (JSONL/parquet: prompt, chosen, rejected, subset)."),
    out: Path = typer.Option(Path("probes"), "--out", help="Folder for each source's sample, model and summary."),
    trainer: Path | None = typer.Option(
        None, "--trainer", help="Reward-model settings YAML (model, trl: max_steps, ...); dataset is set per probe."
    ),
    budget: int = typer.Option(256, help="Rows of each source trained on (a seeded sample)."),
    seed: int = typer.Option(0, help="Seed of the samples and the training."),
) -> None:
    """Fill the score table: per source, a small reward model trained on a sample, scored on each target subset."""
    from charter.errors import ArgumentError
    from charter.mixing.probe import mix_probe

    try:
        results = mix_probe(_pairs(source, "sources", number=False), pairs, out, trainer, budget=budget, seed=seed)
    except ArgumentError as exc:
        raise _spelled(exc) from None
    for name, result in results.items():
        summary = json.loads(Path(result["summary"]).read_text(encoding="utf-8"))
        scores = ", ".join(
            f"{t} {a['accuracy']:.3f}" if a["accuracy"] is not None else f"{t} none"
            for t, a in summary["subsets"].items()
        )
        kept = "" if result["ran"] else " (kept from an earlier probe)"
        typer.echo(f"{name}: {result['rows']} rows; {scores}{kept}")
    typer.echo("plan with: charter mix plan " + " ".join(r["summary"] for r in results.values()))
