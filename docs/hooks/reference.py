"""The generated parts of the reference pages: the text between a marker comment and its end marker is markdown
made from the code, written into the page on disk so that it reads on the repository host as well as in the site.

`<!-- charter:cli -->` holds every command of the `charter` app (walked from its click command tree: help text,
usage, arguments and options); `<!-- charter:run-config -->` every section of the run config (walked from the
pydantic models under `RunConfig`: each field's type, default and description); `<!-- charter:loop-config -->`
those of the loop config that the run config does not already have. Each ends at `<!-- charter:NAME:end -->`.
`python docs/hooks/reference.py` writes them again (a test fails when a page is stale); mkdocs.yml registers this
file under `hooks:`, where it checks the pages (a stale page is a warning, so `mkdocs build --strict` fails) and
fills `<!-- charter:results -->`, the benchmark results (benchmarks/RESULTS.md, its links into docs/ made relative
to the site), which is included at build time only. docs/reference/formats.md is generated whole, by the
`formats.py` beside this file (the records' own description).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

CLI_MARKER = "<!-- charter:cli -->"
RUN_CONFIG_MARKER = "<!-- charter:run-config -->"
LOOP_CONFIG_MARKER = "<!-- charter:loop-config -->"
SERVE_CONFIG_MARKER = "<!-- charter:serve-config -->"
RESULTS_MARKER = "<!-- charter:results -->"
RESULTS = "benchmarks/RESULTS.md"
CONSTRAINTS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "length ≥", "max_length": "length ≤"}


GENERATED_PAGES = ("docs/reference/cli.md", "docs/reference/run-config.md", "docs/reference/reward-server.md")
ROOT = Path(__file__).resolve().parents[2]
FORMATS_PAGE = "docs/reference/formats.md"
log = logging.getLogger("mkdocs.hooks.charter_reference")


def formats_markdown() -> str:
    """docs/reference/formats.md, made by `formats.py` beside this file (mkdocs loads a hook by its path, so its
    neighbour is loaded the same way)."""
    spec = importlib.util.spec_from_file_location("charter_docs_formats", Path(__file__).with_name("formats.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.formats_markdown()


def generators() -> dict[str, Callable[[], str]]:
    """Each marker written into a page on disk, with the function that makes its markdown."""
    return {
        CLI_MARKER: cli_reference,
        RUN_CONFIG_MARKER: run_config_reference,
        LOOP_CONFIG_MARKER: loop_config_reference,
        SERVE_CONFIG_MARKER: serve_config_reference,
    }


def end_marker(marker: str) -> str:
    """`<!-- charter:cli:end -->` for `<!-- charter:cli -->`."""
    return marker.replace(" -->", ":end -->")


def filled(markdown: str) -> str:
    """The page with the text between each of its markers and the marker's end made again from the code (an end
    marker is added where there is none yet)."""
    for marker, generate in generators().items():
        start = markdown.find(marker)
        if start < 0:
            continue
        head = start + len(marker)
        end = markdown.find(end_marker(marker), head)
        tail = markdown[end:] if end >= 0 else end_marker(marker) + markdown[head:]
        markdown = f"{markdown[:head]}\n\n{generate()}\n\n{tail}"
    return markdown


def write_pages(root: Path = ROOT) -> list[str]:
    """Write every generated page again; returns those that changed."""
    changed = []
    for page in GENERATED_PAGES:
        path = root / page
        text = path.read_text(encoding="utf-8")
        fresh = filled(text)
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
            changed.append(page)
    formats = root / FORMATS_PAGE
    if formats.read_text(encoding="utf-8") != (fresh := formats_markdown()):
        formats.write_text(fresh, encoding="utf-8")
        changed.append(FORMATS_PAGE)
    return changed


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Check a generated page against the code (stale: a warning, an error under --strict); fill the results."""
    if any(marker in markdown for marker in generators()) and filled(markdown) != markdown:
        log.warning(f"docs/{page.file.src_uri} is stale: python docs/hooks/reference.py writes it again")
    if f"docs/{page.file.src_uri}" == FORMATS_PAGE and markdown != formats_markdown():
        log.warning(f"{FORMATS_PAGE} is stale: python docs/hooks/reference.py writes it again")
    if RESULTS_MARKER in markdown:
        markdown = markdown.replace(RESULTS_MARKER, results_page(config["config_file_path"]))
    return markdown


def results_page(config_file: str) -> str:
    """benchmarks/RESULTS.md without its title, its links into docs/ made relative to the docs site's root (the
    page links `../docs/assets/x.svg` so that it reads right beside the code too)."""
    text = (Path(config_file).parent / RESULTS).read_text(encoding="utf-8")
    return text.split("\n", 1)[1].replace("](../docs/", "](")


# -- markdown helpers ----------------------------------------------------------------------------------------------


def cell(text: str) -> str:
    """Text for one table cell: on one line, with pipes outside code spans escaped."""
    parts = " ".join(text.split()).split("`")
    return "`".join(part if index % 2 else part.replace("|", "\\|") for index, part in enumerate(parts))


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A markdown table."""
    lines = [f"| {' | '.join(header)} |", f"|{'|'.join('---' for _ in header)}|"]
    lines += [f"| {' | '.join(cell(value) for value in row)} |" for row in rows]
    return "\n".join(lines)


def flow(value: Any) -> str:
    """A value as it is written in YAML, on one line (`true`, `null`, `[critique, judge]`)."""
    text = yaml.safe_dump(to_jsonable_python(value), default_flow_style=True, width=10_000, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def prose(text: str | None) -> str:
    """A docstring or help text as markdown paragraphs."""
    return inspect.cleandoc(text or "").replace("\b\n", "")


# -- the command line ----------------------------------------------------------------------------------------------


def cli_reference() -> str:
    """Markdown for the `charter` command and every subcommand below it."""
    import typer

    from charter.cli import app

    root = typer.main.get_command(app)
    context = root.context_class(root, info_name="charter")
    return "\n\n".join(command_sections(root, ["charter"], context, level=2))


def subcommands(command: Any) -> dict[str, Any]:
    """A group's visible subcommands, in the order they were added."""
    return {name: sub for name, sub in (getattr(command, "commands", None) or {}).items() if not sub.hidden}


def command_sections(command: Any, path: list[str], context: Any, level: int) -> Iterator[str]:
    """The section of one command, then those of its subcommands one heading level down."""
    name = " ".join(path)
    parts = [f"{'#' * level} `{name}`", prose(command.help)]
    parts.append(f"```text\n{usage(command, path)}\n```")
    default = getattr(command, "default_command", "")
    if default:
        parts.append(f"Without a subcommand, the arguments go to `{name} {default}`.")
    rows = [param_row(param, context) for param in command.params if not getattr(param, "hidden", False)]
    if rows:
        parts.append(table(("argument or option", "type", "default", "description"), rows))
    children = subcommands(command)
    if children:
        links = [command_link(f"{name} {child}", sub) for child, sub in children.items()]
        parts.append(table(("command", "what it does"), links))
    yield "\n\n".join(part for part in parts if part)
    below = level if len(path) == 1 else level + 1
    for child, sub in children.items():
        sub_context = sub.context_class(sub, info_name=child, parent=context)
        yield from command_sections(sub, [*path, child], sub_context, below)


def command_link(name: str, command: Any) -> tuple[str, str]:
    """A row of a group's command table: the subcommand, linked to its section, and the first line of its help."""
    return f"[`{name}`](#{slug(name)})", first_line(command)


def first_line(command: Any) -> str:
    """A command's help up to the end of its first sentence."""
    text = " ".join(prose(command.help).split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]


def slug(text: str) -> str:
    """The anchor the `toc` extension gives a heading of this text."""
    return "-".join("".join(c for c in word if c.isalnum() or c in "-_") for word in text.lower().split())


def usage(command: Any, path: list[str]) -> str:
    """The usage line: the command path, `[OPTIONS]`, its arguments, and `COMMAND` for a group."""
    pieces = [*path]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    for param in params:
        if param.param_type_name == "argument":
            shown = argument_name(param) + ("..." if param.nargs == -1 else "")
            pieces.append(shown if param.required else f"[{shown}]")
    if subcommands(command):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def argument_name(param: Any) -> str:
    """An argument as usage lines show it: its metavar, else its name in capitals."""
    return param.metavar or param.name.upper()


def param_row(param: Any, context: Any) -> tuple[str, str, str, str]:
    """One table row: the option's spellings (or the argument's name), type, default and help."""
    if param.param_type_name == "argument":
        names = f"`{argument_name(param)}`"
    else:
        spellings = [*param.opts, *param.secondary_opts]
        names = ", ".join(f"`{opt} {param.metavar}`" if param.metavar else f"`{opt}`" for opt in spellings)
    return names, param_type(param, context), param_default(param), param_help(param)


def param_type(param: Any, context: Any) -> str:
    """The value an option takes: `flag`, `count`, or its type (`int`, `path`, `str`), with `repeatable`."""
    if getattr(param, "count", False):
        return "count"
    if getattr(param, "is_flag", False):
        return "flag"
    if hasattr(param, "display_type"):
        text = param.display_type(context).strip("<>")
    else:
        text = param.type.name
    text = text.removesuffix(" range")
    if param.multiple:
        text = (text[5:-1] if text.startswith("list[") else text) + ", repeatable"
    return text


def param_default(param: Any) -> str:
    """The default as a code span; `required`, or empty where there is none to show."""
    if param.required:
        return "required"
    default = param.default
    if callable(default) or default in (None, (), []) or type(default).__name__ == "Sentinel":
        return ""
    if getattr(param, "is_flag", False) and default is False:
        return ""
    return f"`{default}`"


def param_help(param: Any) -> str:
    """The help text, with the range an option's value must lie in."""
    text = " ".join((getattr(param, "help", None) or "").split())
    bounds = [(getattr(param, "min", None), "at least"), (getattr(param, "max", None), "at most")]
    limits = [f"{words} {value}" for value, words in bounds if value is not None]
    return f"{text} Range: {', '.join(limits)}." if limits else text


# -- the run config ------------------------------------------------------------------------------------------------


def run_config_reference() -> str:
    """Markdown for `RunConfig` and every config model below it, each with its own table."""
    from charter.pipeline.config import RunConfig

    return "\n\n".join(model_section(model, paths) for model, paths in config_models(RunConfig).items())


def loop_config_reference() -> str:
    """Markdown for `LoopConfig` and the config models below it that `RunConfig` does not reach."""
    from charter.loop.config import LoopConfig
    from charter.pipeline.config import RunConfig

    known = config_models(RunConfig)
    found = config_models(LoopConfig)
    return "\n\n".join(
        model_section(model, paths, " of a loop config") for model, paths in found.items() if model not in known
    )


def serve_config_reference() -> str:
    """Markdown for `ServeConfig`, the config of `charter serve reward` (its nested models are a run config's)."""
    from charter.online.config import ChecklistReward, VerifiableReward
    from charter.serve.config import ServeConfig

    # the nested models are described in the run config's page, but for the verifiable reward and the checklist
    main = model_section(ServeConfig, []).replace("](#", "](run-config.md#")
    main = main.replace("(run-config.md#verifiablereward)", "(#verifiablereward)")
    main = main.replace("(run-config.md#checklistreward)", "(#checklistreward)")
    own = [(VerifiableReward, "verify"), (ChecklistReward, "checklist")]
    sections = [
        model_section(m, [key], " of a reward server config").replace("](#", "](run-config.md#") for m, key in own
    ]
    return "\n\n".join([main, *sections])


def config_models(root: type[BaseModel]) -> dict[type[BaseModel], list[str]]:
    """Every model reachable from `root` through its fields, breadth first, with the YAML paths it is found at."""
    found: dict[type[BaseModel], list[str]] = {root: []}
    queue: list[tuple[type[BaseModel], str]] = [(root, "")]
    while queue:
        model, prefix = queue.pop(0)
        for name, field in model.model_fields.items():
            for sub, path in nested_models(field.annotation, f"{prefix}{name}"):
                if sub not in found:
                    found[sub] = []
                    queue.append((sub, f"{path}."))
                found[sub].append(path)
    return found


def nested_models(annotation: Any, path: str) -> Iterator[tuple[type[BaseModel], str]]:
    """The models inside a field's annotation, each with its path (`prices.<key>` in a dict, `inline[]` in a list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, path
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return
    if origin in (list, tuple, set, frozenset):
        path = f"{path}[]"
    elif origin is dict:
        path, args = f"{path}.<key>", args[1:]
    for arg in args:
        yield from nested_models(arg, path)


def model_section(model: type[BaseModel], paths: list[str], scope: str = "") -> str:
    """A model's heading, docstring, the keys it sits at (in a run config, or the `scope` named), and its fields."""
    parts = [f"## {model.__name__}", prose(model.__doc__)]
    if paths:
        parts.append("At " + ", ".join(f"`{path}`" for path in paths) + f"{scope}.")
    rows = [field_row(name, field) for name, field in model.model_fields.items()]
    parts.append(table(("key", "type", "default", "description"), rows))
    return "\n\n".join(parts)


def field_row(name: str, field: FieldInfo) -> tuple[str, str, str, str]:
    """One table row: the key, its type with constraints, its default and its description."""
    kind = type_text(field.annotation)
    if named := choices(field):  # a name a table holds (a judge mode, a scoring): the table's names
        kind = kind.replace("str", "one of " + ", ".join(f"`{flow(value)}`" for value in named), 1)
    limits = [
        f"{CONSTRAINTS[key]} {getattr(item, key)}"
        for item in field.metadata
        for key in CONSTRAINTS
        if getattr(item, key, None) is not None
    ]
    if limits:
        kind += ", " + ", ".join(limits)
    return f"`{field.alias or name}`", kind, default_text(field), field.description or ""


def choices(field: FieldInfo) -> list[Any]:
    """The values a field's schema lists (`enum`), where a table fills them in (a `TableName`, `json_schema_extra`)."""
    from charter.yamlio import TableName

    if marks := [mark for mark in field.metadata if isinstance(mark, TableName)]:
        return list(marks[0].names())
    schema: dict[str, Any] = {}
    extra = field.json_schema_extra
    if callable(extra):
        extra(schema)  # type: ignore[call-arg]
    elif isinstance(extra, dict):
        schema.update(extra)
    return list(schema.get("enum") or [])


def type_text(annotation: Any) -> str:
    """A type as a reader of YAML sees it: models link to their section, literals list their values."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{flow(value)}`" for value in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in args)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is not None:
        inner = ", ".join(type_text(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]" if inner else origin.__name__
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def default_text(field: FieldInfo) -> str:
    """The default as YAML; `required` where there is none; a model default as the values it sets, if any."""
    if field.default_factory is not None:
        default = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        default = field.default
    if isinstance(default, BaseModel):
        changed = default.model_dump(mode="json", exclude_defaults=True)
        return f"`{flow(changed)}`" if changed else "its defaults"
    return f"`{flow(default)}`"


if __name__ == "__main__":
    for written in write_pages():
        print(f"wrote {written}")
