"""Secret scanning before anything leaves the machine, and secret stripping for the published run config.

A match is reported with its location (file, row or line, column) and a redacted form: the secret itself
never reaches a message, a log or the upload.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow.parquet as pq

from charter.errors import SecretFound

#: (kind, pattern, needles); the more specific patterns come first so a match is named by its most precise kind.
#: A pattern only runs on text holding one of its literal needles: `in` is far faster than a regex that
#: starts with `\b` (no literal prefix to skip ahead on), and most text holds none.
PATTERNS: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...] = (
    ("Anthropic API key", re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}"), ("sk-ant-",)),
    ("OpenAI API key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z_\-]*\d)[A-Za-z0-9_\-]{20,}"), ("sk-",)),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), ("hf_",)),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), ("AKIA", "ASIA")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
     ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    ("bearer token", re.compile(r"\b[Bb]earer\s+(?=[A-Za-z\-._~+/]*\d)[A-Za-z0-9\-._~+/]{20,}=*"), ("earer",)),
)

#: Environment variables whose literal values must never be published.
SECRET_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

#: Config keys whose values are dropped from the published run config.
SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:api[_\-]?key|access[_\-]?key|token|secret|password|passwd|authorization|credentials?|cookie)$",
    re.I,
)
STRIPPED = "[stripped]"


@dataclass(frozen=True)
class Finding:
    """Where a secret was found; `preview` is redacted."""

    kind: str
    file: str
    where: str
    preview: str

    def __str__(self) -> str:
        return f"{self.file} {self.where}: {self.kind} ({self.preview})"


def redact(secret: str) -> str:
    """A form that says what was found without saying the secret: a short prefix and the length."""
    keep = min(4, max(len(secret) // 8, 1))
    return f"{secret[:keep]}…[{len(secret)} chars redacted]"


def literal_secrets(extra: Iterable[str | None] = ()) -> dict[str, str]:
    """value -> name for the secret environment variables that are set (and any extra values, e.g. the token)."""
    values = {os.environ[name]: f"value of ${name}" for name in SECRET_VARIABLES if os.environ.get(name)}
    for value in extra:
        if value:
            values.setdefault(value, "the Hugging Face token in use")
    return {v: name for v, name in values.items() if len(v) >= 8}


def find_in_text(text: str, literals: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(kind, matched text) for every secret in `text`; one finding per place, named by its most precise kind."""
    taken: list[tuple[int, int]] = []
    matches = [(name, re.finditer(re.escape(value), text)) for value, name in literals.items()]
    matches += [(kind, pattern.finditer(text)) for kind, pattern, needles in PATTERNS
                if any(needle in text for needle in needles)]
    for kind, found in matches:
        for match in found:
            start, end = match.span()
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            yield kind, match.group(0)


def _cell_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def scan_parquet(path: Path, label: str, literals: dict[str, str]) -> Iterator[Finding]:
    table = pq.read_table(path)
    for column in table.column_names:
        texts = [None if value is None else _cell_text(value) for value in table.column(column).to_pylist()]
        # One pass over the whole column first: most columns hold nothing, and a cell's match is always a match
        # in the joined text too (cells are joined by newlines, which no pattern needs).
        if next(find_in_text("\n".join(t for t in texts if t is not None), literals), None) is None:
            continue
        for row, text in enumerate(texts):
            for kind, secret in find_in_text(text or "", literals):
                yield Finding(kind, label, f"row {row}, column {column!r}", redact(secret))


def scan_text(path: Path, label: str, literals: dict[str, str]) -> Iterator[Finding]:
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        for kind, secret in find_in_text(line, literals):
            yield Finding(kind, label, f"line {number}", redact(secret))


def scan_folder(folder: str | Path, extra_literals: Iterable[str | None] = ()) -> list[Finding]:
    """Every secret in every file of `folder` (parquet cell by cell, other files line by line)."""
    folder = Path(folder)
    literals = literal_secrets(extra_literals)
    findings: list[Finding] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        label = path.relative_to(folder).as_posix()
        scan = scan_parquet if path.suffix == ".parquet" else scan_text
        findings.extend(scan(path, label, literals))
    return findings


def refuse_secrets(folder: str | Path, extra_literals: Iterable[str | None] = ()) -> None:
    """Raise `SecretFound` naming the first match (and how many more) if the folder holds a secret."""
    findings = scan_folder(folder, extra_literals)
    if findings:
        others = sorted({f.file for f in findings[1:]} - {findings[0].file})
        more = f" (and {len(findings) - 1} more{', also in ' + ', '.join(others) if others else ''})" if len(findings) > 1 else ""
        raise SecretFound(
            f"refusing to publish: a secret was found in {findings[0]}{more}; remove it from the run and export again"
        )


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
