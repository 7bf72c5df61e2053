"""Verifiers (STaR-style verify-and-filter): does a response pass a prompt's check?

A prompt names its check in a `verifier` column, and may carry a `reference` answer:

- `number`: the last number in the response equals the reference (arithmetic, counting);
- `exact`: the response equals the reference, ignoring case, spaces and final punctuation;
- `contains`: the reference appears in the response (ignoring case);
- `regex:PATTERN`: PATTERN (Python syntax) is found in the response;
- a name given to `register_verifier(name, fn)`, or `module:function`, imported: `fn(response, reference,
  prompt) -> bool`.

A prompt with a reference and no verifier uses the run's default (`filters.verifier`, `number`).
"""

from __future__ import annotations

import pkgutil
import re
from collections.abc import Callable
from functools import lru_cache
from typing import cast

from charter.errors import ConfigError

Verifier = Callable[[str, "str | None", str], bool]
_REGISTRY: dict[str, Verifier] = {}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def register_verifier(name: str, fn: Verifier) -> None:
    """Make `fn(response, reference, prompt) -> bool` the verifier called `name`."""
    if ":" in name:
        raise ConfigError(f"verifier name {name!r}: a registered name has no ':'")
    _REGISTRY[name] = fn


def _numbers(text: str) -> list[float]:
    out = []
    for match in _NUMBER.findall(text):
        try:
            out.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return out


def _need(reference: str | None, name: str) -> str:
    if reference is None:
        raise ConfigError(f"verifier '{name}' needs a reference answer (a 'reference' column)")
    return reference


def _number(response: str, reference: str | None, prompt: str) -> bool:
    expected = _numbers(_need(reference, "number"))
    found = _numbers(response)
    return bool(expected and found) and abs(found[-1] - expected[-1]) < 1e-9


def _plain(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!?")


def _exact(response: str, reference: str | None, prompt: str) -> bool:
    return _plain(response) == _plain(_need(reference, "exact"))


def _contains(response: str, reference: str | None, prompt: str) -> bool:
    return _plain(_need(reference, "contains")) in _plain(response)


register_verifier("number", _number)
register_verifier("exact", _exact)
register_verifier("contains", _contains)


@lru_cache(maxsize=256)
def resolve(name: str) -> Verifier:
    """The verifier a prompt names; a one-line ConfigError for one that does not exist."""
    if name.startswith("regex:"):
        try:
            pattern = re.compile(name[len("regex:") :], re.S)
        except re.error as exc:
            raise ConfigError(f"verifier {name!r}: bad regular expression: {exc}") from None
        return lambda response, reference, prompt: pattern.search(response) is not None
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:  # a user's own function: pkgutil resolves `module:function` as entry points do
        try:
            fn = pkgutil.resolve_name(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"verifier {name!r}: cannot import it ({exc})") from None
        if not callable(fn):
            raise ConfigError(f"verifier {name!r}: not a function")
        return cast(Verifier, fn)
    known = ", ".join(sorted(_REGISTRY))
    raise ConfigError(f"verifier {name!r}: unknown (known: {known}, regex:PATTERN, or module:function)")


def verifier_name(verifier: str | None, reference: str | None, default: str) -> str | None:
    """The verifier that applies to a prompt, or None when it has neither a verifier nor a reference."""
    if verifier:
        return verifier
    return default if reference is not None else None


def check(response: str, verifier: str, reference: str | None, prompt: str) -> bool:
    """Whether `response` passes `verifier`; a verifier that raises is a failed check, never a pass."""
    fn = resolve(verifier)
    try:
        return bool(fn(response, reference, prompt))
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a user verifier that crashes on a response fails that response
        return False
