"""`charter constitutions ...`: list, show, validate and import constitutions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charter.constitutions.importers import dump_constitution_yaml, read_hf_cai
from charter.constitutions.loader import builtin_names, load_constitution
from charter.constitutions.markdown import read_markdown_spec, write_spec_pairs
from charter.constitutions.schema import Constitution, FewShotExample, Principle
from charter.errors import ConstitutionError


def _console() -> Console:
    return Console(highlight=False)


def list_constitutions() -> None:
    """List the bundled constitutions."""
    table = Table(title="Bundled constitutions")
    table.add_column("name", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("principles", justify="right", no_wrap=True)
    table.add_column("hash", no_wrap=True)
    table.add_column("description")
    for name in builtin_names():
        constitution = load_constitution(name)
        table.add_row(
            constitution.name,
            constitution.version,
            str(len(constitution.principles)),
            constitution.short_hash,
            Text(_shorten(constitution.description)),
        )
    _console().print(table)


def _shorten(text: str, limit: int = 90) -> str:
    """At most `limit` characters, cut at a word boundary."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:(") + "…"


def show(
    source: str = typer.Argument(..., metavar="NAME_OR_FILE", help="A bundled name or a YAML file."),
    examples: bool = typer.Option(False, "--examples", help="Also print the few-shot examples in full."),
) -> None:
    """Show a constitution's principles in readable form."""
    constitution = load_constitution(source)
    console = _console()
    _print_header(console, constitution)
    if constitution.ordered:
        _print_levels(console, constitution)
    for principle in constitution.principles:
        _print_principle(console, principle)
    if constitution.examples and examples:
        console.rule("few-shot examples")
        for example in constitution.examples:
            _print_example(console, example)
    elif constitution.examples:
        count = len(constitution.examples)
        console.print(Text(f"{count} few-shot example{'s' if count > 1 else ''} (--examples to show them)", "dim"))


def _print_header(console: Console, constitution: Constitution) -> None:
    console.print(Text.assemble((constitution.name, "bold"), f"  version {constitution.version}"))
    console.print(Text(f"sha256 {constitution.hash}", "dim"))
    if constitution.description:
        console.print(Text(constitution.description))
    if constitution.system_prompt:
        console.print(Text.assemble(("system prompt: ", "bold"), constitution.system_prompt))
    console.print()


def _print_levels(console: Console, constitution: Constitution) -> None:
    """The levels in order, highest first, each with its principles (hard constraints marked `!`, defaults `~`)."""
    console.rule("levels, highest first", align="left")
    for rank, (level, members) in enumerate(constitution.level_order(), 1):
        names = ", ".join(f"{p.id}{'!' if p.hard else ''}{'~' if p.default else ''}" for p in members) or "(none)"
        console.print(Text.assemble((f"{rank}. {level}", "bold"), f" ({len(members)}): ", names))
    console.print(Text("! hard constraint   ~ default that instructions may override", "dim"))
    console.print()


def _print_principle(console: Console, principle: Principle) -> None:
    tags = f"  [{', '.join(principle.tags)}]" if principle.tags else ""
    if principle.level:
        tags += f"  level {principle.level}"
    if principle.hard:
        tags += "  hard"
    if principle.default:
        tags += f"  default (overridable by {', '.join(principle.overridable_by)})"
    console.rule(Text.assemble((principle.id, "bold cyan"), f"  weight {principle.weight:g}{tags}"), align="left")
    console.print(Text(principle.description))
    for label, text in (
        ("critique", principle.critique_request),
        ("revision", principle.revision_request),
        ("comparison", principle.comparison),
    ):
        console.print(Text.assemble((f"{label}: ", "bold"), text))
    console.print()


def _print_example(console: Console, example: FewShotExample) -> None:
    console.print(Text(f"principle: {example.principle or '(any)'}", "bold cyan"))
    for message in example.conversation:
        console.print(Text.assemble((f"{message.role}: ", "bold"), message.content))
    console.print(Text.assemble(("critique: ", "bold magenta"), example.critique))
    console.print(Text.assemble(("revision: ", "bold green"), example.revision))
    console.print()


def validate(
    file: Path = typer.Argument(..., help="A constitution YAML file."),
) -> None:
    """Check a constitution file; prints OK and its hash, or its errors, one line each (exit code 2)."""
    if not file.is_file():
        raise ConstitutionError(f"{file}: file not found")
    constitution = load_constitution(file)
    typer.echo(
        f"OK {file}: {constitution.name} version {constitution.version}, {len(constitution.principles)} principles, "
        f"{len(constitution.examples)} examples, sha256 {constitution.hash}"
    )


def import_constitution(
    file: Path = typer.Argument(..., help="A Hugging Face CAI recipe JSON file, or a Markdown spec (--from markdown)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the constitution YAML."),
    name: str = typer.Option(None, "--name", help="Constitution name (default: the file's stem)."),
    source_format: str = typer.Option(
        "hf-cai", "--from", help="The file's format: hf-cai (the CAI recipe's JSON) or markdown (a prose spec)."
    ),
    levels: str = typer.Option(
        None, "--levels", help="markdown: the order of levels, highest first, comma-separated (default: the spec's)."
    ),
    pairs: Path = typer.Option(
        None, "--pairs", help="markdown: where to write the spec's labelled pairs (default: OUTPUT.pairs.jsonl)."
    ),
) -> None:
    """Import a Hugging Face CAI recipe JSON file, or a Markdown spec, as a constitution YAML file."""
    if source_format == "markdown":
        _import_markdown(file, output, name, levels, pairs)
        return
    if source_format != "hf-cai":
        raise ConstitutionError(f"--from {source_format}: unknown format (known: hf-cai, markdown)")
    if levels or pairs:
        raise ConstitutionError(f"{'--levels' if levels else '--pairs'} is for --from markdown: a CAI recipe has none")
    result = read_hf_cai(file, name=name)
    header = (
        f"Imported from {file.name} by `charter constitutions import`.\n"
        "Comparison questions are derived from each principle's revision request."
    )
    written = _write(result.constitution, output, header)
    typer.echo(
        f"wrote {output}: {len(written.principles)} principles, {len(written.examples)} examples, sha256 {written.hash}"
    )
    for index, reason in result.skipped:
        typer.echo(f"skipped system_chat[{index}]: {reason}", err=True)


def _write(constitution: Constitution, output: Path, header: str) -> Constitution:
    dump_constitution_yaml(constitution, output, header=header)
    written = load_constitution(output)  # the file we hand over must load as it is
    if written.hash != constitution.hash:
        raise RuntimeError(f"{output} does not load back to the imported constitution")
    return written


def _import_markdown(file: Path, output: Path, name: str | None, levels: str | None, pairs: Path | None) -> None:
    order = [level.strip() for level in levels.split(",")] if levels else None
    result = read_markdown_spec(file, name=name, levels=order)
    header = (
        f"Imported from {file.name} by `charter constitutions import --from markdown`.\n"
        "Each principle's description is its section's text, verbatim; its questions quote the section's title."
    )
    written = _write(result.constitution, output, header)
    pairs = pairs or output.with_name(output.name.removesuffix(".yaml") + ".pairs.jsonl")
    write_spec_pairs(pairs, result.pairs)
    examples = sum(len(p.examples) for p in written.principles)
    by_level = ", ".join(f"{level} {len(members)}" for level, members in written.level_order())
    typer.echo(
        f"wrote {output}: {len(written.principles)} principles of {result.sections} sections ({by_level}), "
        f"{examples} examples, sha256 {written.hash}"
    )
    typer.echo(f"wrote {pairs}: {len(result.pairs)} labelled pairs (each GOOD reply against each BAD one)")
    for section, line, reason in result.skipped:
        typer.echo(f"skipped {section} ({file.name}:{line}): {reason}", err=True)
    for reason, count in result.skip_reasons().items():
        typer.echo(f"skipped {count} section{'s' if count > 1 else ''}: {reason}", err=True)
