"""The run store: fingerprinted items, the config history, and refusing a store it cannot read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from charter.errors import RunStoreError
from charter.records import Fingerprints
from charter.runs.history import config_history, diff_settings, older_items, record_config
from charter.runs.items import iter_prompts, judged_pairs, prompt_records, put_prompts, stored_judgments
from charter.runs.store import SCHEMA_VERSION, RunStore
from tests.support.rundir import RunBuilder


def test_a_store_of_another_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    db = sqlite3.connect(tmp_path / "old" / "run.sqlite")
    db.execute("CREATE TABLE chains (prompt_id TEXT PRIMARY KEY, record TEXT)")
    db.close()
    with pytest.raises(RunStoreError, match=r"too old to upgrade from \(run store schema 1\); start it anew"):
        RunStore(tmp_path / "old")


def test_a_store_of_a_newer_release_is_refused_in_one_line(tmp_path: Path) -> None:
    RunStore(tmp_path / "run", create=True).close()
    db = sqlite3.connect(tmp_path / "run" / "run.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RunStoreError) as err:
        RunStore(tmp_path / "run")
    assert (
        f"written by a newer charter (run store schema {SCHEMA_VERSION + 1}; this one reads up to "
        f"{SCHEMA_VERSION}); upgrade charter"
        in str(err.value)
        and "\n" not in str(err.value)
    )


def test_config_history_records_what_changed(tmp_path: Path) -> None:
    one = Fingerprints(critique="c1", judge="j1", dataset="d1")
    two = Fingerprints(critique="c1", judge="j2", dataset="d2")
    with RunStore(tmp_path / "run", create=True) as store:
        assert record_config(store, {"judge": {"principles_per_pair": 2}, "seed": 0}, one) == []
        assert record_config(store, {"judge": {"principles_per_pair": 2}, "seed": 0}, one) == []  # a plain resume
        changes = record_config(store, {"judge": {"principles_per_pair": 3}, "seed": 0}, two)
        assert changes == [{"key": "judge.principles_per_pair", "old": 2, "new": 3}]
        (entry,) = config_history(store)
        assert entry.changes == changes and entry.fingerprints == two and store.fingerprints() == two


def test_diff_settings_sees_added_and_removed_keys() -> None:
    assert diff_settings({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == [{"key": "a.c", "old": None, "new": 2}]
    assert diff_settings({"x": [1]}, {}) == [{"key": "x", "old": [1], "new": None}]


def test_items_of_other_settings_are_kept_apart(tmp_path: Path) -> None:
    with RunBuilder(tmp_path / "run") as run:
        run.chain("q1", ["harm"])
        run.pair("p1", "q1", "a", "b")
        run.judgment("p1", 0.8)
        run.judgment("p1", 0.2, fingerprint="older")
        store = run.store
        assert [j.p_a for j in stored_judgments(store, run.fp.judge)] == [0.8]
        assert older_items(store, run.fp) == {"chains": 0, "samples": 0, "judgments": 1}
        ((pair, judgment),) = judged_pairs(store, run.fp)
        assert pair.pair_id == "p1" and judgment.p_a == 0.8


def test_reading_the_prompts_during_a_run_lets_the_log_be_checkpointed(tmp_path: Path) -> None:
    """A run reads its prompts a page at a time while it writes: no read stays open between pages, so SQLite can
    checkpoint and truncate the write-ahead log (a cursor held open let it grow to 9 GB at a million prompts)."""
    from charter.records import Message, Prompt

    store = RunStore(tmp_path, create=True)
    ids = [f"p{i}" for i in range(1200)]
    put_prompts(store, (Prompt(prompt_id=i, messages=[Message(role="user", content=i)], source="t") for i in ids))
    put_prompts(
        store, (Prompt(prompt_id=i, messages=[Message(role="user", content=i)], source="t") for i in ("p3", "late"))
    )  # a re-added id shares its position number with a new one
    read, prompts = [], iter_prompts(store, size=100)
    for prompt in prompts:
        read.append(prompt.prompt_id)
        if len(read) == 150:
            for n in range(20):
                store.set_meta(written=n)
            assert store.execute("PRAGMA wal_checkpoint(TRUNCATE)")[0][0] == 0  # not busy: nothing pins the log
            assert (tmp_path / "run.sqlite-wal").stat().st_size == 0
    assert read == ids + ["late"]
    store.close()


def test_prompt_records_are_the_stored_json_of_the_prompts_in_use(tmp_path: Path) -> None:
    """`prompt_records` gives what `iter_prompts` decodes, in the same order, undecoded (the shard files copy it)."""
    from charter.records import Message, Prompt

    store = RunStore(tmp_path, create=True)
    prompts = [
        Prompt(
            prompt_id=f"p{i}",
            messages=[Message(role="user", content=f"q {i} ✓")],
            source="t",
            reference="r" if i % 3 == 0 else None,
        )
        for i in range(7)
    ]
    put_prompts(store, prompts)
    records = list(prompt_records(store, size=2))
    assert [pid for pid, _ in records] == [p.prompt_id for p in prompts]
    assert [Prompt.model_validate_json(r) for _, r in records] == prompts == list(iter_prompts(store, size=3))
    assert [pid for pid, _ in prompt_records(store, checked_only=True)] == ["p0", "p3", "p6"]
    store.close()


def test_a_new_store_writes_its_tables_and_schema_version_in_one_transaction(tmp_path: Path, monkeypatch) -> None:
    """So that a reader, or a resume after kill -9, never finds tables without the version (which reads as a store
    made by another version of charter)."""
    import charter.storage as store_module

    statements: list[str] = []
    real = store_module.connect

    def traced(path):
        db = real(path)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(store_module, "connect", traced)
    RunStore(tmp_path / "run", create=True).close()
    begin = next(i for i, s in enumerate(statements) if s.strip().upper().startswith("BEGIN"))
    commit = next(i for i, s in enumerate(statements) if i > begin and s.strip().upper().startswith("COMMIT"))
    inside = "\n".join(statements[begin:commit])
    assert "CREATE TABLE IF NOT EXISTS meta" in inside and "schema_version" in inside
    assert f"PRAGMA user_version = {SCHEMA_VERSION}" in inside
    outside = statements[:begin] + statements[commit:]
    assert not any("CREATE TABLE" in s or "schema_version" in s or "user_version =" in s for s in outside)
    with RunStore(tmp_path / "run") as store:
        assert store.meta("schema_version") == SCHEMA_VERSION


def _open_new_file(path: str, barrier, results) -> None:  # noqa: ANN001 - a process of the race below
    from charter.storage import connect

    barrier.wait()
    try:
        db = connect(path)
        db.execute("CREATE TABLE IF NOT EXISTS t (x)")
        db.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the race's outcome, reported
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_that_make_one_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """SQLite answers the switch to WAL `database is locked` at once, without its busy wait, to a process that
    races another making the same new file (two ranks opening one new call cache); `connect` waits it out."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    outcomes = []
    for i in range(30):
        barrier, results = context.Barrier(3), context.Queue()
        path = str(tmp_path / f"race-{i}.sqlite")
        procs = [context.Process(target=_open_new_file, args=(path, barrier, results)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes += [results.get(timeout=5) for _ in procs]
    assert outcomes == ["ok"] * 90, [o for o in outcomes if o != "ok"]
