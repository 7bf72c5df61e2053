"""`charter constitutions ...`: list, show and validate constitutions, and write an imported one."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charter.constitutions.importers import dump_constitution_yaml
from charter.constitutions.markdown import SpecImport, write_spec_pairs
from charter.constitutions.schema import Constitution, FewShotExample, Principle, builtin_names, load_constitution
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
    if constitution.spec:
        spec = constitution.spec
        console.print(
            Text(
                f"imported from {spec.file} version {spec.version}: {spec.sections} sections, {spec.skipped} skipped",
                "dim",
            )
        )
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


#: The leading comment of an imported constitution's file, per format (`{file}`: the source's name).
IMPORT_HEADERS = {
    "hf-cai": "Imported from {file} by `charter constitutions import`.\n"
    "Comparison questions are derived from each principle's revision request.",
    "markdown": "Imported from {file} by `charter constitutions import --from markdown`.\n"
    "Each principle's description is its section's text, verbatim; its questions quote the section's title.",
    "markdown-model": "Imported from {file} by `charter constitutions import --from markdown --questions-by {model}`.\n"
    "Each principle's description is its section's text, verbatim; {model} wrote its questions.",
    "yaml": "Imported from {file} by `charter constitutions import --from yaml`.",
}


def write_import(result: SpecImport, file: Path, output: Path, source_format: str, pairs: Path | None) -> Constitution:
    """Write an import's constitution (and a spec's labelled pairs), and say what was written and what was skipped."""
    if pairs is not None and result.pairs is None:
        raise ConstitutionError(f"--pairs is for --from markdown: a {source_format} file has no labelled pairs")
    writer = next((p.source.questions_by for p in result.constitution.principles if p.source), None)
    header = IMPORT_HEADERS[f"{source_format}-model" if writer else source_format]
    written = _write(result.constitution, output, header.format(file=file.name, model=writer))
    examples = len(written.examples) + sum(len(p.examples) for p in written.principles)
    sections = ""
    if result.sections:
        by_level = ", ".join(f"{level} {len(members)}" for level, members in written.level_order())
        sections = f" of {result.sections} sections ({by_level})"
    typer.echo(
        f"wrote {output}: {len(written.principles)} principles{sections}, {examples} examples, sha256 {written.hash}"
    )
    if result.pairs is not None:
        pairs = pairs or output.with_name(output.name.removesuffix(".yaml") + ".pairs.jsonl")
        write_spec_pairs(pairs, result.pairs)
        typer.echo(f"wrote {pairs}: {len(result.pairs)} labelled pairs (each GOOD reply against each BAD one)")
    for section, line, reason in result.skipped:
        where = f" ({file.name}:{line})" if line is not None else ""
        typer.echo(f"skipped {section}{where}: {reason}", err=True)
    if result.sections:
        for reason, count in result.skip_reasons().items():
            typer.echo(f"skipped {count} section{'s' if count > 1 else ''}: {reason}", err=True)
    return written


def _write(constitution: Constitution, output: Path, header: str) -> Constitution:
    dump_constitution_yaml(constitution, output, header=header)
    written = load_constitution(output)  # the file we hand over must load as it is
    if written.hash != constitution.hash:
        raise RuntimeError(f"{output} does not load back to the imported constitution")
    return written
