"""YAML into pydantic models, with errors that point at file:line:column and the key.

Defaults come from the model, then the YAML file, then `--set key=value` overrides. Anchors, aliases and merge keys
(`<<: *anchor`) work, with every key keeping its line; top-level `x-` keys hold blocks to share and are not settings.
Each alias is a copy of its anchor, and the copies a file may build are capped (`MIN_VALUE_LIMIT`), so a small file of
aliases of aliases is an error, not a full memory; a recursive anchor and a key that is a list or a mapping are errors.
Every error of a validation is reported, one per line, an unknown key with the known one it is closest to; an error
in an override's value names the override.
"""

from __future__ import annotations

import difflib
import functools
import gc
import logging
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError, model_validator
from pydantic_core import core_schema

from charter.errors import ArgumentError, ConfigError, ConfigFieldError
from charter.tables import read_text_file

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
log = logging.getLogger(__name__)


class CheckedInit(BaseModel):
    """A model that, built directly (`Budget(max_cost_usd="x")`, `Pair(prompt=3, ...)`), raises a `ConfigFieldError`
    (a `ConfigError`) for a bad field, naming the class and the field, one line per error (`Budget: max_cost_usd:
    Input should be a valid number, ...`), never pydantic's ValidationError. `model_validate` keeps pydantic's error,
    which the loaders turn into file:line:column lines."""

    if not typing.TYPE_CHECKING:  # type checkers keep the signature pydantic gives each model

        def __init__(self, /, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise ConfigFieldError(validation_lines(exc, type(self).__name__, {}, type(self))) from None

        # pydantic's own marker: validating a nested config or `model_validate` calls no __init__, so their
        # errors stay pydantic's, with every location, for `validation_lines`
        __init__.__pydantic_base_init__ = True


@functools.cache
def number_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` that take a number (an int or a float) and not a bool."""
    return tuple(
        name
        for name, field in model.model_fields.items()
        if (members := annotation_members(field.annotation)) and bool not in members and {int, float} & set(members)
    )


class ConfigModel(CheckedInit):
    """Base of every config section: unknown keys are errors; each field's docstring is its schema description; built
    directly, a bad field is a `ConfigFieldError` (`CheckedInit`).

    A number is finite (`.nan`, `.inf`, `1e400` are refused) and `true`/`false` is not one (pydantic would read 1
    and 0), so every number a config gives is checked before work starts."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_not_bools(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in number_fields(cls):
                value = data.get(name)
                if isinstance(value, bool):
                    raise LocatedValueError(f"expected a number, not {str(value).lower()}", (name,))
        return data


@dataclass(frozen=True)
class TableName:
    """A config field that holds a name from a table, as `Annotated[str, TableName(names)]`: a name that `names()`
    lists (a `ValueError` listing them otherwise), which the field's JSON schema enumerates. `names` is read at each
    check and each schema, so an entry added to the table later is known. `says` words the error: `{known}` the
    names listed, `{name!r}` the name given."""

    names: Callable[[], Iterable[str]]
    says: str = "expected one of {known}, got {name!r}"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._known, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {**handler(schema), "enum": list(self.names())}

    def _known(self, name: str) -> str:
        if name not in (known := list(self.names())):
            raise ValueError(self.says.format(known=", ".join(known), name=name))
        return name


Positions = dict[tuple, tuple[int, int]]


MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
#: Top-level keys that start with this are the file's own (as in Docker Compose): blocks to share through anchors
#: and merge keys (`x-common: &common {...}`, then `critic: {<<: *common}`), not settings.
EXTENSION_PREFIX = "x-"


#: An alias is a copy of its anchor, so aliases of aliases multiply ("billion laughs": 1 KB of nine aliases nine
#: deep is 387 million values). A file builds at most this many values, or ten a character of the file if more.
MIN_VALUE_LIMIT = 100_000
VALUES_PER_CHARACTER = 10
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it: 20x faster


class _Problem(Exception):
    """A problem at a place in the file, made a `ConfigError` with file:line:column by `parse_yaml`."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message

    @classmethod
    def at(cls, node: yaml.Node, message: str) -> _Problem:
        return cls(node.start_mark.line + 1, node.start_mark.column + 1, message)


class _Builder:
    """Plain data from a composed YAML document, the key paths' positions beside it.

    Each alias is built afresh (an override then changes one copy, not every place the anchor is used), within a
    limit on the values built; an anchor that contains an alias to itself and a key that is not a plain value are
    `_Problem`s."""

    def __init__(self, limit: int) -> None:
        self.positions: Positions = {}
        self.limit, self.values = limit, 0
        self.open: set[int] = set()  # the collections being built: an alias to one of them is a loop
        self.scalars = yaml.constructor.SafeConstructor()  # one for the file: its scalars cost a call each

    def build(self, node: yaml.Node, path: tuple) -> Any:
        self.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        self.values += 1
        if self.values > self.limit:
            raise self._too_many(path)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.open:
            raise _Problem.at(node, "this anchor holds an alias to itself (a recursive anchor), which never ends")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == STR_TAG:  # most of a file, as the constructor would make it
            return node.value
        try:
            return self.scalars.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError):  # `!!int abc`, or a date that is none: `2024-13-45`
            kind = node.tag.rsplit(":", 1)[-1]
            raise _Problem.at(node, f"invalid YAML: {node.value!r} is not a valid {kind}") from None

    def _too_many(self, path: tuple) -> _Problem:
        """The error of a file whose aliases build too much, at the top-level key being built."""
        line, col = locate(self.positions, path[:1]) or (1, 1)
        return _Problem(
            line,
            col,
            f"{dotted(path[:1])}: the aliases expand to more than {self.limit:,} values (each alias copies its anchor, "
            "so aliases of aliases multiply); write the shared block out or use fewer aliases",
        )

    def mapping(self, node: yaml.MappingNode, path: tuple) -> dict[Any, Any]:
        """A mapping with its merge keys (`<<: *anchor`, `<<: [*a, *b]`) flattened: merged keys first (an earlier
        source wins over a later one), then the mapping's own keys, which override them. Every key keeps the line
        and column where it is written (a merged key, in its anchor)."""
        merged: dict[Any, Any] = {}
        own: dict[Any, Any] = {}
        for key_node, value_node in node.value:  # merged first: the mapping's own keys then win, positions included
            if key_node.tag != MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise _Problem.at(
                        source, "a merge key (<<) takes a mapping or a list of mappings (an anchor: <<: *name)"
                    )
                for key, value in self.build(source, path).items():
                    merged.setdefault(key, value)
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Problem.at(key_node, "a key must be a plain value, not a list or a mapping (as in ? [a, b])")
            key = key_node.value
            if key in own:
                raise _Problem.at(key_node, f"duplicate key '{key}'")
            self.positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            own[key] = self.build(value_node, path + (key,))
        return {**merged, **own}


class LocatedValueError(ValueError):
    """A validator error that says where, inside the value it validated, the problem is.

    `loc` is relative to the validator's own location: a model validator on a constitution raises it
    with `("principles", 3, "id")` so the error points at the fourth principle's id, not the top level.
    """

    def __init__(self, message: str, loc: tuple = ()) -> None:
        super().__init__(message)
        self.loc = tuple(loc)


def former_name(data: Any, section: str, old: str, new: str, meaning: str) -> Any:
    """A config mapping (a model's `mode="before"` input) with a key given under its former name `old` read as `new`,
    with a warning line that says what `new` means (`meaning`); both given is an error at `old`. `section` names
    where the key is (`judge`) in the warning."""
    if not isinstance(data, dict) or old not in data:
        return data
    if new in data:
        raise LocatedValueError(f"the former name of {new}; give {new} only ({meaning})", (old,))
    log.warning("%s.%s is now %s.%s: %s", section, old, section, new, meaning)
    return {(new if key == old else key): value for key, value in data.items()}


def require_unique(named: Iterable[tuple[str, tuple]], message: str) -> None:
    """Raise `LocatedValueError` at the first name seen before: `named` gives each name with its location, and
    `message` is formatted with the name (`"duplicate id '{}'"`)."""
    seen: set[str] = set()
    for name, loc in named:
        if name in seen:
            raise LocatedValueError(message.format(name), loc)
        seen.add(name)


def load_yaml(path: str | Path) -> tuple[Any, Positions]:
    """Parse a YAML file into plain data and a map from key path to (line, column)."""
    return parse_yaml(read_text_file(path, ConfigError, "YAML file"), str(path))


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, Positions]:
    """Parse YAML text; syntax errors become one-line `ConfigError`s with file:line:column.

    Aliases of aliases may build at most `MIN_VALUE_LIMIT` values (or `VALUES_PER_CHARACTER` a character of the text),
    so the time and memory a file takes grow with its size."""
    with collector_paused():
        try:
            node = _compose(text)
        except yaml.YAMLError as exc:
            raise ConfigError(_syntax_error(exc, text, source)) from None
        except RecursionError:
            raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
        return _build(node, len(text), source)


def _build(node: yaml.Node | None, size: int, source: str) -> tuple[Any, Positions]:
    if node is None:
        return {}, {}
    builder = _Builder(max(MIN_VALUE_LIMIT, VALUES_PER_CHARACTER * size))
    try:
        return builder.build(node, ()), builder.positions
    except _Problem as problem:
        raise ConfigError(f"{source}:{problem.line}:{problem.col}: {problem.message}") from None
    except yaml.YAMLError as exc:  # a scalar its tag cannot make, e.g. `!!binary ^^`
        raise ConfigError(_syntax_error(exc, "", source)) from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block, as it was after. While many long-lived objects are made
    at once, its full passes traverse them all and free nothing: over a YAML file's growing node graph they cost
    more than the parse itself (2x the time at 10,000 principles), and torch's and transformers' imports set off
    several of ~0.1-0.2 s each a model load. Memory freed by reference counting is freed as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compose(text: str) -> yaml.Node | None:
    """The document's node graph, from libyaml where PyYAML has it; a text it refuses is parsed again by PyYAML's own
    parser, whose messages the errors give (libyaml's words and positions differ)."""
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as fast:
        if _LOADER is yaml.SafeLoader:
            raise
        try:
            yaml.compose(text, Loader=yaml.SafeLoader)
        except RecursionError:
            raise fast from None
        raise fast  # PyYAML's parser accepts what libyaml refused (a nesting depth past libyaml's limit)


def _syntax_error(exc: yaml.YAMLError, text: str, source: str) -> str:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, e.g. a control character
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return f"{source}:{line}:{column}: invalid YAML: the control character U+{code:04X} is not allowed"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        return f"{where}: invalid YAML: {exc.problem or exc.context}"
    return f"{source}: invalid YAML: {exc}"


def locate(positions: Positions, loc: tuple) -> tuple[int, int] | None:
    """The position of the deepest known prefix of a key path."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return None


def dotted(loc: tuple) -> str:
    """A pydantic error location as `principles[2].id`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validation_lines(
    exc: ValidationError,
    source: str,
    positions: Positions,
    model: type[BaseModel] | None = None,
    overrides: dict[tuple, str] | None = None,
) -> list[str]:
    """Every error of a validation, one line each: `file:line:col: key: message`, or `--set key=value: message` for
    an error in a value an override gave. An unknown key gets a "did you mean" from the keys known there; unknown
    keys come first (a misspelt key is also reported as the key it should have been, missing)."""
    lines: list[tuple[int, str]] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc += getattr((err.get("ctx") or {}).get("error"), "loc", ())
        override = _override_of(loc, overrides or {})
        msg, first = err["msg"], 1
        if err["type"] == "extra_forbidden":
            msg, first = _unknown_key(loc, model, under=override is not None), 0
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        if override is not None:
            said = msg if err["type"] == "extra_forbidden" else f"{dotted(loc)}: {msg}"
            lines.append((first, f"--set {override}: {said}"))
            continue
        pos = locate(positions, loc)
        lines.append(
            (first, f"{source}:{pos[0]}:{pos[1]}: {dotted(loc)}: {msg}" if pos else f"{source}: {dotted(loc)}: {msg}")
        )
    seen: list[str] = []
    for _, line in sorted(lines, key=lambda item: item[0]):
        if line not in seen:
            seen.append(line)
    return seen


def validation_message(
    exc: ValidationError, source: str, positions: Positions, model: type[BaseModel] | None = None
) -> str:
    """Every validation error on one line, `; ` between them (see `validation_lines`)."""
    return "; ".join(validation_lines(exc, source, positions, model))


def _unknown_key(loc: tuple, model: type[BaseModel] | None, under: bool) -> str:
    key, parent = loc[-1] if loc else "", loc[:-1]
    known = fields_at(model, parent) if model is not None else []
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if under:
        where = f" under {dotted(parent)}" if parent else ""
        return f"unknown key '{key}'{where}{hint}"
    return f"unknown key{hint}"


def _override_of(loc: tuple, overrides: dict[tuple, str]) -> str | None:
    """The `--set` item that gave the value at `loc`, if one did (its path is a prefix of `loc`, or `loc` of it)."""
    for path, item in overrides.items():
        if loc[: len(path)] == path or path[: len(loc)] == loc and loc:
            return item
    return None


def fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys a config model accepts at `loc` (a path of keys and list indexes), for "did you mean"."""
    node: Any = model
    for part in loc:
        step = _step(node, part)
        if step is not None:
            node = step
        # else: a part pydantic adds for a union member (its type's name): stay where we are
    return sorted({name for member in annotation_members(node) if _is_model(member) for name in member.model_fields})


def annotation_members(tp: Any) -> list[Any]:
    """The types an annotation takes: the members of its unions, inside `Annotated`."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return annotation_members(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in annotation_members(arg)]
    return [tp]


def annotation_marks(tp: Any, kind: type[T]) -> T | None:
    """The outermost mark of `kind` that `Annotated` puts beside a type anywhere in the annotation's unions."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return next((m for m in reversed(args[1:]) if isinstance(m, kind)), None) or annotation_marks(args[0], kind)
    if origin in (Union, types.UnionType):
        return next((m for m in reversed([annotation_marks(a, kind) for a in args]) if m is not None), None)
    return None


def describe_type(tp: Any) -> str:
    """A type as a reader writes it: `str | Path | None`, `'logprobs' | 'cot'`, `list[str]`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return describe_type(args[0])
    if origin in (Union, types.UnionType, typing.Literal):
        return " | ".join(repr(a) if origin is typing.Literal else describe_type(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(describe_type(a) for a in args)}]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp).replace("typing.", ""))


def shown(value: Any) -> str:
    """A value's type and its repr, cut at 40 characters, as an error says what came."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _step(tp: Any, part: Any) -> Any:
    for member in annotation_members(tp):
        origin = typing.get_origin(member)
        if isinstance(part, int) and origin in (list, tuple, set, frozenset):
            return typing.get_args(member)[0]
        if isinstance(part, str) and _is_model(member) and part in member.model_fields:
            return member.model_fields[part].annotation
        if isinstance(part, str) and origin is dict:
            return typing.get_args(member)[1]
    return None


def parse_value(raw: str) -> Any:
    """A `--set` value: YAML scalar semantics (numbers, booleans, lists), strings otherwise."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _split_override(item: str) -> tuple[tuple[str, ...], str]:
    if "=" not in item:
        raise ArgumentError("overrides", f"{item!r}: expected key=value", option="--set")
    key, raw = item.split("=", 1)
    return tuple(key.strip().split(".")), raw


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `key.sub=value` overrides to nested dicts, creating levels as needed."""
    for item in overrides or []:
        parts, raw = _split_override(item)
        node: dict[str, Any] = data
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {} if nxt is None else {"model": nxt} if isinstance(nxt, str) else nxt
                node[part] = nxt
            node = nxt
        node[parts[-1]] = parse_value(raw)
    return data


def override_paths(overrides: list[str] | None) -> dict[tuple[str, ...], str]:
    """The key path each `--set` item gives a value at (a later item for the same path wins)."""
    return {_split_override(item)[0]: item for item in overrides or []}


def model_from_data(
    model: type[M], data: Any, source: str, positions: Positions | None = None, overrides: list[str] | None = None
) -> M:
    """Validate plain data into `model`, raising a `ConfigError` with every error on a line of its own."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = validation_lines(exc, source, positions or {}, model, override_paths(overrides))
        raise ConfigError(lines) from None


def load_model(model: type[M], path: str | Path, overrides: list[str] | None = None) -> M:
    """Load a YAML file into `model`, with `--set` overrides applied on top."""
    data, positions = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: expected a mapping at the top level")
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX))}
    return model_from_data(model, apply_overrides(data, overrides), str(path), positions, overrides)


def config_from(model: type[M], value: Any, argument: str, loader: Callable[[Path], M] | None = None) -> M:
    """A config argument as `model`: the object itself, a dict of its fields (a bad one: `ConfigError` naming the
    argument and the key), or a YAML file's path (file:line:column); anything else is an `ArgumentError`."""
    if isinstance(value, model):
        return value
    if isinstance(value, dict):
        return model_from_data(model, value, argument)
    if isinstance(value, str | Path) and not isinstance(value, bool):
        path = Path(value).expanduser()
        return loader(path) if loader is not None else load_model(model, path)
    raise ArgumentError(argument, not_a_config(model, value))


def not_a_config(model: type[BaseModel], value: Any) -> str:
    """What a config argument says of a value that is none of its three kinds."""
    return f"expected a {model.__name__}, a dict of its fields or a YAML file's path (got {shown(value)})"


def from_arguments(config_model: type[M], /, **fields: Any) -> M:
    """`config_model(**fields)` for a function's keyword arguments: a bad value is the `ArgumentError` of the
    argument (the field) that gave it, an unknown one "unknown argument". The model is positional-only, so that
    every name, `model` included, is free for a field."""
    try:
        return config_model.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        message = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        if not loc:
            raise ArgumentError("arguments", message) from None
        raise ArgumentError(str(loc[0]), f"{dotted(loc[1:])}: {message}" if loc[1:] else message) from None


def config_with_fields(model: type[M], config: Any, fields: dict[str, Any], argument: str = "config") -> M:
    """A config argument that keyword fields may give or complete: `fields` over a dict config (or the whole config
    where it is None), else the config as `config_from` reads it."""
    if config is None or isinstance(config, dict):
        return from_arguments(model, **{**(config or {}), **fields})
    return config_from(model, config, argument)
