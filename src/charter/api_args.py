"""`@public`: a public function's arguments checked by pydantic, as its signature says, before the body runs.

Each annotation is a strict pydantic `TypeAdapter` (a string is no number, NaN no float, a dict no `Constitution`, a
lone string no list of items); `Annotated` marks add `Range` (bounds), `Kinds` (the kinds an `Any` argument takes)
and `Loads` (how a config argument, `ConfigArg[M]`, becomes its model). A bad argument is one `ArgumentError` line
naming it, never pydantic's error; the body gets the arguments as given, configs loaded.
"""

from __future__ import annotations

import collections.abc as abc
import functools
import inspect
import itertools
import math
import numbers
import operator
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeAlias, TypeVar

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from charter.errors import ArgumentError
from charter.yamlio import (
    ConfigModel,
    annotation_marks,
    annotation_members,
    config_from,
    describe_type,
    dotted,
    from_arguments,
    not_a_config,
    shown,
)

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=ConfigModel)
__all__ = ["AtLeastOne", "ConfigArg", "Kinds", "Loads", "Range", "config_from", "from_arguments", "public"]
_STRICT = ConfigDict(arbitrary_types_allowed=True, strict=True, allow_inf_nan=False)
_ITEMS = (list, tuple, set, frozenset, abc.Iterable, abc.Collection, abc.Sequence, abc.Iterator)
_BOUNDS = (("ge", operator.ge), ("gt", operator.gt), ("le", operator.le), ("lt", operator.lt))


def _refused(message: str, item: int | None) -> PydanticCustomError:
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
        for index, item in found:
            if not all(getattr(self, b) is None or holds(item, getattr(self, b)) for b, holds in _BOUNDS):
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


@dataclass(frozen=True)
class Loads:
    """How a config argument becomes its model before the body runs: `loader(path, overrides)` reads a YAML path
    (default: `load_model`), `overrides` names the parameter of its `--set` items, `fields` the `**kwargs`
    parameter whose items are fields of the model (over a dict config, or the whole config where it is None)."""

    loader: Callable[..., Any] | None = None
    overrides: str | None = None
    fields: str | None = None


#: A config argument: the config model itself, a dict of its fields or a YAML file's path; the body gets the model.
ConfigArg: TypeAlias = Annotated[C | dict[str, Any] | str | Path, Loads()]
#: A whole number of at least 1: a count of calls, resamples, pairs or items.
AtLeastOne: TypeAlias = Annotated[int, Range(ge=1)]


def public(func: F, /) -> F:
    """Check `func`'s arguments on each call. Raises `TypeError` at definition: an annotation cannot be resolved,
    `Loads` names no parameter, or a config argument does not say how it is loaded."""
    signature = inspect.signature(func)
    params = {n: _Param(func, p) for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL,
              p.VAR_KEYWORD)}  # fmt: skip
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
            if param.config is not None:
                given[name] = param.load(given.get(name, signature.parameters[name].default), given)
        return func(*bound.args, **bound.kwargs)

    wrapper.__charter_checked__ = types.SimpleNamespace(params=params)  # type: ignore[attr-defined]
    return typing.cast(F, wrapper)


class _Param:
    """One parameter: its resolved annotation, its marks, and pydantic's check of it (built on the first call)."""

    def __init__(self, func: Callable[..., Any], param: inspect.Parameter) -> None:
        self.name, self.annotation = param.name, _resolved(func, param)
        annotation = self.annotation
        self.kinds, self.loads = annotation_marks(annotation, Kinds), annotation_marks(annotation, Loads)
        members = annotation_members(annotation)
        models = [m for m in members if isinstance(m, type) and issubclass(m, ConfigModel)]
        takes_dict = dict in [typing.get_origin(m) or m for m in members]
        self.config = models[0] if models and takes_dict and self.kinds is None else None
        self.takes_none = type(None) in members or bool(self.loads and self.loads.fields)
        if self.config is not None and self.loads is None:
            raise TypeError(f"{func.__qualname__}({self.name}): a config argument says how it is loaded (ConfigArg, "
                            "Loads) or what it takes as it is (Kinds)")  # fmt: skip
        origins = [typing.get_origin(m) or m for m in members]
        self.items_only = not {str, bytes, Any, object} & set(origins) and any(m in _ITEMS for m in origins)

    @functools.cached_property
    def adapter(self) -> TypeAdapter | None:
        """None for `Any`, a config, `Kinds` or a type pydantic cannot check (a protocol): left to the body."""
        if self.annotation is Any or self.kinds is not None or self.config is not None:
            return None
        try:
            try:
                return TypeAdapter(self.annotation, config=_STRICT)
            except PydanticUserError:  # a model or dataclass has its own config
                return TypeAdapter(self.annotation)
        except Exception:
            return None

    def check(self, value: Any) -> Any:
        if isinstance(value, numbers.Real) and not isinstance(value, bool | int | float):  # numpy's int64, float32
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        names = {cls.__name__ for cls in type(value).__mro__}
        if self.kinds and not any(k in names if isinstance(k, str) else isinstance(value, k) for k in self.kinds.kinds):
            raise ArgumentError(self.name, f"expected {self.kinds.said} (got {shown(value)})")
        if self.config is not None and not (
            isinstance(value, self.config | dict | str | Path)
            and not isinstance(value, bool)
            or value is None
            and self.takes_none
        ):
            raise ArgumentError(self.name, not_a_config(self.config, value))
        if self.items_only and isinstance(value, str | bytes):  # a string is iterable: not one item a character
            raise ArgumentError(self.name, f"expected {describe_type(self.annotation)} (got {shown(value)})")
        try:
            if self.adapter is not None:
                self.adapter.validate_python(value)
        except ValidationError as exc:
            raise ArgumentError(*self._message(exc.errors(), value)) from None
        return value

    def load(self, value: Any, given: dict[str, Any]) -> Any:
        """The config argument as its model (None stays None where the annotation takes it and no fields do)."""
        model, loads = typing.cast(type[ConfigModel], self.config), typing.cast(Loads, self.loads)
        if loads.fields is not None and (value is None or isinstance(value, dict)):
            return from_arguments(model, **{**(value or {}), **given.get(loads.fields, {})})
        if value is None or loads.loader is None:
            return None if value is None else config_from(model, value, self.name)
        loader, overrides = loads.loader, given.get(loads.overrides) if loads.overrides else None
        return config_from(model, value, self.name, lambda path: loader(path, overrides) if loads.overrides else
                           loader(path))  # fmt: skip

    def _message(self, errors: list[Any], value: Any) -> tuple[str, str]:
        """The argument (or its item) and one line: where inside the value, what was expected and what came."""
        if mine := [e for e in errors if e["type"] == "charter"]:
            item = (mine[0].get("ctx") or {}).get("item")
            return (self.name if item is None else f"{self.name}[{item}]"), mine[0]["msg"]
        same = itertools.takewhile(lambda parts: len(set(parts)) == 1, zip(*[e["loc"] for e in errors]))
        prefix = tuple(parts[0] for parts in same)
        if not prefix and any(e["type"] == "finite_number" for e in errors):
            said = "a finite number" if isinstance(value, int | float) else "finite numbers"
            return self.name, f"expected {said} (got {value!r})"
        if not prefix and not any(e["type"] == "literal_error" for e in errors):
            return self.name, f"expected {describe_type(self.annotation)} (got {shown(value)})"
        said = list(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errors))
        said = said[:1] + [s.removeprefix("Input should be ") for s in said[1:]]
        where = (f"item {dotted(prefix)}: " if isinstance(prefix[0], int) else f"{dotted(prefix)}: ") if prefix else ""
        for part in prefix:
            inside = isinstance(value, list | tuple | dict) and part in (value if isinstance(value, dict) else
                                                                         range(len(value)))  # fmt: skip
            value = value[part] if inside else value
        return self.name, f"{where}{', or '.join(said)} (got {shown(value)})"


def _resolved(func: Callable[..., Any], param: inspect.Parameter) -> Any:
    """A parameter's annotation, resolved where the function is defined (the return's is left alone)."""
    if not isinstance(annotation := param.annotation, str):
        return Any if annotation is inspect.Parameter.empty else annotation
    try:
        return eval(annotation, {**vars(typing), **func.__globals__})  # noqa: S307 - the function's own annotation
    except Exception as exc:
        raise TypeError(f"{func.__module__}.{func.__qualname__}({param.name}): the annotation {annotation!r} cannot be "
                        f"resolved ({type(exc).__name__}: {exc}); import its names at run time, not only for type "
                        "checkers") from None  # fmt: skip
