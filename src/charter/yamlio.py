"""YAML into pydantic models, with errors that point at file:line:column and the key.

Defaults come from the model, then the YAML file, then `--set key=value` overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from charter.errors import ArgumentError, ConfigError
from charter.tables import decode_utf8

M = TypeVar("M", bound=BaseModel)


class ConfigModel(BaseModel):
    """Base of every config section: unknown keys are errors; each field's docstring is its schema description."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

Positions = dict[tuple, tuple[int, int]]


def _construct(node: yaml.Node, path: tuple, positions: Positions) -> Any:
    positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise _DuplicateKey(key, line, col)
            positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(value_node, path + (key,), positions)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), positions) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)


class LocatedValueError(ValueError):
    """A validator error that says where, inside the value it validated, the problem is.

    `loc` is relative to the validator's own location: a model validator on a constitution raises it
    with `("principles", 3, "id")` so the error points at the fourth principle's id, not the top level.
    """

    def __init__(self, message: str, loc: tuple = ()) -> None:
        super().__init__(message)
        self.loc = tuple(loc)


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, col: int) -> None:
        self.key, self.line, self.col = key, line, col


def load_yaml(path: str | Path) -> tuple[Any, Positions]:
    """Parse a YAML file into plain data and a map from key path to (line, column)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML file") from None
    return parse_yaml(decode_utf8(raw, path, ConfigError), str(path))


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, Positions]:
    """Parse YAML text; syntax errors become one-line `ConfigError`s with file:line:column."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a control character
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"{source}:{line}:{column}: invalid YAML: the control character U+{code:04X} is not "
                          "allowed") from None
    if node is None:
        return {}, {}
    positions: Positions = {}
    try:
        return _construct(node, (), positions), positions
    except _DuplicateKey as dup:
        raise ConfigError(f"{source}:{dup.line}:{dup.col}: duplicate key '{dup.key}'") from None


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


def validation_message(exc: ValidationError, source: str, positions: Positions) -> str:
    """The first validation error as one line: file:line:col: key: message."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    loc += getattr((err.get("ctx") or {}).get("error"), "loc", ())
    pos = locate(positions, loc)
    where = f"{source}:{pos[0]}:{pos[1]}" if pos else source
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {dotted(loc)}: {msg}{suffix}"


def parse_value(raw: str) -> Any:
    """A `--set` value: YAML scalar semantics (numbers, booleans, lists), strings otherwise."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply `key.sub=value` overrides to nested dicts, creating levels as needed."""
    for item in overrides or []:
        if "=" not in item:
            raise ArgumentError("overrides", f"{item!r}: expected key=value", option="--set")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {} if nxt is None else {"model": nxt} if isinstance(nxt, str) else nxt
                node[part] = nxt
            node = nxt
        node[parts[-1]] = parse_value(raw)
    return data


def model_from_data(model: type[M], data: Any, source: str, positions: Positions | None = None) -> M:
    """Validate plain data into `model`, raising one-line `ConfigError`s."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, source, positions or {})) from None


def load_model(model: type[M], path: str | Path, overrides: list[str] | None = None) -> M:
    """Load a YAML file into `model`, with `--set` overrides applied on top."""
    data, positions = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: expected a mapping at the top level")
    return model_from_data(model, apply_overrides(data, overrides), str(path), positions)
