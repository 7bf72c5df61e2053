"""Secrets: what they look like, finding them in text, and redacting them. The one place that knows.

Used wherever text may reach a log, an error message, a cache row or a published file: provider errors
are redacted with `redact`, and the pre-publish scan (charter.hub.push) reports `preview`s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

#: (kind, pattern, needles); the more specific patterns come first so a match is named by its most precise kind.
#: A pattern only runs on text holding one of its literal needles: `in` is far faster than a regex that
#: starts with `\b` (no literal prefix to skip ahead on), and most text holds none.
PATTERNS: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...] = (
    ("Anthropic API key", re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}"), ("sk-ant-",)),
    ("OpenAI API key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z_\-]*\d)[A-Za-z0-9_\-]{20,}"), ("sk-",)),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), ("hf_",)),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), ("AKIA", "ASIA")),
    (
        "GitHub token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    ("bearer token", re.compile(r"\b[Bb]earer\s+(?=[A-Za-z\-._~+/]*\d)[A-Za-z0-9\-._~+/]{20,}=*"), ("earer",)),
    (
        "Stripe key",
        re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    ),
    (
        "AWS secret access key",
        re.compile(
            r"(?i)aws.{0,20}?(?:secret|private).{0,20}?['\"]?\s*[:=]\s*['\"]?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        ("aws", "AWS", "Aws"),
    ),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), ("AIza",)),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}"), ("xox", "xapp-")),
    ("Slack webhook", re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}"), ("hooks.slack.com",)),
    ("PEM private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"), ("PRIVATE KEY-----",)),
)

#: Environment variables whose literal values must never be published or logged.
SECRET_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

#: Config keys whose values are dropped from a published run config.
SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:api[_\-]?key|access[_\-]?key|token|secret|password|passwd|authorization|credentials?|cookie)$",
    re.I,
)
#: For redaction only (logs and error messages, where a false positive costs nothing): any `sk-` token.
LOOSE_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
STRIPPED = "[stripped]"
MASK = "[redacted]"


#: Keys read from variables a role named (`api_key_env`) in this process: masked like the standard ones.
_REGISTERED: dict[str, str] = {}


def register_secret(value: str, name: str = "a key in use") -> None:
    """Mask `value` wherever this process redacts or scans text from now on (a key read from a named variable)."""
    if value and len(value) >= 8:
        _REGISTERED.setdefault(value, name)


def literal_secrets(extra: Iterable[str | None] = (), extra_name: str = "a secret in use") -> dict[str, str]:
    """value -> name for the secret environment variables that are set, the keys registered in this process, and
    any extra values (a token in use)."""
    values = {os.environ[name]: f"value of ${name}" for name in SECRET_VARIABLES if os.environ.get(name)}
    for value, name in _REGISTERED.items():
        values.setdefault(value, name)
    for value in extra:
        if value:
            values.setdefault(value, extra_name)
    return {v: name for v, name in values.items() if len(v) >= 8}


def find_in_text(text: str, literals: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(kind, matched text) for every secret in `text`; one finding per place, named by its most precise kind."""
    taken: list[tuple[int, int]] = []
    matches = [(name, re.finditer(re.escape(value), text)) for value, name in literals.items()]
    matches += [
        (kind, pattern.finditer(text))
        for kind, pattern, needles in PATTERNS
        if any(needle in text for needle in needles)
    ]
    for kind, found in matches:
        for match in found:
            group = 1 if match.re.groups else 0  # a pattern with context names the secret in its group
            start, end = match.span(group)
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            yield kind, match.group(group)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every known secret masked: the given values, the secret environment variables' values,
    and anything shaped like a key or token (OpenAI, Anthropic, Hugging Face, AWS, GitHub, bearer)."""
    literals = literal_secrets(secrets)
    found = {secret for _, secret in find_in_text(text, literals)}
    found |= set(LOOSE_KEY.findall(text)) if "sk-" in text else set()
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, preview(secret) if len(secret) >= 16 else MASK)
    return text


def preview(secret: str) -> str:
    """A form that says what was found without saying the secret: a short prefix and the length."""
    keep = min(4, max(len(secret) // 8, 1))
    return f"{secret[:keep]}…[{len(secret)} chars redacted]"


def strip_secrets(value: Any) -> Any:
    """A copy of a config structure with the values of secret-looking keys replaced by `[stripped]`."""
    if isinstance(value, dict):
        return {
            key: (STRIPPED if SECRET_KEY.search(str(key)) and item not in (None, "", [], {}) else strip_secrets(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [strip_secrets(item) for item in value]
    return value
