"""Three finished runs that rate or check each policy sample alone and pair the best with the worst (judge modes
`score`, `rubric` and `checklist`), and their call cache, as the code wrote them before a rating or checklist judge was
shown a sample's tool calls (tests/fixtures/samples_ranked, made by its make_fixture.py). Their samples call no
tools, so the code of today resumes them without a model call, under the same fingerprints, and a store that lost its
items asks every rating and check again under the call-cache key it had."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from charter.cli import main
from tests.support.old_stores import calls, copy_fixture, lose_items

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "samples_ranked"
RUNS = ("score", "rubric", "checklist")
ITEMS = ("samples", "pairs", "judgments", "checklists")


def answers(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def meta(run_dir: Path, key: str) -> str | None:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        found = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return found[0] if found else None


def items(run_dir: Path) -> dict[str, list[str]]:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return {t: sorted(r[0] for r in db.execute(f"SELECT record FROM {t}")) for t in ITEMS}


@pytest.fixture
def fixture(tmp_path: Path) -> Path:
    return copy_fixture(FIXTURE, tmp_path, RUNS)


@pytest.mark.parametrize("name", RUNS)
def test_a_ranked_samples_run_without_tool_calls_resumes_with_no_call(fixture: Path, name: str) -> None:
    run_dir = fixture / name
    before, (answered, _) = answers(fixture / "calls.sqlite"), calls(run_dir)
    assert main(["run", str(fixture / f"{name}.yaml")]) == 0
    # the samples are ranked again on resume, as they always were: every rating or check from the call cache
    assert calls(run_dir)[0] == answered and answers(fixture / "calls.sqlite") == before
    assert meta(run_dir, "fingerprints") == meta(FIXTURE / name, "fingerprints")
    assert items(run_dir) == items(FIXTURE / name)


@pytest.mark.parametrize("name", RUNS)
def test_its_lost_ratings_and_checks_are_answered_by_the_old_call_cache(fixture: Path, name: str) -> None:
    run_dir = fixture / name
    assert lose_items(run_dir, ITEMS)
    (answered, cached), before = calls(run_dir), answers(fixture / "calls.sqlite")
    assert main(["run", str(fixture / f"{name}.yaml")]) == 0
    now_answered, now_cached = calls(run_dir)
    assert now_answered == answered and now_cached > cached  # every call asked again, each answered by the cache
    assert answers(fixture / "calls.sqlite") == before
    assert items(run_dir) == items(FIXTURE / name)
