"""`@public`: a public function's arguments checked by pydantic, as its signature says, before the body runs.

Each argument's annotation is a pydantic `TypeAdapter`, strict (a string is not a number, nor is NaN, and a dict is
not a `Constitution`), whose `Annotated` marks are pydantic metadata: `Range` (bounds; `each` for every item),
`Kinds` (the kinds an `Any` argument takes) and `Loads` (how a config argument, `ConfigArg[M]`, becomes its model: the
model, a dict of its fields or a YAML file's path). A bad argument is one `ArgumentError` line naming it, never
pydantic's error. The body gets the arguments as given, configs loaded. An unresolvable annotation is an error at
import; a lone string is never a list of items.
"""

from __future__ import annotations

import collections.abc as abc
import functools
import inspect
import itertools
import math
import numbers
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, TypeVar, Union, overload

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from charter.errors import ArgumentError
from charter.yamlio import ConfigModel, annotation_members, config_from, dotted, from_arguments, not_a_config

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=ConfigModel)
__all__ = ["AtLeastOne", "ConfigArg", "Kinds", "Loads", "Range", "config_from", "from_arguments", "public"]
_STRICT = ConfigDict(arbitrary_types_allowed=True, strict=True, allow_inf_nan=False)
_ITEMS = (list, tuple, set, frozenset, abc.Iterable, abc.Collection, abc.Sequence, abc.Iterator)


def _refused(message: str, item: int | None = None) -> PydanticCustomError:
    return PydanticCustomError("charter", "{message}", {"message": message, "item": item})


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric argument (None: unbounded on that side); with `each`, of every item of a sequence."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    each: bool = False

    def describe(self) -> str:
        low = f"at least {self.ge}" if self.ge is not None else f"above {self.gt}" if self.gt is not None else ""
        high = f"at most {self.le}" if self.le is not None else f"below {self.lt}" if self.lt is not None else ""
        return " and ".join(part for part in (low, high) if part)

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        return core_schema.no_info_wrap_validator_function(self._check, handler(source))

    def _check(self, value: Any, validate: Callable[[Any], Any]) -> Any:
        items = enumerate(value) if self.each and value is not None else [(None, value)]
        found = [(i, v) for i, v in items if isinstance(v, numbers.Real) and not isinstance(v, bool)]
        for index, item in found:  # not finite: said before the type's own check would say it
            if not math.isfinite(item):
                raise _refused(f"must be a finite number {self.describe()} (got {item!r})", index)
        validate(value)
        bounds = ((self.ge, float.__ge__), (self.gt, float.__gt__), (self.le, float.__le__), (self.lt, float.__lt__))
        for index, item in found:
            if not all(bound is None or within(float(item), float(bound)) for bound, within in bounds):
                raise _refused(f"must be {self.describe()} (got {item!r})", index)
        return value


@dataclass(frozen=True, init=False)
class Kinds:
    """The kinds an argument takes where its annotation cannot say: classes, or class names matched against the
    value's classes (`"Dataset"` without importing `datasets`). Replaces the annotation's check."""

    kinds: tuple[type | str, ...]
    said: str

    def __init__(self, *kinds: type | str, said: str) -> None:
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "said", said)

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        return core_schema.no_info_plain_validator_function(self._check)

    def _check(self, value: Any) -> Any:
        names = {cls.__name__ for cls in type(value).__mro__}
        if any(kind in names if isinstance(kind, str) else isinstance(value, kind) for kind in self.kinds):
            return value
        raise _refused(f"expected {self.said} (got {_kind(value)})")


@dataclass(frozen=True)
class Loads:
    """How a config argument becomes its model before the body runs: `loader(path, overrides)` reads a YAML path
    (default: `load_model`), `overrides` names the parameter of its `--set` items, `fields` the `**kwargs`
    parameter whose items are fields of the model (over a dict config, or the whole config where it is None)."""

    loader: Callable[..., Any] | None = None
    overrides: str | None = None
    fields: str | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        model, takes_none = _config_model(source), type(None) in annotation_members(source) or bool(self.fields)

        def check(value: Any) -> Any:
            if (
                isinstance(value, model | dict | str | Path)
                and not isinstance(value, bool)
                or value is None
                and takes_none
            ):
                return value
            raise _refused(not_a_config(model, value))

        return core_schema.no_info_plain_validator_function(check)

    def load(self, model: Any, name: str, value: Any, given: dict[str, Any]) -> Any:
        """The config argument as its model (None stays None where the annotation takes it and no fields do)."""
        if self.fields is not None and (value is None or isinstance(value, dict)):
            return from_arguments(model, **{**(value or {}), **given.get(self.fields, {})})
        if value is None or self.loader is None:
            return None if value is None else config_from(model, value, name)
        overrides, loader = given.get(self.overrides) if self.overrides else None, self.loader
        return config_from(model, value, name, (lambda path: loader(path, overrides)) if self.overrides else loader)


#: A config argument: the config model itself, a dict of its fields or a YAML file's path; the body gets the model.
ConfigArg: TypeAlias = Annotated[C | dict[str, Any] | str | Path, Loads()]
#: A whole number of at least 1: a count of calls, resamples, pairs or items.
AtLeastOne: TypeAlias = Annotated[int, Range(ge=1)]


@overload
def public(func: F, /) -> F: ...
@overload
def public() -> Callable[[F], F]: ...
def public(func: Callable[..., Any] | None = None, /) -> Any:
    """`@public` or `@public()`. Raises `TypeError` at definition: an annotation cannot be resolved, `Loads` names no
    parameter, or a config argument does not say how it is loaded."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        params = {n: _Param(n, _resolved(func, p), func.__qualname__) for n, p in signature.parameters.items()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}  # fmt: skip
        for named in (n for p in params.values() if p.loads for n in (p.loads.overrides, p.loads.fields) if n):
            if named not in signature.parameters:
                raise TypeError(f"{func.__qualname__}: Loads names no parameter {named}")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                named = re.search(r"'(\w+)'", str(exc))
                raise ArgumentError(named.group(1) if named else "arguments", str(exc)) from None
            given = bound.arguments
            given.update({name: params[name].check(value) for name, value in given.items() if name in params})
            for name, param in params.items():  # every argument checked: the configs load, with their overrides
                if param.config is not None and param.loads is not None:
                    value = given.get(name, signature.parameters[name].default)
                    given[name] = param.loads.load(param.config, name, value, given)
            return func(*bound.args, **bound.kwargs)

        wrapper.__charter_checked__ = types.SimpleNamespace(params=params)  # type: ignore[attr-defined]
        return typing.cast(F, wrapper)

    return decorate(func) if func is not None else decorate


class _Param:
    """One parameter: its resolved annotation, its marks, and pydantic's check of it (built on the first call)."""

    def __init__(self, name: str, annotation: Any, where: str) -> None:
        self.name, self.annotation, marks = name, annotation, _metadata(annotation)
        self.kinds = next((m for m in reversed(marks) if isinstance(m, Kinds)), None)
        self.loads = next((m for m in reversed(marks) if isinstance(m, Loads)), None)
        self.config = _config_model(annotation) if self.kinds is None else None
        if self.config is not None and self.loads is None:
            raise TypeError(f"{where}({name}): a config argument says how it is loaded (ConfigArg, Loads) or what it "
                            "takes as it is (Kinds)")  # fmt: skip
        members = [typing.get_origin(m) or m for m in annotation_members(annotation)]
        self.items_only = not {str, bytes, Any, object} & set(members) and any(m in _ITEMS for m in members)

    @functools.cached_property
    def adapter(self) -> TypeAdapter | None:
        """None for `Any` or a type pydantic cannot check (a protocol): left to the body."""
        try:
            try:
                return None if self.annotation is Any else TypeAdapter(self.annotation, config=_STRICT)
            except PydanticUserError:  # a model or dataclass has its own config
                return TypeAdapter(self.annotation)
        except Exception:
            return None

    def check(self, value: Any) -> Any:
        if isinstance(value, numbers.Real) and not isinstance(value, bool | int | float):  # numpy's int64, float32
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if self.items_only and isinstance(value, str | bytes):  # a string is iterable: not one item a character
            raise ArgumentError(self.name, f"expected {describe(self.annotation)} (got {_kind(value)})")
        try:
            if self.adapter is not None:
                self.adapter.validate_python(value)
        except ValidationError as exc:
            raise ArgumentError(*_message(exc, self.name, self.annotation, value)) from None
        return value


def _resolved(func: Callable[..., Any], param: inspect.Parameter) -> Any:
    """A parameter's annotation, resolved where the function is defined (the return's is left alone)."""
    if not isinstance(annotation := param.annotation, str):
        return Any if annotation is inspect.Parameter.empty else annotation
    try:
        return eval(annotation, {**vars(typing), **func.__globals__})  # noqa: S307 - the function's own annotation
    except Exception as exc:
        raise TypeError(
            f"{func.__module__}.{func.__qualname__}({param.name}): the annotation {annotation!r} cannot be resolved "
            f"({type(exc).__name__}: {exc}); import its names at run time, not only for type checkers"
        ) from None


def _metadata(annotation: Any) -> list[Any]:
    """What `Annotated` puts beside the type, anywhere in the annotation's unions, outermost last."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return [*_metadata(args[0]), *args[1:]]
    return [mark for arg in args for mark in _metadata(arg)] if origin in (Union, types.UnionType) else []


def _config_model(annotation: Any) -> Any:
    """The config model an annotation takes together with a dict of its fields, or None."""
    members = annotation_members(annotation)
    models = [m for m in members if isinstance(m, type) and issubclass(m, ConfigModel)]
    return models[0] if models and dict in [typing.get_origin(m) or m for m in members] else None


def describe(annotation: Any) -> str:
    """A type as a reader writes it: `str | Path | None`, `'logprobs' | 'cot'`, `list[str]`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return describe(args[0])
    if origin in (Union, types.UnionType, Literal):
        return " | ".join(repr(a) if origin is Literal else describe(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(describe(a) for a in args)}]"
    return (
        "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation).replace("typing.", ""))
    )


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _message(exc: ValidationError, name: str, annotation: Any, value: Any) -> tuple[str, str]:
    """The argument (or its item) and one line: where inside the value, what was expected and what came."""
    errors = exc.errors()
    if mine := [e for e in errors if e["type"] == "charter"]:
        item = (mine[0].get("ctx") or {}).get("item")
        return (name if item is None else f"{name}[{item}]"), mine[0]["msg"]
    same = itertools.takewhile(lambda parts: len(set(parts)) == 1, zip(*[e["loc"] for e in errors]))
    prefix = tuple(parts[0] for parts in same)
    if not prefix and any(e["type"] == "finite_number" for e in errors):
        return (
            name,
            f"expected {'a finite number' if isinstance(value, int | float) else 'finite numbers'} (got {value!r})",
        )
    if not prefix and not any(e["type"] == "literal_error" for e in errors):
        return name, f"expected {describe(annotation)} (got {_kind(value)})"
    said = list(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errors))
    where = (f"item {dotted(prefix)}: " if isinstance(prefix[0], int) else f"{dotted(prefix)}: ") if prefix else ""
    said = said[:1] + [s.removeprefix("Input should be ") for s in said[1:]]
    got = value
    for part in prefix:
        got = (
            got[part]
            if isinstance(got, list | tuple | dict) and part in (got if isinstance(got, dict) else range(len(got)))
            else got
        )
    return name, f"{where}{', or '.join(said)} (got {_kind(got)})"
