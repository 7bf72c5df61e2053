"""`@public`: a public function's arguments checked before its body runs, by strict pydantic `TypeAdapter`s of its
annotations (a string is no number, NaN no float, a lone string no list of items) with `Range` (bounds) and `Kinds`
(kinds a type cannot say) as `Annotated` marks. A bad argument is one `ArgumentError` line naming it (or its item),
never pydantic's error. A config argument (`ConfigArg[M]`) is checked for its kind; the body reads it (`yamlio`)."""

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

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from charter.errors import ArgumentError
from charter.yamlio import ConfigModel, annotation_marks, annotation_members, describe_type, dotted, shown

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=ConfigModel)
__all__ = ["AtLeastOne", "ConfigArg", "Kinds", "Range", "public"]
_STRICT = ConfigDict(arbitrary_types_allowed=True, strict=True, allow_inf_nan=False)
_ITEMS = {list, tuple, set, frozenset, Iterable, Collection, Sequence, Iterator}
_BOUNDS = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}  # each a name in `operator`


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric argument (None: unbounded on that side); with `each`, of every item of a sequence."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    each: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        return core_schema.no_info_wrap_validator_function(self._check, handler(source))

    def _check(self, value: Any, validate: Callable[[Any], Any]) -> Any:
        bounds = [(name, bound) for name in _BOUNDS if (bound := getattr(self, name)) is not None]
        said = " and ".join(f"{_BOUNDS[name]} {bound}" for name, bound in bounds)
        items = (enumerate(value) if isinstance(value, Iterable) else ()) if self.each else [(None, value)]
        found = [(i, v) for i, v in items if isinstance(v, numbers.Real) and not isinstance(v, bool)]
        refused = [(i, f"a finite number {said}".rstrip(), v) for i, v in found if not math.isfinite(v)]
        if not refused:  # not finite: said before the type's own check would say it
            validate(value)
            refused = [(i, said, v) for i, v in found if not all(getattr(operator, n)(v, b) for n, b in bounds)]
        for index, must, item in refused[:1]:
            raise PydanticCustomError("charter", "{m}", {"m": f"must be {must} (got {item!r})", "item": index})
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
    params = {n: _Param(func, p) for n, p in signature.parameters.items() if not p.kind.name.startswith("VAR_")}

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # the argument it names: missing, unexpected or given twice
            raise ArgumentError((re.findall(r"'(\w+)'", str(exc)) or ["arguments"])[0], str(exc)) from None
        bound.arguments.update({n: params[n].check(v) for n, v in bound.arguments.items() if n in params})
        return func(*bound.args, **bound.kwargs)

    wrapper.__charter_checked__ = types.SimpleNamespace(params=params)  # type: ignore[attr-defined]
    return typing.cast(F, wrapper)


class _Param:
    """One parameter: its annotation resolved where the function is defined, its marks, pydantic's check of it."""

    def __init__(self, func: Callable[..., Any], param: inspect.Parameter) -> None:
        self.name, annotation = param.name, Any if param.annotation is param.empty else param.annotation
        try:  # not `typing.get_type_hints`: the return annotation may name an import for type checkers only
            self.annotation = eval(annotation, func.__globals__) if isinstance(annotation, str) else annotation  # noqa: S307
        except Exception as exc:
            said = f"the annotation {annotation!r} cannot be resolved at run time ({exc!r})"
            raise TypeError(f"{func.__module__}.{func.__qualname__}({param.name}): {said}") from None
        self.kinds = annotation_marks(self.annotation, Kinds)
        origins = {typing.get_origin(m) or m for m in annotation_members(self.annotation)}
        self.items_only = not ({str, bytes, Any, object} & origins or self.kinds) and bool(origins & _ITEMS)

    @functools.cached_property  # built on the first call: a model's schema takes time
    def adapter(self) -> TypeAdapter:
        for config in (_STRICT, None):  # a model or dataclass refuses a config: it has its own
            with contextlib.suppress(Exception):
                return TypeAdapter(self.annotation, config=config)
        return TypeAdapter(Any)  # a type pydantic cannot check (a protocol): left to the body

    def check(self, value: Any) -> Any:
        """`value`, or an `ArgumentError` naming the argument (or its item) in one line."""
        if isinstance(value, numbers.Real) and not isinstance(value, bool | int | float):  # numpy's int64, float32
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if self.items_only and isinstance(value, str | bytes):  # a string is iterable: not one item a character
            raise ArgumentError(self.name, f"expected {describe_type(self.annotation)} (got {shown(value)})")
        try:
            self.adapter.validate_python(value)
            return value
        except ValidationError as exc:
            errors = exc.errors()
        if mine := [e for e in errors if e["type"] == "charter"]:  # a mark's own words (`Range`, `Kinds`)
            item = (mine[0].get("ctx") or {}).get("item")
            raise ArgumentError(self.name if item is None else f"{self.name}[{item}]", mine[0]["msg"])
        prefix = tuple(os.path.commonprefix([list(e["loc"]) for e in errors]))
        if not prefix and "literal_error" not in {e["type"] for e in errors}:  # the argument itself
            raise ArgumentError(self.name, f"expected {describe_type(self.annotation)} (got {shown(value)})")
        said = ", or ".join(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errors))
        said = said.replace(", or Input should be ", ", or ")  # each way a union could have taken the value, once
        where = f"{'item ' if isinstance(prefix[0], int) else ''}{dotted(prefix)}: " if prefix else ""
        raise ArgumentError(self.name, f"{where}{said} (got {shown(errors[0]['input'])})")
