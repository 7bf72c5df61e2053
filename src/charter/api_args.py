"""`@public`: a public function's arguments checked by strict pydantic `TypeAdapter`s, as its signature says, before
the body runs (a string is no number, NaN no float, a lone string no list of items). `Annotated` marks add `Range`
(bounds) and `Kinds` (the kinds an argument takes where its type cannot say). A bad argument is one `ArgumentError`
line naming it, never pydantic's error. A config argument (`ConfigArg[M]`) is checked for its kind here and read by
the body with `config_from` or `config_with_fields` (`charter.yamlio`), as the command line reads its file."""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
import operator
import os
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeAlias, TypeVar

from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from charter.errors import ArgumentError
from charter.yamlio import ConfigModel, annotation_marks, annotation_members, describe_type, dotted, shown

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=ConfigModel)
__all__ = ["AtLeastOne", "ConfigArg", "Kinds", "Range", "public"]
_STRICT = ConfigDict(arbitrary_types_allowed=True, strict=True, allow_inf_nan=False)
_ITEMS = (list, tuple, set, frozenset, Iterable, Collection, Sequence, Iterator)
_BOUNDS = (("ge", operator.ge), ("gt", operator.gt), ("le", operator.le), ("lt", operator.lt))


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
        refused = [(i, f"a finite number {self.describe()}", v) for i, v in found if not math.isfinite(v)]
        if not refused:  # not finite: said before the type's own check would say it
            validate(value)
            bounds = [(b, holds) for name, holds in _BOUNDS if (b := getattr(self, name)) is not None]
            refused = [(i, self.describe(), v) for i, v in found if not all(holds(v, b) for b, holds in bounds)]
        for index, said, item in refused[:1]:
            raise PydanticCustomError("charter", "{m}", {"m": f"must be {said} (got {item!r})", "item": index})
        return value


class Kinds:
    """The kinds an argument takes where its annotation cannot say: classes, or class names matched against the
    value's classes (`"Dataset"` without importing `datasets`). Replaces the annotation's check."""

    def __init__(self, *kinds: type | str, said: str) -> None:
        self.kinds, self.said = kinds, said

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        return core_schema.no_info_plain_validator_function(self._check)

    def _check(self, value: Any) -> Any:
        names = {cls.__name__ for cls in type(value).__mro__}
        if not any(k in names if isinstance(k, str) else isinstance(value, k) for k in self.kinds):
            raise PydanticCustomError("charter", "{m}", {"m": f"expected {self.said} (got {shown(value)})"})
        return value


#: A config argument: the config model itself, a dict of its fields or a YAML file's path (None: the body says).
ConfigArg: TypeAlias = Annotated[
    C | dict[str, Any] | str | Path,
    Kinds(ConfigModel, dict, str, Path, type(None), said="a config, a dict of its fields or a YAML file's path"),
]
#: A whole number of at least 1: a count of calls, resamples, pairs or items.
AtLeastOne: TypeAlias = Annotated[int, Range(ge=1)]


def public(func: F, /) -> F:
    """Check `func`'s arguments on each call; an annotation that cannot be resolved is a `TypeError` at once."""
    signature = inspect.signature(func)
    skipped = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = {n: _Param(func, p) for n, p in signature.parameters.items() if p.kind not in skipped}

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            named = re.search(r"'(\w+)'", str(exc))
            raise ArgumentError(named.group(1) if named else "arguments", str(exc)) from None
        bound.arguments.update({n: params[n].check(v) for n, v in bound.arguments.items() if n in params})
        return func(*bound.args, **bound.kwargs)

    wrapper.__charter_checked__ = types.SimpleNamespace(params=params)  # type: ignore[attr-defined]
    return typing.cast(F, wrapper)


class _Param:
    """One parameter: its annotation resolved where the function is defined, its marks, pydantic's check of it."""

    def __init__(self, func: Callable[..., Any], param: inspect.Parameter) -> None:
        self.name, self.annotation = param.name, Any if param.annotation is param.empty else param.annotation
        if isinstance(self.annotation, str):
            try:
                self.annotation = eval(self.annotation, {**vars(typing), **func.__globals__})  # noqa: S307 - its own
            except Exception as exc:
                raise TypeError(f"{func.__module__}.{func.__qualname__}({param.name}): the annotation "
                                f"{param.annotation!r} cannot be resolved ({type(exc).__name__}: {exc}); import its "
                                "names at run time, not only for type checkers") from None  # fmt: skip
        self.kinds = annotation_marks(self.annotation, Kinds)
        origins = [typing.get_origin(m) or m for m in annotation_members(self.annotation)]
        self.items_only = not ({str, bytes, Any, object} & set(origins) or self.kinds) and any(
            m in _ITEMS for m in origins
        )

    @functools.cached_property
    def adapter(self) -> TypeAdapter | None:
        """None for `Any`, `Kinds` or a type pydantic cannot check (a protocol): left to the body."""
        with contextlib.suppress(Exception):
            try:
                return None if self.annotation is Any else TypeAdapter(self.annotation, config=_STRICT)
            except PydanticUserError:  # a model or dataclass has its own config
                return TypeAdapter(self.annotation)
        return None

    def check(self, value: Any) -> Any:
        if isinstance(value, numbers.Real) and not isinstance(value, bool | int | float):  # numpy's int64, float32
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if self.items_only and isinstance(value, str | bytes):  # a string is iterable: not one item a character
            raise ArgumentError(self.name, f"expected {describe_type(self.annotation)} (got {shown(value)})")
        try:
            if self.adapter is not None:
                self.adapter.validate_python(value)
        except ValidationError as exc:
            raise ArgumentError(*self._message(exc.errors(), value)) from None
        return value

    def _message(self, errors: list[Any], value: Any) -> tuple[str, str]:
        """The argument (or its item) and one line: where inside the value, what was expected and what came."""
        if mine := [e for e in errors if e["type"] == "charter"]:
            item = (mine[0].get("ctx") or {}).get("item")
            return (self.name if item is None else f"{self.name}[{item}]"), mine[0]["msg"]
        prefix = tuple(os.path.commonprefix([list(e["loc"]) for e in errors]))
        if not prefix and any(e["type"] == "finite_number" for e in errors):
            said = "a finite number" if isinstance(value, int | float) else "finite numbers"
            return self.name, f"expected {said} (got {value!r})"
        if not prefix and not any(e["type"] == "literal_error" for e in errors):
            return self.name, f"expected {describe_type(self.annotation)} (got {shown(value)})"
        said = list(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errors))
        said = said[:1] + [s.removeprefix("Input should be ") for s in said[1:]]
        where = (f"item {dotted(prefix)}: " if isinstance(prefix[0], int) else f"{dotted(prefix)}: ") if prefix else ""
        for part in prefix:  # the item the error is about, as far as the value can be indexed
            with contextlib.suppress(LookupError, TypeError):
                value = value[part] if isinstance(value, dict | list | tuple) else value
        return self.name, f"{where}{', or '.join(said)} (got {shown(value)})"
