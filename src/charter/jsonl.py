"""JSON Lines reading shared by every stage: a bad line is a one-line error naming file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from charter.errors import CharterError, DatasetError


def iter_jsonl(path: str | Path, error: type[CharterError] = DatasetError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; raises `error` on invalid JSON or a non-object."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{number}:1: expected a JSON object per line")
            yield number, row


def read_jsonl(path: str | Path, error: type[CharterError] = DatasetError) -> list[dict]:
    """All objects of a JSON Lines file."""
    return [row for _, row in iter_jsonl(path, error)]
