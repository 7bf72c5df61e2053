"""`charter constitutions import`, `infer`, `test`, `learn-rubrics` and `rubric`: the constitution lab on the command
line."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charter.judge.modes import DEFAULT_MODE
from charter.providers.cache import DEFAULT_CACHE
from charter.providers.options import CacheOption

if TYPE_CHECKING:
    from charter.lab.learner import LabReport


# The options two or three of the lab's commands share; each command gives its own default.
PairsOption = Annotated[
    Path,
    typer.Option(
        "--pairs", help="JSONL with prompt, chosen (human-preferred), rejected; or a run directory with labels."
    ),
]
OutputOption = Annotated[Path, typer.Option("-o", "--output", help="The constitution YAML; the report goes beside it.")]
ProposalsOption = Annotated[int, typer.Option("--proposals", min=1, help="Training pairs the proposer is asked about.")]
TestFractionOption = Annotated[float, typer.Option("--test-fraction", min=0.05, max=0.9, help="Share held out.")]
ModeOption = Annotated[str, typer.Option("--mode", help="How the judge answers: logprobs, cot or verdict.")]
OrdersOption = Annotated[str, typer.Option("--orders", help="both or one.")]
StructuredOutputOption = Annotated[
    bool,
    typer.Option(
        "--structured-output/--no-structured-output",
        help="Ask API models for structured output (a JSON Schema); off for a server that rejects it.",
    ),
]


def _print_written(report: LabReport[Any], output: Path) -> None:
    """Print a learned constitution's summary, then where it and its report were written."""
    from charter.progress import console

    for line in report.summary_lines():
        console.print(line, highlight=False, markup=False)
    stem = output.with_suffix("")
    console.print(f"constitution: {output}\nreport: {stem}.report.md ({stem}.report.json)", highlight=False)


def _check_judging(mode: str, orders: str) -> None:
    from charter.errors import ArgumentError
    from charter.judge.modes import pairwise_modes

    if mode not in pairwise_modes():
        raise ArgumentError("mode", f"{mode!r}: use {', '.join(pairwise_modes())}")
    if orders not in ("both", "one"):
        raise ArgumentError("orders", f"{orders!r}: use both or one")


def _arguments(ctx: typer.Context, api: Callable[..., Any], **changed: Any) -> dict[str, Any]:
    """The command's options as keyword arguments of the Python API function it calls (an option and its argument
    share a name): those the function takes, with `changed` in place of the ones the command reads differently."""
    takes = inspect.signature(api).parameters
    return {name: value for name, value in {**ctx.params, **changed}.items() if name in takes}


def infer_command(
    ctx: typer.Context,
    pairs: PairsOption,
    model: str | None = typer.Option(None, "--model", help="The model that proposes principles (PROVIDER:MODEL)."),
    judge: str | None = typer.Option(None, "--judge", help="The model whose votes test them (default: --model)."),
    candidates: list[str] | None = typer.Option(
        None,
        "--candidates",
        help="Select among these constitutions' principles (bundled name or YAML; repeatable) instead of proposing.",
    ),
    output: OutputOption = Path("inferred.yaml"),
    declared: str | None = typer.Option(
        None, "--declared", help="A constitution (bundled name or YAML) to compare with on the held-out pairs."
    ),
    max_principles: int = typer.Option(5, "--max-principles", min=1, help="Keep at most this many principles."),
    proposals: ProposalsOption = 100,
    per_pair: int = typer.Option(3, "--per-pair", min=1, help="Principles asked for per pair."),
    test_fraction: TestFractionOption = 0.3,
    mode: ModeOption = DEFAULT_MODE,
    orders: OrdersOption = "both",
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the sample, the order shown and the bootstrap."),
    cache: CacheOption = DEFAULT_CACHE,
    structured_output: StructuredOutputOption = True,
) -> None:
    """Infer a constitution from human-labelled pairs (Inverse Constitutional AI): propose, deduplicate, vote,
    select; the held-out agreement beside the declared constitution's and the baselines'."""
    from charter.lab.api import infer_constitution

    _check_judging(mode, orders)
    result = infer_constitution(**_arguments(ctx, infer_constitution, candidates=candidates or None))
    _print_written(result.report, output)


def test_command(
    ctx: typer.Context,
    constitution: str = typer.Argument(..., help="A bundled constitution name or YAML file."),
    pairs: Path = typer.Option(..., "--pairs", help="JSONL pair file, or a run directory with human labels."),
    judge: str = typer.Option(..., "--judge", help="The judge model (PROVIDER:MODEL)."),
    inferred: str | None = typer.Option(
        None, "--inferred", help="An inferred constitution whose principles the declared one may lack."
    ),
    min_flip: float = typer.Option(
        0.5, "--min-flip", min=0, max=1, help="Flag a principle whose negated flip rate stays below this."
    ),
    target: float = typer.Option(
        0.97, "--target", min=0.5, max=1, help="Share of pairs a smaller subset must decide as the full ensemble does."
    ),
    mode: ModeOption = DEFAULT_MODE,
    orders: OrdersOption = "both",
    seed: int = typer.Option(0, "--seed", help="Seed of the order shown and the bootstrap."),
    cache: CacheOption = DEFAULT_CACHE,
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Also write the report as markdown here."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here."),
    max_calls: int = typer.Option(
        50_000,
        "--max-calls",
        min=0,
        help="Refuse a test that plans more judge calls than this (0: no bound); the plan is printed first.",
    ),
) -> None:
    """Test which principles the judge uses (sensitivity to negation), which are redundant (vote clusters and the
    smallest equivalent subset) and, with human labels, which people's choices support."""
    from charter.lab.api import check_constitution
    from charter.lab.checks import checks_console, checks_markdown
    from charter.progress import console

    _check_judging(mode, orders)
    changed = {"max_calls": max_calls or None, "progress": True}
    result = check_constitution(**_arguments(ctx, check_constitution, **changed))
    for line in checks_console(result):
        console.print(line, highlight=False, markup=False)
    if markdown_out:
        markdown_out.write_text(checks_markdown(result), encoding="utf-8")
    if json_out:
        json_out.write_text(result.model_dump_json(indent=1) + "\n", encoding="utf-8")
    flagged = ", ".join(result.flagged) or "none"
    console.print(f"insensitive principles (verdicts that ignore the principle's text): {flagged}", highlight=False)
    if result.untested:
        console.print(
            f"untested principles (the judge decided no pair under them): {', '.join(result.untested)}",
            highlight=False,
        )


def learn_rubrics_command(
    ctx: typer.Context,
    pairs: PairsOption,
    model: str = typer.Option(..., "--model", help="The model that proposes criteria (PROVIDER:MODEL)."),
    judge: str | None = typer.Option(None, "--judge", help="The model that answers them (default: --model)."),
    base: str | None = typer.Option(
        None, "--base", help="A constitution (bundled name or YAML) to add the criteria to and compare with."
    ),
    output: OutputOption = Path("learned-rubric.yaml"),
    proposals: ProposalsOption = 100,
    per_pair: int = typer.Option(3, "--per-pair", min=1, help="Criteria asked for per pair."),
    test_fraction: TestFractionOption = 0.3,
    keep_threshold: float = typer.Option(
        0.75,
        "--keep-threshold",
        min=0.5,
        max=1,
        help="Keep a criterion agreeing with people on this share of the proposal pairs it decides.",
    ),
    min_decided: int = typer.Option(3, "--min-decided", min=1, help="... and deciding at least this many."),
    max_criteria: int = typer.Option(10, "--max-criteria", min=1, help="Keep at most this many criteria."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the sample asked and the bootstrap."),
    cache: CacheOption = DEFAULT_CACHE,
    structured_output: StructuredOutputOption = True,
) -> None:
    """Learn a rubric from human-labelled pairs: proposed yes/no criteria, kept where the judge's verdicts agree
    with people, validated on held-out pairs; writes a constitution with criteria and the report."""
    from charter.lab.api import learn_rubrics

    result = learn_rubrics(**_arguments(ctx, learn_rubrics))
    _print_written(result.report, output)


def rubric_command(
    source: str = typer.Argument(..., metavar="NAME_OR_FILE", help="A bundled name or a YAML file."),
    as_json: bool = typer.Option(False, "--json", help="Print the compiled rubric as JSON."),
) -> None:
    """Print a constitution's compiled rubric: each criterion with its weight, gate and verifier, and how they
    are scored."""
    import json

    from charter.checklist.items import rubric_data, rubric_lines
    from charter.constitutions.schema import load_constitution

    constitution = load_constitution(source)
    if as_json:
        typer.echo(json.dumps(rubric_data(constitution), indent=1, allow_nan=False))
        return
    for line in rubric_lines(constitution):
        typer.echo(line)


def import_command(
    file: Path = typer.Argument(
        ..., help="The file to import: a Markdown spec, a Hugging Face CAI recipe JSON file or a constitution YAML."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the constitution YAML."),
    name: str = typer.Option(None, "--name", help="Constitution name (default: the file's stem)."),
    source_format: str = typer.Option(
        "hf-cai",
        "--from",
        help="The file's format: hf-cai (the CAI recipe's JSON), markdown (a prose spec) or yaml (a constitution).",
    ),
    levels: str = typer.Option(
        None, "--levels", help="markdown: the order of levels, highest first, comma-separated (default: the spec's)."
    ),
    pairs: Path = typer.Option(
        None, "--pairs", help="markdown: where to write the spec's labelled pairs (default: OUTPUT.pairs.jsonl)."
    ),
    questions_by: str | None = typer.Option(
        None,
        "--questions-by",
        metavar="MODEL",
        help="markdown: a model writes each principle's questions from its section (recorded as such); default: "
        "verbatim questions.",
    ),
    cache: CacheOption = DEFAULT_CACHE,
) -> None:
    """Import a Markdown spec, a Hugging Face CAI recipe JSON or a constitution YAML as a constitution YAML file."""
    from charter.constitutions.cli import write_import
    from charter.constitutions.markdown import read_constitution
    from charter.errors import ConstitutionError

    order = [level.strip() for level in levels.split(",")] if levels else None
    if questions_by is None:
        result = read_constitution(file, source_format, name, order)
    elif source_format == "markdown":
        from charter.lab.api import import_spec

        result = import_spec(file, questions_by, name=name, levels=order, cache=cache)
    else:
        raise ConstitutionError(f"--questions-by is for --from markdown: a {source_format} file has no sections")
    write_import(result, file, output, source_format, pairs)
