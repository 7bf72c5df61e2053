"""Secret scanning of every folder charter writes for upload (the patterns live in charter.redaction).

A match is reported with its location (file, row or line, column) and a redacted form: the secret itself
never reaches a message, a log or the upload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from charter.errors import SecretFound
from charter.redaction import find_in_text, literal_secrets, preview


@dataclass(frozen=True)
class Finding:
    """Where a secret was found; `preview` is redacted."""

    kind: str
    file: str
    where: str
    preview: str

    def __str__(self) -> str:
        return f"{self.file} {self.where}: {self.kind} ({self.preview})"


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
                yield Finding(kind, label, f"row {row}, column {column!r}", preview(secret))


def scan_text(path: Path, label: str, literals: dict[str, str]) -> Iterator[Finding]:
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        for kind, secret in find_in_text(line, literals):
            yield Finding(kind, label, f"line {number}", preview(secret))


def scan_folder(folder: str | Path, extra_literals: Iterable[str | None] = ()) -> list[Finding]:
    """Every secret in every file of `folder` (parquet cell by cell, other files line by line)."""
    folder = Path(folder)
    literals = literal_secrets(extra_literals, "the Hugging Face token in use")
    findings: list[Finding] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        label = path.relative_to(folder).as_posix()
        scan = scan_parquet if path.suffix == ".parquet" else scan_text
        findings.extend(scan(path, label, literals))
    return findings


def refuse_secrets(
    folder: str | Path,
    extra_literals: Iterable[str | None] = (),
    refusing: str = "refusing to publish",
    fix: str = "remove it from the run and export again",
) -> None:
    """Raise `SecretFound` naming the first match (and how many more) if the folder holds a secret: the one check
    that every folder charter writes for upload passes (`charter push`, `charter mix build`). The message says
    `refusing`, where the secret is, and `fix`; never the secret."""
    findings = scan_folder(folder, extra_literals)
    if findings:
        others = sorted({f.file for f in findings[1:]} - {findings[0].file})
        more = (
            f" (and {len(findings) - 1} more{', also in ' + ', '.join(others) if others else ''})"
            if len(findings) > 1
            else ""
        )
        raise SecretFound(f"{refusing}: a secret was found in {findings[0]}{more}; {fix}")
