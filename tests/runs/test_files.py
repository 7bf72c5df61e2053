"""RunFiles: the one reader and writer of a run's data files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from charter.errors import DatasetError
from charter.runs.files import RunFiles
from tests.support.rundir import RunBuilder


def test_dataset_round_trips_as_records_with_typed_columns(tmp_path: Path) -> None:
    with RunBuilder(tmp_path / "run") as run:
        run.chain("q1", ["harm"])
        run.pair("p1", "q1", "a", "b")
        run.judgment("p1", 0.8)
        run.write_dataset()
    files = RunFiles(tmp_path / "run")
    (row,) = files.preferences()
    assert row.pair_id == "p1" and row.p_chosen == 0.8 and row.p_chosen_calibrated is None
    schema = pq.read_schema(files.dataset_path("preferences"))
    assert str(schema.field("p_chosen_calibrated").type) == "double"  # all null, and still typed
    assert schema.names[:3] == ["prompt", "chosen", "rejected"]
    jsonl = [json.loads(line) for line in files.dataset_path("preferences", ".jsonl").read_text().splitlines()]
    assert jsonl == files.dataset_rows("preferences")
    (sft,) = files.sft()
    assert sft.messages[-1].content == "revised" and sft.run_id == "run-test-0001"


def test_a_row_that_is_not_a_record_is_a_one_line_error(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    files.data_dir.mkdir()
    files.dataset_path("preferences", ".jsonl").write_text(json.dumps({"prompt": "just text"}) + "\n")
    with pytest.raises(DatasetError, match=r"preferences.jsonl: row 0: \w+: Field required"):
        files.preferences()


def test_rows_and_columns_are_read_across_row_groups(tmp_path: Path) -> None:
    """`preferences_at` reads only the row groups holding the wanted rows; `column_batches` gives a column batch
    by batch: both give what reading the whole file gives, for positions on both sides of group boundaries."""
    from charter import tables

    with RunBuilder(tmp_path / "run") as run:
        for i in range(7):
            run.chain(f"q{i}", ["harm"])
            run.pair(f"p{i}", f"q{i}", f"a{i}", f"b{i}")
            run.judgment(f"p{i}", 0.5 + i / 20)
        run.write_dataset()
    files = RunFiles(tmp_path / "run")
    rows = files.dataset_rows("preferences")
    # the same rows again in row groups of 3 (the run writes 2,000 to a group)
    tables.write_rows(files.data_dir / "preferences", rows, pq.read_schema(files.dataset_path("preferences")), chunk=3)
    assert len(rows) >= 6 and pq.ParquetFile(files.dataset_path("preferences")).num_row_groups >= 2
    wanted = [len(rows) - 1, 0, 3, 2, 3]
    assert [r.pair_id for r in files.preferences_at(wanted)] == [rows[i]["pair_id"] for i in sorted(set(wanted))]
    assert files.preferences_at([]) == []
    batches = list(files.column_batches("preferences", "p_chosen"))
    assert [p for b in batches for p in b.to_pylist()] == [r["p_chosen"] for r in rows]
    assert list(files.column_batches("preferences", "no_such_column")) == []
    assert list(RunFiles(tmp_path / "nothing").column_batches("preferences", "p_chosen")) == []


def test_jsonl_lines_are_utf8_json_equal_to_the_parquet_rows(tmp_path: Path) -> None:
    """Rows are written to JSON Lines as UTF-8 (non-ASCII text as it is, not escaped), one compact object a line,
    and read back equal to the parquet rows, nested and JSON-string columns included."""
    from charter import tables

    with RunBuilder(tmp_path / "run") as run:
        run.chain("q1", ["harm"])
        run.pair("p1", "q1", 'Voilà: ünïcode ✓ and a "quote"\nnew line', "日本語の答え")
        run.judgment("p1", 0.8)
        run.write_dataset()
    files = RunFiles(tmp_path / "run")
    rows = files.dataset_rows("preferences")
    parquet, jsonl = tables.write_rows(tmp_path / "again", rows, pq.read_schema(files.dataset_path("preferences")))
    text = jsonl.read_bytes().decode("utf-8")
    assert "✓" in text and "日本語の答え" in text and "\\u" not in text and text.count("\n") == 1
    assert [json.loads(line) for line in text.splitlines()] == rows == pq.read_table(parquet).to_pylist()
    (row,) = files.preferences()
    assert [v.principle_id for v in row.per_principle] == ["harm"]  # the JSON-string column parses back
