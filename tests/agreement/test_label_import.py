"""Label imports are tied to what was shown: order and texts checked, duplicates refused, bad files one line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charter.agreement.exchange import ImportResult, export_labels, import_labels
from charter.agreement.labels import open_labels, put_label
from charter.agreement.sampling import spotcheck
from charter.cli import main
from charter.errors import CharterError
from charter.runs.labels import labels as label_rows
from charter.runs.labels import sample as sample_rows

from .conftest import make_run

PAIR_IDS = [f"r{i:03d}" for i in range(8)]


def sampled_run(root: Path) -> Path:
    run = make_run(root / "run", [{"pair_id": pid, "p_a": 0.55 + 0.05 * i} for i, pid in enumerate(PAIR_IDS)])
    spotcheck(run, 6, seed=1)
    return run


def state(run: Path) -> tuple:
    with open_labels(run) as store:
        return sorted(map(tuple, store.execute("SELECT * FROM human_labels"))), store.count("label_events")


def labeled_csv(run: Path, out: Path, label: str = "A", annotator: str = "alice") -> list[dict]:
    """The exported sample with every row labeled; returns the rows."""
    export_labels(run, "csv", out)
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["annotator"], row["label"] = annotator, label
    write_csv(out, rows)
    return rows


def write_csv(out: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    columns = columns or list(rows[0])
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def cli_import(run: Path, path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["label", "import", str(run), str(path), "--format", fmt])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return sampled_run(tmp_path)


def test_an_edited_shown_order_is_refused_and_nothing_is_stored(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = labeled_csv(run, tmp_path / "s.csv")
    rows[2]["shown_order"] = {"ab": "ba", "ba": "ab"}[rows[2]["shown_order"]]
    write_csv(tmp_path / "s.csv", rows)
    before = state(run)
    code, out, err = cli_import(run, tmp_path / "s.csv", "csv", capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "s.csv: line 4: pair" in err and "exported with shown_order" in err and "nothing imported" in err
    assert state(run) == before  # rows 2 and 3 were fine, and still nothing is stored


def test_an_old_file_without_hashes_is_checked_against_the_sample(run: Path, tmp_path: Path) -> None:
    rows = labeled_csv(run, tmp_path / "s.csv")
    old_columns = ["pair_id", "principle_id", "shown_order", "prompt", "response_A", "response_B", "annotator", "label"]
    write_csv(tmp_path / "old.csv", rows, old_columns)
    assert import_labels(run, tmp_path / "old.csv", "csv") == ImportResult(new=6, replaced=0, unchanged=0)
    with open_labels(run) as store:
        orders = {s.pair_id: s.shown_order for s in sample_rows(store)}
        stored = {r.pair_id: r.label for r in label_rows(store)}
    assert stored == {pid: "a" if order == "ab" else "b" for pid, order in orders.items()}  # A = shown first
    edited = [{**r, "shown_order": "ba" if r["shown_order"] == "ab" else "ab"} for r in rows]
    write_csv(tmp_path / "edited.csv", edited, [c for c in old_columns if not c.startswith("response_")])
    with pytest.raises(CharterError, match=r"edited.csv: line 2: pair '\w+' was exported with shown_order"):
        import_labels(run, tmp_path / "edited.csv", "csv")


def test_an_edited_hash_or_swapped_texts_are_refused(run: Path, tmp_path: Path) -> None:
    rows = labeled_csv(run, tmp_path / "s.csv")
    before = state(run)
    hashed = [dict(r) for r in rows]
    hashed[1]["shown_hash"] = "0123456789abcdef"
    write_csv(tmp_path / "hash.csv", hashed)
    with pytest.raises(CharterError, match=r"hash.csv: line 3: .*shown_hash '0123456789abcdef' is not that of"):
        import_labels(run, tmp_path / "hash.csv", "csv")
    swapped = [dict(r) for r in rows]
    swapped[0]["response_A"], swapped[0]["response_B"] = rows[0]["response_B"], rows[0]["response_A"]
    write_csv(tmp_path / "swap.csv", swapped)
    with pytest.raises(CharterError, match=r"swap.csv: line 2: .*are in the other order than the sample shows"):
        import_labels(run, tmp_path / "swap.csv", "csv")
    assert state(run) == before
    respaced = [{**r, "response_A": r["response_A"].replace(" ", "\r\n ")} for r in rows]  # a spreadsheet's line ends
    write_csv(tmp_path / "respaced.csv", respaced)
    assert import_labels(run, tmp_path / "respaced.csv", "csv").stored == 6


@pytest.mark.parametrize("fmt", ["argilla", "labelstudio"])
def test_json_exports_carry_the_hash_and_an_edited_order_is_refused(run: Path, tmp_path: Path, fmt: str) -> None:
    with open_labels(run) as store:
        first = sample_rows(store)[0]
        put_label(store, first.pair_id, "alice", "a", first.shown_order)
    export_labels(run, fmt, tmp_path / "x.json")
    items = json.loads((tmp_path / "x.json").read_text())
    where = items[0]["metadata"] if fmt == "argilla" else items[0]["data"]
    assert len(where["shown_hash"]) == 16
    where["shown_order"] = "ba" if where["shown_order"] == "ab" else "ab"
    (tmp_path / "x.json").write_text(json.dumps(items))
    with pytest.raises(CharterError, match=r"x.json: item 1: pair .* exported with shown_order"):
        import_labels(run, tmp_path / "x.json", fmt)


def test_one_pair_labeled_twice_by_one_annotator_is_refused_naming_both_rows(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = labeled_csv(run, tmp_path / "s.csv")
    write_csv(tmp_path / "dup.csv", [*rows, {**rows[0], "label": "B"}])
    code, _, err = cli_import(run, tmp_path / "dup.csv", "csv", capsys)
    assert code == 2 and "dup.csv: line 2 and line 8 both label pair" in err and "by annotator 'alice'" in err
    assert state(run)[0] == []
    write_csv(tmp_path / "two.csv", [*rows, {**rows[0], "annotator": "bob"}])  # another annotator is fine
    assert import_labels(run, tmp_path / "two.csv", "csv") == ImportResult(new=7, replaced=0, unchanged=0)


def test_the_count_printed_is_what_was_stored(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labeled_csv(run, tmp_path / "s.csv")
    code, out, _ = cli_import(run, tmp_path / "s.csv", "csv", capsys)
    assert code == 0 and out.startswith("imported 6 labels") and "(6 new, 0 replacing" in out
    events = state(run)[1]
    code, out, _ = cli_import(run, tmp_path / "s.csv", "csv", capsys)
    assert code == 0 and out.startswith("imported 0 labels") and "6 already stored" in out
    assert state(run)[1] == events  # nothing written again
    labeled_csv(run, tmp_path / "b.csv", label="B")
    code, out, _ = cli_import(run, tmp_path / "b.csv", "csv", capsys)
    assert out.startswith("imported 6 labels") and "0 new, 6 replacing an earlier label" in out
    assert {r[2] for r in state(run)[0]} <= {"a", "b"} and state(run)[1] == events + 6


def test_a_byte_order_mark_is_stripped(run: Path, tmp_path: Path) -> None:
    labeled_csv(run, tmp_path / "s.csv")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "s.csv").read_bytes())  # Excel's "CSV UTF-8"
    assert import_labels(run, bom, "csv").stored == 6


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("csv", "", "no rows to import"),
        ("csv", "pair_id,shown_order,annotator,label\n", "no rows to import"),
        ("csv", "pair_id,shown_order,annotator,label\nr000,ab,,\n", "none of its 1 rows holds a label"),
        ("argilla", "", "empty file"),
        ("argilla", "[]", "no items to import"),
        ("labelstudio", "\ufeff[]", "no items to import"),
    ],
)
def test_an_empty_file_is_an_error_naming_it(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, text: str, message: str
) -> None:
    (tmp_path / "empty.x").write_text(text, encoding="utf-8")
    code, out, err = cli_import(run, tmp_path / "empty.x", fmt, capsys)
    assert code == 2 and out == "" and f"empty.x: {message}" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["csv", "argilla", "labelstudio"])
def test_a_missing_file_or_a_folder_is_one_line(run: Path, tmp_path: Path, fmt: str) -> None:
    with pytest.raises(CharterError, match=r"nope.x: file not found"):
        import_labels(run, tmp_path / "nope.x", fmt)
    with pytest.raises(CharterError, match=r": is a directory"):
        import_labels(run, tmp_path, fmt)


@pytest.mark.parametrize(
    "responses",
    [{"preference": ["A"]}, {"preference": {"value": "A"}}, ["A"], [{"user_id": "u", "values": ["A"]}], "A", 3],
)
def test_unexpected_argilla_responses_are_one_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], responses: object
) -> None:
    record = {"fields": {}, "metadata": {"pair_id": PAIR_IDS[0], "shown_order": "ab"}, "responses": responses}
    (tmp_path / "a.json").write_text(json.dumps([record]))
    code, _, err = cli_import(run, tmp_path / "a.json", "argilla", capsys)
    assert code == 2 and "a.json: item 1: " in err and "Traceback" not in err


# -- fuzzing the readers: any shape is a charter error or an import, never another exception ------------------
KEYS = [
    "metadata", "fields", "responses", "preference", "values", "value", "user_id", "pair_id", "shown_order",
    "shown_hash", "annotations", "result", "type", "choices", "completed_by", "email", "data", "response_A",
    "response_B", "id", "status",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=6)
    | st.sampled_from(["ab", "ba", "A", "B", "tie", "skip", "choices", "alice", *PAIR_IDS])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), inner),
    max_leaves=16,
)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """The right shape most of the time, anything some of the time."""
    return st.one_of(strategy, strategy, JSON)


ORDER = st.sampled_from(["ab", "ba"])
SHOWN = maybe(st.fixed_dictionaries({"pair_id": st.sampled_from(PAIR_IDS), "shown_order": ORDER}))
ANSWER = maybe(st.fixed_dictionaries({"user_id": st.sampled_from(["alice", "bob"]), "value": SCALARS}))
V1_ANSWER = maybe(st.fixed_dictionaries({"user_id": st.just("alice"), "values": maybe(st.fixed_dictionaries({
    "preference": maybe(st.fixed_dictionaries({"value": SCALARS}))}))}))  # fmt: skip
ARGILLA = st.fixed_dictionaries(
    {"metadata": SHOWN, "fields": maybe(st.just({}))},
    optional={"responses": maybe(st.fixed_dictionaries({"preference": maybe(st.lists(ANSWER, max_size=2))}))
              | maybe(st.lists(V1_ANSWER, max_size=2))},
)  # fmt: skip
RESULT = maybe(st.fixed_dictionaries({"type": st.just("choices"), "value": maybe(st.fixed_dictionaries(
    {"choices": maybe(st.lists(SCALARS, max_size=2))}))}))  # fmt: skip
ANNOTATION = maybe(st.fixed_dictionaries({"completed_by": JSON, "result": maybe(st.lists(RESULT, max_size=2))}))
LABEL_STUDIO = st.fixed_dictionaries({"data": SHOWN}, optional={"annotations": maybe(st.lists(ANNOTATION, max_size=2))})
SHAPED = {"argilla": ARGILLA, "labelstudio": LABEL_STUDIO}
CSV_TOKENS = [",", '"', "\n", "\r", " ", "\x00", "\ufeff", "A", "B", "ab", "ba", "tie", "alice", *PAIR_IDS]
CSV_TOKENS += ["pair_id", "shown_order", "annotator", "label", "shown_hash", "response_A", "response_B", "x"]
HEADER = "pair_id,shown_order,annotator,label,response_A\n"
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sampled_run(tmp_path_factory.mktemp("fuzz"))


def imports_or_refuses(run: Path, path: Path, fmt: str) -> None:
    try:
        import_labels(run, path, fmt)
    except CharterError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


@pytest.mark.parametrize("fmt", ["argilla", "labelstudio"])
@FUZZ
@given(data=st.data())
def test_json_readers_answer_any_shape_with_a_charter_error(
    fuzz_run: Path, tmp_path_factory: pytest.TempPathFactory, fmt: str, data: st.DataObject
) -> None:
    items = data.draw(st.lists(SHAPED[fmt], max_size=3) | JSON)
    path = tmp_path_factory.mktemp("f") / "labels.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    imports_or_refuses(fuzz_run, path, fmt)


@FUZZ
@given(
    head=st.sampled_from(["", HEADER]),
    body=st.lists(st.sampled_from(CSV_TOKENS), max_size=40).map("".join),
    raw=st.binary(max_size=8),
)
def test_the_csv_reader_answers_any_text_with_a_charter_error(
    fuzz_run: Path, tmp_path_factory: pytest.TempPathFactory, head: str, body: str, raw: bytes
) -> None:
    path = tmp_path_factory.mktemp("f") / "labels.csv"
    path.write_bytes((head + body).encode() + raw)
    imports_or_refuses(fuzz_run, path, "csv")


@FUZZ
@given(rows=st.lists(st.lists(SCALARS.map(str), min_size=4, max_size=5), max_size=4))
def test_the_csv_reader_answers_any_rows_with_a_charter_error(
    fuzz_run: Path, tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]]
) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADER.strip().split(","))
    writer.writerows(row + [""] * (5 - len(row)) for row in rows)
    path = tmp_path_factory.mktemp("f") / "labels.csv"
    path.write_text(text.getvalue(), encoding="utf-8")
    imports_or_refuses(fuzz_run, path, "csv")


def test_two_answers_by_one_annotator_in_one_item_are_refused(run: Path, tmp_path: Path) -> None:
    with open_labels(run) as store:
        first = sample_rows(store)[0]
    answers = [{"value": "A", "user_id": "u1"}, {"value": "B", "user_id": "u1"}]
    record = {"fields": {}, "metadata": {"pair_id": first.pair_id, "shown_order": first.shown_order}}
    (tmp_path / "a.json").write_text(json.dumps([{**record, "responses": {"preference": answers}}]))
    with pytest.raises(CharterError, match=r"a.json: item 1 and item 1 \(answer 2\) both label pair"):
        import_labels(run, tmp_path / "a.json", "argilla")
