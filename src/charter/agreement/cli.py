"""`charter spotcheck`, `charter label` (+ export / import) and `charter agreement` (+ eval)."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any, cast

import typer
from typer.core import TyperGroup

from charter.judge.modes import DEFAULT_MODE, DEFAULT_RATING
from charter.providers.cache import DEFAULT_CACHE
from charter.providers.options import ApiKeyEnv, CacheOption


class DefaultCommandGroup(TyperGroup):
    """A group whose first argument, when it is not a subcommand, goes to a default subcommand:
    `charter label RUN_DIR` runs `charter label serve RUN_DIR`, `charter agreement RUN_DIR` runs `report`."""

    default_command = ""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click Context
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


class LabelGroup(DefaultCommandGroup):
    default_command = "serve"


class AgreementGroup(DefaultCommandGroup):
    default_command = "report"


FORMAT_HELP = "argilla, labelstudio or csv."


def _default_annotator() -> str:
    try:
        return getpass.getuser() or "annotator"
    except (KeyError, OSError):
        return "annotator"


def spotcheck_command(
    run_dir: Path = typer.Argument(..., help="A run directory with judged pairs."),
    n: int | None = typer.Option(None, "--n", "-n", help="Pairs to sample (default: agreement.sample_size, 50)."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed (default: agreement.seed)."),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help="stratified (by principle and judge confidence; the default) or active (more where the judge is "
        "unsure, weighted back in the estimates); an existing sample keeps its own.",
    ),
    add: int | None = typer.Option(None, "--add", help="Add this many pairs to the existing sample, same design."),
) -> None:
    """Sample judged pairs for human labeling: stratified by principle and judge confidence, or active."""
    from collections import Counter

    from rich.table import Table

    from charter.agreement.sampling import Strategy, spotcheck
    from charter.progress import console

    rows = spotcheck(run_dir, n, seed, strategy=cast("Strategy | None", strategy), add=add)  # checked inside
    design = "active" if any(r.inclusion_probability for r in rows) else "stratified"
    table = Table(title=f"spot-check sample ({design}): {len(rows)} pairs")
    for col in ("principle", "confidence bucket", "pairs"):
        table.add_column(col)
    for (principle, bucket), count in sorted(Counter((r.principle_id, r.confidence_bucket) for r in rows).items()):
        table.add_row(principle, bucket, str(count))
    console.print(table)
    console.print(f"next: charter label {run_dir}")


def label_serve(
    run_dir: Path = typer.Argument(..., help="A run directory with a spot-check sample."),
    annotator: str = typer.Option(None, "--annotator", help="Your name (default: your login name)."),
    port: int = typer.Option(8765, "--port", help="Port (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; keep 127.0.0.1 unless you mean it."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a --host other than loopback."),
    tui: bool = typer.Option(False, "--tui", help="Label in the terminal instead of a browser."),
) -> None:
    """Open the labeling page (or the terminal UI) for the spot-check sample."""
    annotator = annotator or _default_annotator()
    if tui:
        _label_tui(run_dir, annotator)
        return
    from charter.agreement.server import LabelServer

    server = LabelServer(run_dir, annotator, host=host, port=port, allow_remote=allow_remote)
    if server.remote:
        typer.secho(
            f"warning: serving on {host}, not loopback: anyone who can reach this machine and sees the URL "
            "(it carries the token) can read the sample and label it",
            fg="yellow",
            err=True,
        )
    typer.echo(f"labeling {run_dir} as {annotator}; open this URL (it carries the access token):")
    typer.echo(f"  {server.url}")
    typer.echo("labels are saved as you go; Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _label_tui(run_dir: Path, annotator: str) -> None:
    from rich.console import Console

    from charter.agreement.labels import open_labels
    from charter.agreement.session import LabelSession, run_tui

    store = open_labels(run_dir)
    try:
        progress = run_tui(LabelSession(store, annotator), Console(highlight=False), sys.stdin)
    finally:
        store.close()
    typer.echo(f"{progress['done']} / {progress['total']} labeled by {annotator}")


def label_export(
    run_dir: Path = typer.Argument(..., help="A run directory with a spot-check sample."),
    fmt: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
    out: Path = typer.Option(..., "--output", "-o", help="File to write."),
) -> None:
    """Export the sample and its labels (responses in shown order: A was shown first)."""
    from charter.agreement.exchange import LABEL_STUDIO_CONFIG, export_labels

    count = export_labels(run_dir, fmt, out)
    typer.echo(f"wrote {count} sampled pairs to {out}")
    if fmt == "labelstudio":
        typer.echo("Label Studio labeling config:\n" + LABEL_STUDIO_CONFIG)


def label_import(
    run_dir: Path = typer.Argument(..., help="A run directory with a spot-check sample."),
    file: Path = typer.Argument(..., help="File to read."),
    fmt: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
) -> None:
    """Import labels (checked whole against the sample as shown, then written in one transaction, or none)."""
    from charter.agreement.exchange import import_labels

    done = import_labels(run_dir, file, fmt)
    typer.echo(
        f"imported {done.stored} labels from {file} ({done.new} new, {done.replaced} replacing an earlier label; "
        f"{done.unchanged} already stored, left as they were)"
    )


def agreement_report_command(
    run_dir: Path = typer.Argument(..., help="A run directory with human labels."),
    calibration: str | None = typer.Option(
        None, "--calibration", help="platt, temperature, isotonic or none (default: agreement.calibration)."
    ),
    target_width: float | None = typer.Option(
        None,
        "--target-width",
        help="Say how many more labels the PPI interval of the share people prefer needs to be this narrow.",
    ),
) -> None:
    """Judge vs human agreement with 95% bootstrap CIs, baselines, breakdowns and calibration."""
    import math

    from charter.agreement.api import agreement_report
    from charter.agreement.report import rich_table
    from charter.errors import ArgumentError
    from charter.progress import console
    from charter.runs.files import AGREEMENT_MD, RunFiles
    from charter.runs.store import writable

    if target_width is not None and not (math.isfinite(target_width) and target_width > 0):
        raise ArgumentError("target_width", f"{target_width!r}: expected a finite width above 0")
    write = writable(run_dir)  # a read-only run (an archive, a shared mount): the figures, nothing stored
    summary = agreement_report(run_dir, calibration=calibration, write=write)
    console.print(rich_table(summary))
    cal = summary.calibration
    if cal is not None and cal.skipped:
        console.print(f"calibration skipped: {cal.skipped}")
    elif cal is not None:
        console.print(
            f"calibration ({cal.method}): ECE {cal.ece_before:.3f} -> {cal.ece_after:.3f}; "
            f"data/preferences.* rewritten with p_chosen_calibrated"
        )
    found = summary.human_preference
    if found and found.overall.ppi:
        ppi, human, judge = found.overall.ppi, found.overall.human, found.overall.judge
        parts = [f"PPI {ppi.value:.3f} [{ppi.low:.3f}, {ppi.high:.3f}]"]
        parts += [f"people only {human.value:.3f} [{human.low:.3f}, {human.high:.3f}]"] if human else []
        parts += [f"judge only {judge.value:.3f} (uncorrected)"] if judge else []
        console.print("people prefer the chosen response: " + ", ".join(parts))
        if target_width is not None:
            from charter.stats.ppi import labels_needed

            more = labels_needed(ppi, target_width)
            console.print(
                f"the PPI interval is {ppi.width:.3f} wide on {ppi.n_human} labels: "
                + (
                    "degenerate (it says nothing of its width): label more pairs"
                    if more is None
                    else f"about {more} more labels would bring it to {target_width} "
                    f"(charter spotcheck {run_dir} --add {more}, then label them)"
                    if more
                    else f"already within {target_width}"
                )
            )
    elif target_width is not None:
        console.print("--target-width: no PPI estimate yet (it needs a dataset and at least two labelled rows)")
    if summary.panel is not None:
        from charter.agreement.report import panel_console

        for line in panel_console(summary.panel.model_dump()):
            console.print(line, highlight=False, markup=False)
    if write:
        console.print(f"report: {RunFiles(run_dir).report_dir / AGREEMENT_MD}")
    else:
        console.print(f"{run_dir} is read-only: the figures are shown, not stored (no report file, no calibration)")


def agreement_eval_command(
    pairs: Path = typer.Option(..., "--pairs", help="JSONL with prompt, chosen (human-preferred), rejected."),
    judge: list[str] = typer.Option(
        ...,
        "--judge",
        help="Judge model string, e.g. local:smollm2-135m-instruct; repeat it for a panel (the members' mean P(A)).",
    ),
    api_key_env: ApiKeyEnv = None,
    mode: str = typer.Option(
        DEFAULT_MODE, "--mode", help="logprobs, cot or verdict (pairwise), or score (each response rated alone)."
    ),
    orders: str = typer.Option("both", "--orders", help="both or one (pairwise modes)."),
    scale: int = typer.Option(5, "--scale", help="Mode score: scores run 1..SCALE (at most 9 with rating logprobs)."),
    rating: str = typer.Option(
        DEFAULT_RATING, "--rating", help="Mode score: logprobs (expected score), cot or verdict (the number written)."
    ),
    constitution: str = typer.Option("harmless", "--constitution", help="Bundled constitution name or YAML file."),
    limit: int | None = typer.Option(None, "--limit", help="Judge a seeded subset of this many rows."),
    seed: int = typer.Option(0, "--seed", help="Seed for the subset, the order shown and the bootstrap."),
    cache: CacheOption = DEFAULT_CACHE,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary as JSON here."),
) -> None:
    """Judge a human-labeled pair file and report agreement, kappa, CIs, position consistency, baselines, calls."""
    from pydantic_core import to_jsonable_python
    from rich.table import Table

    from charter.agreement.evaluate import evaluate
    from charter.agreement.report import FIGURES, fmt
    from charter.errors import ArgumentError
    from charter.judge.modes import MODES, rating_readers
    from charter.judge.settings import JudgeSettings
    from charter.progress import console

    if mode not in MODES:
        raise ArgumentError("mode", f"{mode!r}: use {', '.join(MODES)}")
    if orders not in ("both", "one"):
        raise ArgumentError("orders", f"{orders!r}: use both or one")
    if rating not in rating_readers():
        raise ArgumentError("rating", f"{rating!r}: use {', '.join(rating_readers())}")
    s = evaluate(
        pairs,
        judge[0] if len(judge) == 1 else judge,
        mode,
        orders,
        constitution,
        limit,
        seed,
        cache=cache or None,
        api_key_env=api_key_env,
        scale=scale,
        rating=rating,
    )
    how = JudgeSettings(mode=mode, orders=orders, scale=scale, rating=rating).describe()
    table = Table(title=f"{pairs.name}: {s['judged']} judged ({s['failures']} failed), {s['judge']} {how}")
    for col in ("figure", "judge", "longer wins", "first shown wins"):
        table.add_column(col)
    for key, name in FIGURES:
        table.add_row(
            name,
            fmt(getattr(s["judge_vs_human"], key)),
            fmt(getattr(s["baselines"].longer_wins, key)),
            fmt(getattr(s["baselines"].first_shown_wins, key)),
        )
    console.print(table)
    pc = s["position_consistency"]
    rate = "n/a" if pc.rate is None else f"{pc.rate:.3f}"
    console.print(f"position consistency: {rate} (n={pc.n}); wall {s['wall_s']} s")
    if s["score_means"] is not None:
        means = s["score_means"]
        console.print(
            f"mean score: chosen {means['chosen']:.3f}, rejected {means['rejected']:.3f} "
            f"(1..{scale}); {means['tied']} rows tied"
        )
    if s["judge_calls"] is not None:
        calls = s["judge_calls"]
        console.print(
            f"judge calls: {calls['calls']} made, {calls['cache_hits']} cache hits, {calls['retries']} retries"
        )
    panel = s["panel"]
    if panel is not None:
        members = Table(title="the panel's members, each alone (on the rows the whole panel judged)")
        for col in ("judge", "agreement (no ties)", "kappa (no ties)", "calls", "cache hits"):
            members.add_column(col)
        for m in panel["members"]:
            fig = m["judge_vs_human"]
            calls_ = m["judge_calls"]
            members.add_row(
                m["judge"], fmt(fig.agreement), fmt(fig.kappa), str(calls_["calls"]), str(calls_["cache_hits"])
            )
        console.print(members)
        between = panel["between_judges"]
        if between is not None:
            console.print(
                f"between the judges: agreement {fmt(between.agreement)}, Krippendorff's alpha "
                f"{fmt(between.krippendorff_alpha)}"
            )
    if json_out:
        json_out.write_text(json.dumps(to_jsonable_python(s), indent=1))
