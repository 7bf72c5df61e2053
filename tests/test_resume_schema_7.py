"""Three finished runs, a reward store and their call cache as charter 0.2.0 wrote them (run store schema 7;
tests/fixtures/schema_7, made by its make_fixture.py): the code of today resumes them without a single new model
call and writes the same rows, diversity figures and rewards. The runs judge by comparison (`verdict`, with the run
report), by rating (`score`) and by checklist; the reward store holds `reward_function`'s `score`, `group` and
`checklist` rewards. This holds the store's tables, the records in them, the settings' fingerprints, the reward keys
and the call-cache keys (the prompts sent, the judge's wire format) to what that release wrote: a change to any of
them fails here."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import charter
from charter.cli import main
from charter.records import Fingerprints
from charter.runs.counts import stage_states
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.support.old_stores import calls, copy_fixture, lose_items

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "schema_7"
RUNS = ("pairwise", "rating", "checklist")
DATA = ("preferences.jsonl", "sft.jsonl")
#: The tables of what the model calls made; the call cache keeps the answers themselves.
ITEMS = ("chains", "samples", "pairs", "judgments", "checklists")
#: What each reward function was called with and returned (its judge, settings, prompts, completions, columns).
WRITTEN_REWARDS: dict[str, dict] = json.loads((FIXTURE / "rewards.json").read_text())


@pytest.fixture
def fixture(tmp_path: Path) -> Path:
    """A copy of the fixture, its run configs pointed at the copy."""
    return copy_fixture(FIXTURE, tmp_path, RUNS)


def cached_calls(cache: Path) -> int:
    """The answers in a call cache: a call the cache cannot answer (a changed key) adds one."""
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def rows(run_dir: Path) -> dict[str, list[str]]:
    return {name: (run_dir / "data" / name).read_text(encoding="utf-8").splitlines() for name in DATA}


def meta(run_dir: Path, key: str) -> str | None:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        found = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return found[0] if found else None


def stored_fingerprints(run_dir: Path) -> Fingerprints:
    value = meta(run_dir, "fingerprints")
    assert value is not None
    return Fingerprints.model_validate_json(value)


def diversity_section(run_dir: Path) -> str:
    """The run report's table of diversity figures and what it says about them."""
    text = (run_dir / "report" / "report.md").read_text(encoding="utf-8")
    section = text.split("## Dataset diversity\n", 1)[1].split("\n## ", 1)[0]
    assert "distinct-2" in section and "self-BLEU" in section
    return section


@pytest.mark.parametrize("name", RUNS)
def test_a_finished_run_of_schema_7_resumes_with_no_call_and_the_same_rows(fixture: Path, name: str) -> None:
    run_dir = fixture / name
    written = rows(FIXTURE / name)
    assert all(written.values())  # the fixture has rows of both files to compare
    before = calls(run_dir)
    answers = cached_calls(fixture / "calls.sqlite")
    assert main(["run", str(fixture / f"{name}.yaml")]) == 0
    assert calls(run_dir) == before  # nothing asked again, not even of the call cache
    assert cached_calls(fixture / "calls.sqlite") == answers
    assert stored_fingerprints(run_dir) == stored_fingerprints(FIXTURE / name)
    with RunStore(run_dir) as store:
        assert {s["status"] for s in stage_states(store).values()} == {"done"}
    assert rows(run_dir) == written
    assert meta(run_dir, "diversity") is not None
    assert meta(run_dir, "diversity") == meta(FIXTURE / name, "diversity")  # the figures as stored, unchanged


def test_the_run_report_shows_the_same_diversity_figures(fixture: Path) -> None:
    """The pairwise run writes its report again on resume: the diversity table's figures and the reason for each
    missing one read as the old release wrote them (the paragraph on how they were sampled is written from the metric
    table, so its wording may change)."""
    run_dir = fixture / "pairwise"
    (run_dir / "report" / "report.md").unlink()
    assert main(["run", str(fixture / "pairwise.yaml")]) == 0

    def figures(section: str) -> list[str]:
        return [line for line in section.splitlines() if line.startswith(("|", "- "))]

    assert figures(diversity_section(run_dir)) == figures(diversity_section(FIXTURE / "pairwise"))


def test_the_diversity_figures_measured_again_match_the_stored_ones(fixture: Path) -> None:
    """`charter.diversity` over the run's rows, as the run measured them (no embedding model): the same figures."""
    stored = meta(FIXTURE / "pairwise", "diversity")
    assert stored is not None
    again = charter.diversity(fixture / "pairwise", embedding_model=None)
    figures = json.loads(stored)
    assert again.model_dump(mode="json")["fields"] == figures["fields"]


@pytest.mark.parametrize("name", RUNS)
def test_items_lost_from_a_store_of_schema_7_are_answered_by_its_call_cache(fixture: Path, name: str) -> None:
    """Every item gone from the store (as a kill can lose the last ones): each of its calls is answered by the call
    cache the old release wrote, under the same key, and the rows come out the same."""
    run_dir = fixture / name
    lost = lose_items(run_dir, ITEMS)
    assert lost
    answered, cached = calls(run_dir)
    answers = cached_calls(fixture / "calls.sqlite")
    assert main(["run", str(fixture / f"{name}.yaml")]) == 0
    now_answered, now_cached = calls(run_dir)
    assert now_answered == answered  # no new model call
    assert now_cached > cached  # the calls were asked again, and the old cache answered them
    assert cached_calls(fixture / "calls.sqlite") == answers
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        assert sum(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ITEMS) == lost
    assert rows(run_dir) == rows(FIXTURE / name)


def reward_rows(store: Path) -> list[dict]:
    """The reward store's records, without `cached` (whether the call cache answered the judge)."""
    with RunStore(store) as opened:
        return [r.model_dump(mode="json", exclude={"cached"}) for r in rewards(opened)]


def rewarded(name: str, store: Path, cache: Path) -> list[float | None]:
    """The reward function of scoring `name` as the fixture made it, called as it was."""
    spec = WRITTEN_REWARDS[name]
    fn = charter.reward_function(spec["judge"], "harmless", name, store=store, cache=cache, **spec["settings"])
    try:
        return fn(prompts=spec["prompts"], completions=spec["completions"], **spec["columns"])
    finally:
        fn.close()


@pytest.mark.parametrize("name", WRITTEN_REWARDS)
def test_a_reward_store_of_schema_7_answers_the_same_calls_with_the_same_rewards(
    fixture: Path, name: str, tmp_path: Path
) -> None:
    """The reward function over the old store and cache: every reward is the stored one, under the same key (the
    store logs each answer again, as it logs every call's), and the call cache gains no answer. The stored records
    are read from a copy of their own: opening a store migrates it, and the fixture stays as it was made."""
    kept = reward_rows(Path(shutil.copytree(FIXTURE / "rewards", tmp_path / "kept-rewards")))
    answers = cached_calls(fixture / "calls.sqlite")
    before = calls(fixture / "rewards")
    assert rewarded(name, fixture / "rewards", fixture / "calls.sqlite") == WRITTEN_REWARDS[name]["returned"]
    assert cached_calls(fixture / "calls.sqlite") == answers
    assert calls(fixture / "rewards")[0] == before[0]  # no model call
    now = reward_rows(fixture / "rewards")
    assert now[: len(kept)] == kept
    assert now[len(kept) :] == [r for r in kept if r["scoring"] == name]


@pytest.mark.parametrize("name", WRITTEN_REWARDS)
def test_rewards_lost_from_their_store_are_answered_by_the_call_cache(fixture: Path, name: str) -> None:
    """A new reward store over the old call cache: every judge call is answered by the cache under the same key
    (no new answer in it), and the rewards and their records (keys, fingerprints, verdicts) come out the same."""
    answers = cached_calls(fixture / "calls.sqlite")
    returned = rewarded(name, fixture / "fresh", fixture / "calls.sqlite")
    answered, cached = calls(fixture / "fresh")
    assert answered == 0 and cached > 0  # every judge call answered by the old cache
    assert returned == WRITTEN_REWARDS[name]["returned"]
    assert any(r is not None for r in returned)
    assert cached_calls(fixture / "calls.sqlite") == answers  # no call the old cache could not answer
    old = [r for r in reward_rows(fixture / "rewards") if r["scoring"] == name]
    assert reward_rows(fixture / "fresh") == old
