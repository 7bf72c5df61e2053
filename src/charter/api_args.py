"""One way into the public API: how every function in `charter.__all__` takes and checks its arguments.

`@public` on a function checks each argument before the body runs, as the function's signature says: its type
(strictly: a string is not a number, nor is NaN or infinity, and a dict is not a `Constitution`), and what
`Annotated` puts beside the type:

    @public
    def f(
        config: ConfigArg[SynthConfig],                        # loaded: the model, a dict of its fields or a YAML path
        test_fraction: Annotated[float, Range(ge=0.05, le=0.9)] = 0.3,  # the bounds the CLI puts on the option
        source: Annotated[Any, Kinds(list, "Dataset", said="a list or a Dataset")] = (),  # where the type cannot say
    ) -> ...: ...

No model is built and no call is made for a bad argument: it raises `ArgumentError` naming it, in one line; never
pydantic's `ValidationError`, nor a `TypeError` or `KeyError` from inside. The annotations are resolved when the
function is defined: one that cannot be (a name imported only for type checkers) is an error at import, not an
argument left unchecked.

A config argument (`ConfigArg[M]`, or any annotation that takes a `ConfigModel` and a dict) is loaded as the
`Loads` beside it says, before the body runs, so the body gets the model and validates nothing again: the model
itself, a dict of its fields (a bad field is a `ConfigError` naming the argument and the key), or the path of a
YAML file (a bad field is a `ConfigError` naming file:line:column and the key, as `charter run` does). One that
takes a config model and a dict must say how it is loaded (`Loads`), or that the body reads it (`Kinds`).

An argument that takes several items (an `Iterable`, a `Sequence`, a list) refuses a lone string, which would
otherwise be read character by character, unless its annotation also takes a string.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import numbers
import operator
import re
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, Union, overload

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter, ValidationError

from charter.errors import ArgumentError
from charter.yamlio import ConfigModel, annotation_members, dotted, load_model, model_from_data

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=ConfigModel)

__all__ = ["AtLeastOne", "ConfigArg", "Kinds", "Loads", "Range", "config_from", "from_arguments", "public"]


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric argument (None: unbounded on that side); with `each`, of every item of a sequence."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    each: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` (a number), or None."""
        ok = all(
            (
                self.ge is None or value >= self.ge,
                self.gt is None or value > self.gt,
                self.le is None or value <= self.le,
                self.lt is None or value < self.lt,
            )
        )
        return None if ok else f"must be {self.describe()} (got {value!r})"

    def describe(self) -> str:
        low = f"at least {self.ge}" if self.ge is not None else f"above {self.gt}" if self.gt is not None else ""
        high = f"at most {self.le}" if self.le is not None else f"below {self.lt}" if self.lt is not None else ""
        return " and ".join(part for part in (low, high) if part)


@dataclass(frozen=True, init=False)
class Kinds:
    """The kinds of value an argument takes, where its annotation cannot say (`Any`, or a type of an optional
    dependency): classes, or class names matched against the value's classes (`"Dataset"` without importing
    `datasets`). Replaces the annotation's check for that argument; the value reaches the body as it was given."""

    kinds: tuple[type | str, ...]
    said: str

    def __init__(self, *kinds: type | str, said: str) -> None:
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "said", said)

    def problem(self, value: Any) -> str | None:
        names = {cls.__name__ for cls in type(value).__mro__}
        for kind in self.kinds:
            if isinstance(kind, str) and kind in names or isinstance(kind, type) and isinstance(value, kind):
                return None
        return f"expected {self.said} (got {_kind(value)})"


@dataclass(frozen=True)
class Loads:
    """How a config argument becomes its model before the body runs (see `config_from`).

    Attributes:
        loader: Reads a YAML path into the model (default: `load_model` of the model); called `loader(path,
            overrides)` where `overrides` names a parameter.
        overrides: The parameter holding the `--set`-style items the loader applies on top of a file.
        fields: The `**kwargs` parameter whose items are fields of the model: over a dict config (its keys
            overridden), or the whole config where the argument is None; a bad one names the field.
    """

    loader: Callable[..., Any] | None = None
    overrides: str | None = None
    fields: str | None = None


#: A config argument: the config model itself, a dict of its fields or a YAML file's path; the body gets the model.
ConfigArg: TypeAlias = Annotated[C | dict[str, Any] | str | Path, Loads()]
#: A whole number of at least 1: a count of calls, resamples, pairs or items.
AtLeastOne: TypeAlias = Annotated[int, Range(ge=1)]

_NONE_TYPE = type(None)
_UNBUILT = object()


def config_from(model: type[M], value: Any, argument: str, loader: Callable[[Path], M] | None = None) -> M:
    """A config argument as `model`: the object itself, a dict of its fields, or the path of a YAML file.

    Raises:
        ConfigError: The dict or the file does not validate (one line per error, naming the argument or
            file:line:column, and the key), or the file cannot be read.
        ArgumentError: `value` is none of the three.
    """
    if isinstance(value, model):
        return value
    if isinstance(value, dict):
        return model_from_data(model, value, argument)
    if isinstance(value, str | Path) and not isinstance(value, bool):
        path = Path(value).expanduser()
        return loader(path) if loader is not None else load_model(model, path)
    raise ArgumentError(argument, _not_a_config(model, value))


def _not_a_config(model: type[BaseModel], value: Any) -> str:
    return f"expected a {model.__name__}, a dict of its fields or a YAML file's path (got {_kind(value)})"


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


@overload
def public(func: F, /) -> F: ...
@overload
def public() -> Callable[[F], F]: ...
def public(func: Callable[..., Any] | None = None, /) -> Any:
    """Check a public function's arguments, as its signature says, before its body runs (see the module's
    docstring). `@public` or `@public()`.

    Args:
        func: The function (`@public` without parentheses).

    Raises:
        TypeError: At definition: an annotation cannot be resolved, a check names no parameter, or a config
            argument does not say how it is loaded.
    """

    def decorate(func: F) -> F:
        spec = _Spec(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = spec.check(args, kwargs)
            return func(*args, **kwargs)

        wrapper.__charter_checked__ = spec  # type: ignore[attr-defined]
        return typing.cast(F, wrapper)

    return decorate(func) if func is not None else decorate


class _Spec:
    """A function's parameters, their annotations resolved when it is defined, and their checks."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.signature = inspect.signature(func)
        self.params = {
            name: _Param(name, self._annotation(param), func.__qualname__)
            for name, param in self.signature.parameters.items()
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        }
        for param in self.params.values():
            for named in (param.loads.overrides, param.loads.fields) if param.loads else ():
                if named is not None and named not in self.signature.parameters:
                    raise TypeError(f"{func.__qualname__}({param.name}): Loads names no parameter {named}")

    def _annotation(self, param: inspect.Parameter) -> Any:
        annotation = param.annotation
        if annotation is inspect.Parameter.empty:
            return Any
        if not isinstance(annotation, str):
            return annotation
        namespace = dict(vars(typing))
        namespace.update(self.func.__globals__)
        try:
            return eval(annotation, namespace)  # noqa: S307 - the function's own annotation, in its module
        except Exception as exc:
            raise TypeError(
                f"{self.func.__module__}.{self.func.__qualname__}({param.name}): the annotation {annotation!r} "
                f"cannot be resolved ({type(exc).__name__}: {exc}); import its names at run time, not only for "
                "type checkers, so that the argument is checked"
            ) from None

    def check(self, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            named = re.search(r"'(\w+)'", str(exc))
            raise ArgumentError(named.group(1) if named else "arguments", str(exc)) from None
        arguments = bound.arguments
        for name, value in list(arguments.items()):
            if name in self.params:
                arguments[name] = self.params[name].check(value)
        for name, param in self.params.items():  # every argument checked, the configs load (with their overrides)
            if param.config is not None:
                default = self.signature.parameters[name].default
                arguments[name] = param.load(arguments.get(name, default), arguments)
        return bound.args, bound.kwargs


class _Param:
    def __init__(self, name: str, annotation: Any, where: str) -> None:
        self.name, self.annotation = name, annotation
        marks = _metadata(annotation)
        members = annotation_members(annotation)
        self.range = _last(marks, Range)
        self.kinds = _last(marks, Kinds)
        self.loads = _last(marks, Loads)
        models = [m for m in members if isinstance(m, type) and issubclass(m, ConfigModel)]
        takes_dict = dict in [typing.get_origin(m) or m for m in members]
        self.config = models[0] if models and takes_dict and self.kinds is None else None
        if self.config is not None and self.loads is None:
            raise TypeError(f"{where}({name}): a config argument says how it is loaded (ConfigArg, Loads) or what it "
                            "takes as it is (Kinds)")  # fmt: skip
        self.nullable = _NONE_TYPE in members
        self.items_only = _takes_items(members)
        unchecked = annotation is Any or self.kinds is not None
        self._adapter: TypeAdapter | object | None = None if unchecked else _UNBUILT
        self._lock = threading.Lock()

    @property
    def adapter(self) -> TypeAdapter | None:
        """pydantic's check of the type, built on the first call (imports stay lazy); None without one."""
        with self._lock:
            if self._adapter is _UNBUILT:
                self._adapter = _adapter(_bare(self.annotation))
            return typing.cast(TypeAdapter | None, self._adapter)

    def check(self, value: Any) -> Any:
        value = _plain_number(value)
        if self.config is not None:
            takes_none = self.nullable or self.loads is not None and self.loads.fields is not None
            if not isinstance(value, self.config | dict | str | Path) and not (value is None and takes_none):
                raise ArgumentError(self.name, _not_a_config(self.config, value))
            return value
        if self.items_only and isinstance(value, str | bytes):  # a string is iterable: not one item a character
            raise ArgumentError(self.name, f"expected {describe(self.annotation)} (got {_kind(value)})")
        if self.kinds is not None and (problem := self.kinds.problem(value)):
            raise ArgumentError(self.name, problem)
        if self.adapter is not None:
            try:
                self.adapter.validate_python(value)
            except ValidationError as exc:
                if self.range is not None and any(e["type"] == "finite_number" for e in exc.errors()):
                    self._check_range(value)  # names the item that is not finite
                raise ArgumentError(self.name, _message(exc, self.annotation, value)) from None
        if self.range is not None and value is not None:
            self._check_range(value)
        return value

    def load(self, value: Any, arguments: dict[str, Any]) -> Any:
        """The config argument as its model (None stays None where the annotation takes it and no fields do)."""
        assert self.config is not None and self.loads is not None
        loads = self.loads
        if loads.fields is not None and (value is None or isinstance(value, dict)):
            return from_arguments(self.config, **{**(value or {}), **arguments.get(loads.fields, {})})
        if value is None and self.nullable:
            return None
        loader = loads.loader
        if loader is not None and loads.overrides is not None:
            loader = functools.partial(_load_with, loader, arguments.get(loads.overrides))
        return config_from(self.config, value, self.name, loader)

    def _check_range(self, value: Any) -> None:
        assert self.range is not None
        items = enumerate(value) if self.range.each else [(None, value)]
        for index, item in items:
            where = self.name if index is None else f"{self.name}[{index}]"
            if isinstance(item, bool) or not isinstance(item, int | float) and not hasattr(item, "__float__"):
                raise ArgumentError(where, f"expected a number (got {_kind(item)})")
            problem = (
                self.range.problem(item)
                if math.isfinite(item)
                else f"must be a finite number {self.range.describe()} (got {item!r})"
            )
            if problem:
                raise ArgumentError(where, problem)


def _load_with(loader: Callable[..., Any], overrides: Any, path: Path) -> Any:
    return loader(path, overrides)


def _last(marks: list[Any], kind: type) -> Any:
    found = [m for m in marks if isinstance(m, kind)]
    return found[-1] if found else None


def _bare(annotation: Any) -> Any:
    """The type without what `Annotated` puts beside it (charter's checks, not pydantic's)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _bare(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        bare = [_bare(arg) for arg in args]
        return annotation if bare == list(args) else functools.reduce(operator.or_, bare)
    return annotation


def _metadata(annotation: Any) -> list[Any]:
    """What `Annotated` puts beside the type, anywhere in the annotation's unions, outermost last."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *marks = typing.get_args(annotation)
        return [*_metadata(inner), *marks]
    if origin in (Union, types.UnionType):
        return [mark for arg in typing.get_args(annotation) for mark in _metadata(arg)]
    return []


def _plain_number(value: Any) -> Any:
    """A number of another library (numpy's int64, float32) as Python's int or float; anything else as it is."""
    if isinstance(value, bool | int | float) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _adapter(annotation: Any) -> TypeAdapter | None:
    config = ConfigDict(arbitrary_types_allowed=True, strict=True, allow_inf_nan=False)
    try:
        try:
            return TypeAdapter(annotation, config=config)
        except PydanticUserError:  # a model or dataclass has its own config
            return TypeAdapter(annotation)
    except Exception:  # a type pydantic cannot check (a protocol, a generic alias): left to the body
        return None


#: The collections a string would pass for (pydantic's own `Sequence` and list checks refuse one already).
_COLLECTIONS = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Iterable,
    collections.abc.Collection,
    collections.abc.Sequence,
    collections.abc.Iterator,
)


def _takes_items(members: list[Any]) -> bool:
    """Whether an argument of these annotation members takes several items and never a lone string."""
    origins = [typing.get_origin(m) or m for m in members]
    takes_text = any(m in (str, bytes, Any, object) for m in members)
    return not takes_text and any(o in _COLLECTIONS for o in origins)


def describe(annotation: Any) -> str:
    """A type as a reader writes it: `str | Path | None`, `'logprobs' | 'cot'`, `list[str]`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return describe(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return " | ".join(describe(m) for m in typing.get_args(annotation))
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(annotation))
    if annotation is _NONE_TYPE:
        return "None"
    if origin is not None:
        args = ", ".join(describe(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _kind(value: Any) -> str:
    text = repr(value)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {shown}"


def _message(exc: ValidationError, annotation: Any, value: Any) -> str:
    """One line for a failed check: where inside the value (for an item of a list), and what was expected."""
    errors = exc.errors()
    prefix = _common_prefix([tuple(e["loc"]) for e in errors])
    if not prefix and any(e["type"] == "finite_number" for e in errors):
        what = "a finite number" if isinstance(value, int | float) else "finite numbers"
        return f"expected {what} (got {value!r})"
    if not prefix and not any(e["type"] == "literal_error" for e in errors):
        return f"expected {describe(annotation)} (got {_kind(value)})"
    said: list[str] = []
    for err in errors:
        msg = err["msg"].removeprefix("Value error, ")
        msg = msg if not said else msg.removeprefix("Input should be ")
        if msg not in said:
            said.append(msg)
    where = f"{dotted(prefix)}: " if prefix else ""
    where = f"item {where}" if prefix and isinstance(prefix[0], int) else where
    got = _at(value, prefix)
    return f"{where}{', or '.join(said)} (got {_kind(got)})"


def _common_prefix(locs: list[tuple]) -> tuple:
    prefix: list[Any] = []
    for parts in zip(*locs):
        if any(part != parts[0] for part in parts):
            break
        prefix.append(parts[0])
    return tuple(prefix)


def _at(value: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            value = value[part]
        except Exception:
            return value
    return value
