"""`charter constitutions ...`: list, show, validate and import constitutions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charter.constitutions.importers import dump_constitution_yaml, read_hf_cai
from charter.constitutions.loader import builtin_names, load_constitution
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


def _print_principle(console: Console, principle: Principle) -> None:
    tags = f"  [{', '.join(principle.tags)}]" if principle.tags else ""
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
    file: Path = typer.Argument(..., help="A Hugging Face CAI recipe JSON file."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the constitution YAML."),
    name: str = typer.Option(None, "--name", help="Constitution name (default: the JSON file's stem)."),
) -> None:
    """Import a Hugging Face CAI recipe JSON file as a constitution YAML file."""
    result = read_hf_cai(file, name=name)
    header = (
        f"Imported from {file.name} by `charter constitutions import`.\n"
        "Comparison questions are derived from each principle's revision request."
    )
    dump_constitution_yaml(result.constitution, output, header=header)
    written = load_constitution(output)  # the file we hand over must load as it is
    if written.hash != result.constitution.hash:
        raise RuntimeError(f"{output} does not load back to the imported constitution")
    typer.echo(
        f"wrote {output}: {len(written.principles)} principles, {len(written.examples)} examples, sha256 {written.hash}"
    )
    for index, reason in result.skipped:
        typer.echo(f"skipped system_chat[{index}]: {reason}", err=True)
