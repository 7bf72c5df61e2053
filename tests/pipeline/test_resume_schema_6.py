"""Two finished runs and their call cache as charter 0.2.0 wrote them (run store schema 6; tests/fixtures/schema_6,
made by its make_fixture.py): the code of today resumes them without a single new model call and writes the same
rows. This holds the store's tables, the records in them, the settings' fingerprints and the call-cache keys (the
prompts sent, the judge's wire format) to what that release wrote: a change to any of them fails here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from charter.cli import main
from charter.records import Fingerprints
from charter.runs.counts import stage_states
from charter.runs.history import older_items
from charter.runs.store import RunStore
from tests.support.old_stores import calls, copy_fixture, lose_items

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "schema_6"
#: logprobs: the judge answers by option probabilities; cot: it reasons and writes its verdict.
RUNS = ("logprobs", "cot")
DATA = ("preferences.jsonl", "sft.jsonl")
#: The tables of what the model calls made (the chains, samples, pairs and judgments); the call cache keeps the
#: answers themselves.
ITEMS = ("chains", "samples", "pairs", "judgments")


@pytest.fixture
def fixture(tmp_path: Path) -> Path:
    """A copy of the fixture, its run configs pointed at the copy."""
    return copy_fixture(FIXTURE, tmp_path, RUNS)


def rows(run_dir: Path) -> dict[str, list[str]]:
    return {name: (run_dir / "data" / name).read_text(encoding="utf-8").splitlines() for name in DATA}


def stored_fingerprints(run_dir: Path) -> Fingerprints:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'fingerprints'").fetchone()
    return Fingerprints.model_validate_json(value)


@pytest.mark.parametrize("name", RUNS)
def test_a_finished_run_of_schema_6_resumes_with_no_call_and_the_same_rows(fixture: Path, name: str) -> None:
    run_dir = fixture / name
    written = rows(FIXTURE / name)
    assert all(written.values())  # the fixture has rows of both files to compare
    before = calls(run_dir)
    assert main(["run", str(fixture / f"{name}.yaml")]) == 0
    assert calls(run_dir) == before  # nothing asked again, not even of the call cache
    assert stored_fingerprints(run_dir) == stored_fingerprints(FIXTURE / name)
    with RunStore(run_dir) as store:
        assert older_items(store, store.fingerprints()) == {"chains": 0, "samples": 0, "judgments": 0}
        assert {s["status"] for s in stage_states(store).values()} == {"done"}
    assert rows(run_dir) == written


@pytest.mark.parametrize("name", RUNS)
def test_items_lost_from_a_store_of_schema_6_are_answered_by_its_call_cache(fixture: Path, name: str) -> None:
    """Every item gone from the store (as a kill can lose the last ones): each of its calls is answered by the call
    cache the old release wrote, under the same key, and the rows come out the same."""
    run_dir = fixture / name
    lost = lose_items(run_dir, ITEMS)
    assert lost
    answered, cached = calls(run_dir)
    assert main(["run", str(fixture / f"{name}.yaml")]) == 0
    now_answered, now_cached = calls(run_dir)
    assert now_answered == answered  # no new model call
    assert now_cached > cached  # the calls were asked again, and the old cache answered them
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        assert sum(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ITEMS) == lost
    assert rows(run_dir) == rows(FIXTURE / name)
