"""Row files: JSON Lines and parquet, read and written the same way everywhere.

A bad line is a one-line error naming file, line and column; writes are atomic (a temporary file, then
a rename), so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from charter.errors import CharterError, DatasetError

ROW_SUFFIXES = (".parquet", ".jsonl", ".json")


def read_text_file(path: str | Path, error: type[CharterError] = DatasetError, kind: str = "text file") -> str:
    """A whole file as UTF-8 text; a missing file, a folder, an unreadable file or bytes that are not UTF-8 are a
    one-line `error` naming the path."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {kind}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return decode_utf8(raw, path, error)


def decode_utf8(raw: bytes, path: str | Path, error: type[CharterError] = DatasetError) -> str:
    """A whole file's bytes as text, less a leading byte-order mark; not UTF-8 is a one-line error naming the line
    and the byte offset."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")  # the BOM spreadsheet programs write ("CSV UTF-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte {exc.start} of the file is 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def utf8_line(raw: bytes, path: Path, number: int, offset: int, error: type[CharterError]) -> str:
    """One line of a file as text; not UTF-8 is a one-line error naming the line and the byte offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}:{number}: not UTF-8 text (byte {offset + exc.start} of the file is "
            f"0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None


def iter_jsonl(path: str | Path, error: type[CharterError] = DatasetError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; raises `error` on invalid JSON, a non-object or a line
    that is not UTF-8."""
    path = Path(path)
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = utf8_line(raw, path, number, offset, error)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{number}:1: expected a JSON object per line")
            yield number, row


def iter_csv(path: str | Path, error: type[CharterError] = DatasetError) -> Iterator[tuple[int, dict]]:
    """(line number where the row starts, row by header) for each row of a CSV file with a header, parsed strictly:
    an unbalanced quote, text after a closing quote or a row with another number of fields than the header is one
    `error` naming the file and line (a lenient reader would silently merge the rows after a stray quote)."""
    text = read_text_file(path, error, "CSV file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row:
                continue
            if header is None:
                header = row
                continue
            if len(row) != len(header):
                raise error(
                    f"{path}:{line}: {len(row)} fields where the header has {len(header)} (an unquoted "
                    "comma, or a quote that is not closed where it should be?)"
                )
            yield line, dict(zip(header, row))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise error(f'{path}:{start}: a quoted field that starts here is never closed (an unbalanced ")') from None
        raise error(f'{path}:{start}: not valid CSV: {exc} (a quote inside a quoted field is written "")') from None


def read_jsonl(path: str | Path, error: type[CharterError] = DatasetError) -> list[dict[str, Any]]:
    """All objects of a JSON Lines file."""
    return [row for _, row in iter_jsonl(path, error)]


def read_parquet(
    path: str | Path, columns: Iterable[str] | None = None, error: type[CharterError] = DatasetError
) -> list[dict[str, Any]]:
    """Rows of a parquet file (only `columns` that exist, when given); one-line error for a corrupt file."""
    import pyarrow.parquet as pq

    try:
        if columns is not None:
            present = set(pq.read_schema(path).names)
            return pq.read_table(path, columns=[c for c in columns if c in present]).to_pylist()
        return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise error(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None


def read_rows(path: str | Path, error: type[CharterError] = DatasetError) -> list[dict[str, Any]]:
    """Rows of a .parquet or .jsonl file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    if path.suffix == ".parquet":
        return read_parquet(path, error=error)
    if path.suffix in (".jsonl", ".json"):
        return read_jsonl(path, error)
    raise error(f"{path}: expected a .parquet or .jsonl file")


def parquet_rows(path: str | Path) -> int | None:
    """Row count of a parquet file from its footer, or None if there is no file."""
    if not Path(path).exists():
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def arrow_type(annotation: Any, wide: bool = False) -> Any:
    """The arrow type of a record field's annotation (str, int, float, bool, lists, nested records, optionals). A
    record's `ARROW_LEFT_OUT` fields are left out unless `wide` (a message's tool fields: a file of plain
    conversations keeps its columns); a record with `__arrow_type__` gives its own."""
    import types
    import typing

    import pyarrow as pa
    from pydantic import BaseModel

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return arrow_type(inner[0], wide) if len(inner) == 1 else pa.string()
    if origin is typing.Annotated:
        return arrow_type(args[0], wide)
    if origin is list:
        return pa.list_(arrow_type(args[0], wide))
    if origin is typing.Literal:
        return arrow_type(type(args[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        own = getattr(annotation, "__arrow_type__", None)
        if own is not None:
            return own()
        left_out = () if wide else getattr(annotation, "ARROW_LEFT_OUT", ())
        fields = annotation.model_fields.items()
        return pa.struct([(name, arrow_type(f.annotation, wide)) for name, f in fields if name not in left_out])
    simple = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    return simple.get(annotation, pa.string())


def arrow_schema(model: Any, columns: list[str], as_text: Iterable[str] = (), wide: bool = False) -> Any:
    """An arrow schema for rows of a record type, in `columns` order; `as_text` columns hold JSON strings; `wide`
    keeps the fields a record leaves out of plain files (`arrow_type`)."""
    import pyarrow as pa

    text = set(as_text)
    fields = model.model_fields
    return pa.schema(
        [(name, pa.string() if name in text else arrow_type(fields[name].annotation, wide)) for name in columns]
    )


def rewrite_parquet(stem: Path, schema: Any, convert: Callable[[dict], dict], chunk: int = 2000) -> None:
    """STEM.parquet written again (atomically) from STEM.jsonl under another `schema`, each row through `convert`:
    the rare rows a first schema could not hold (a conversation's tool calls), without holding the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet, jsonl = stem.with_name(stem.name + ".parquet"), stem.with_name(stem.name + ".jsonl")
    tmp = parquet.with_name(f".{parquet.name}.tmp")
    with pq.ParquetWriter(tmp, schema) as writer, jsonl.open("rb") as lines:
        while batch := [convert(orjson.loads(line)) for line in itertools.islice(lines, chunk)]:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    os.replace(tmp, parquet)


def write_rows(stem: Path, rows: Iterable[dict], schema: Any, chunk: int = 2000) -> tuple[Path, Path]:
    """Write rows as STEM.parquet and STEM.jsonl together, `chunk` rows at a time, each file atomically (a
    temporary file renamed into place); returns both paths. Columns keep the `schema`'s types even when every
    value is null, and memory stays flat however many rows there are."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet, jsonl = stem.with_name(stem.name + ".parquet"), stem.with_name(stem.name + ".jsonl")
    parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp_parquet, tmp_jsonl = (path.with_name(f".{path.name}.tmp") for path in (parquet, jsonl))
    with pq.ParquetWriter(tmp_parquet, schema) as writer, tmp_jsonl.open("wb") as lines:
        batch: list[dict] = []
        for row in itertools.chain(rows, [None]):  # None flushes the last batch
            if row is not None:
                batch.append(row)
                lines.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))  # UTF-8; 10x json.dumps here
            if batch and (row is None or len(batch) >= chunk):
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
    os.replace(tmp_parquet, parquet)
    os.replace(tmp_jsonl, jsonl)
    return parquet, jsonl


def keep_rows(source: Path, stem: Path, keep: Iterable[int], chunk: int = 2000) -> tuple[Path, Path]:
    """Copy the rows at positions `keep` (ascending) of SOURCE.parquet and SOURCE.jsonl, both written by
    `write_rows`, into STEM.parquet and STEM.jsonl, each atomically; the rows are not decoded, and memory stays
    flat however many there are. Returns both paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet, jsonl = stem.with_name(stem.name + ".parquet"), stem.with_name(stem.name + ".jsonl")
    tmp_parquet, tmp_jsonl = (path.with_name(f".{path.name}.tmp") for path in (parquet, jsonl))
    wanted = iter(keep)
    following = next(wanted, None)
    source_file = pq.ParquetFile(source.with_name(source.name + ".parquet"))
    with (
        pq.ParquetWriter(tmp_parquet, source_file.schema_arrow) as writer,
        source.with_name(source.name + ".jsonl").open(encoding="utf-8") as lines,
        tmp_jsonl.open("w", encoding="utf-8") as out,
    ):
        start, held, size = 0, [], 0
        for batch in source_file.iter_batches(batch_size=chunk):
            mask = []
            for _ in range(batch.num_rows):
                line = lines.readline()
                hit = following == start + len(mask)
                if hit:
                    out.write(line)
                    following = next(wanted, None)
                mask.append(hit)
            start += batch.num_rows
            if any(mask):
                held.append(batch.filter(pa.array(mask)))
                size += held[-1].num_rows
            if size >= chunk:
                writer.write_table(pa.Table.from_batches(held))
                held, size = [], 0
        if held:
            writer.write_table(pa.Table.from_batches(held))
    os.replace(tmp_parquet, parquet)
    os.replace(tmp_jsonl, jsonl)
    return parquet, jsonl
