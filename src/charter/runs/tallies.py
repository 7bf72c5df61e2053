"""What a run's store counts: the items of the settings in effect (current while a stage runs), a stage's progress,
and the usage summed over the calls."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from charter.records import Fingerprints, UsageRow
from charter.runs.failures import FAILURE_COLUMNS, StoredFailure, stored_failure
from charter.runs.store import RunStore

#: The summed fields of a usage row, in the order the totals list them.
USAGE_FIELDS = (
    "calls",
    "cached",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "estimated",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_saved_usd",
)

#: stage -> (SQL counting the finished items, SQL counting all items so far), given the fingerprints in effect
_PROGRESS = {
    "critique": (
        "SELECT COUNT(*) FROM (SELECT prompt_id FROM chains WHERE fingerprint IN (:critique, :samples)"
        " UNION SELECT prompt_id FROM samples WHERE fingerprint IN (:critique, :samples))",
        "SELECT COUNT(*) FROM prompts",
    ),
    "judge": (
        "SELECT COUNT(*) FROM judgments WHERE fingerprint = :judge AND status = 'ok'",
        "SELECT COUNT(*) FROM pairs WHERE source_fingerprint IN (:critique, :samples)",
    ),
}


def newest_items(store: RunStore) -> dict[str, int | None]:
    """The newest row of each item table (its rowid: a replaced row gets a new one); None for an empty table."""
    return {
        table: store.execute(f"SELECT MAX(rowid) FROM {table}")[0][0]
        for table in ("chains", "samples", "pairs", "judgments")
    }


def active_prompt_ids(store: RunStore) -> Iterator[str]:
    """The ids of the prompt set in use, in id order, streamed (never all in memory)."""
    # sorted by SQLite (a table scan and its sorter: the key index would look up each row)
    for (prompt_id,) in store.stream("SELECT prompt_id FROM prompts NOT INDEXED WHERE active = 1 ORDER BY prompt_id"):
        yield prompt_id


def usage_totals(rows: Iterable[UsageRow]) -> dict[str, float]:
    """Each usage field summed over the rows (of `stored_usage`, one per role and model)."""
    rows = list(rows)
    return {f: sum(getattr(r, f) or 0 for r in rows) for f in USAGE_FIELDS}


def stage_items(store: RunStore, stage: str, fingerprints: Fingerprints) -> tuple[int, int] | None:
    """(finished, all so far) items of a stage that does not record them itself, counted in the tables; None for a
    stage that is not counted this way. Finished items are those that succeeded: a failed one is not done (the
    failures are counted apart, by stage, in `failure_tallies`)."""
    if stage not in _PROGRESS:
        return None
    named = fingerprints.model_dump()
    done, total = (store.execute(sql, named)[0][0] for sql in _PROGRESS[stage])
    return done, total


def unrevised_chains(store: RunStore, critique: str | None) -> int:
    """Chains of these critique settings whose final revision repeats the first answer: they make no revision
    pair (`charter.preference.pairs.revision_pair`)."""
    if critique is None:
        return 0
    blank = "' \t\n\r'"
    return store.execute(
        f"SELECT COUNT(*) FROM chains WHERE fingerprint = ? AND trim(json_extract(record, '$.initial'), {blank})"
        f" = trim(json_extract(record, '$.final'), {blank})",
        (critique,),
    )[0][0]


def live_counts(store: RunStore) -> dict[str, int]:
    """Counts of the items of the settings in effect, read from the tables: current while a stage runs."""
    fp = store.fingerprints()
    if fp is None:
        return {"failures": store.count("failures")}
    sources = fp.sources()
    marks = ",".join("?" * len(sources)) or "NULL"
    # judgments of these judge settings, less those of pairs from other settings (few: read through the index)
    judged = dict(
        store.execute("SELECT status, COUNT(*) FROM judgments WHERE fingerprint = ? GROUP BY status", (fp.judge,))
    )
    for status, n in store.execute(
        "SELECT j.status, COUNT(*) FROM pairs p INDEXED BY pairs_by_source CROSS JOIN judgments j"
        " ON j.pair_id = p.pair_id AND j.fingerprint = ?"
        f" WHERE p.source_fingerprint NOT IN ({marks}) OR p.source_fingerprint IS NULL GROUP BY j.status",
        (fp.judge, *sources),
    ):
        judged[status] -= n
    samples = store.execute("SELECT COUNT(DISTINCT prompt_id) FROM samples WHERE fingerprint IS ?", (fp.samples,))
    chains = store.count("chains", "fingerprint IS ?", (fp.critique,)) if fp.critique else 0
    pairs = store.count("pairs", f"source_fingerprint IN ({marks})", sources)
    return {
        "chains": chains,
        # read from every chain's texts only where some chain made no pair
        "chains_unrevised": unrevised_chains(store, fp.critique) if pairs < chains else 0,
        "samples": samples[0][0] if fp.samples else 0,
        "pairs": pairs,
        "judged": judged.get("ok", 0),
        "judge_failures": judged.get("failed", 0),
        "failures": store.count(
            "failures", "fingerprint IS NULL OR fingerprint IN (?, ?, ?)", (fp.critique, fp.samples, fp.judge)
        ),
    }


#: Each item still failing (an unresolved failure of its stage, item and settings): its first and latest failure
#: and in how many run sessions it failed (a failure of no session counts as one).
_FAILING = (
    "SELECT stage, item_id, fingerprint, MIN(id) AS first_id, MAX(id) AS last_id,"
    " COUNT(DISTINCT IFNULL(session, 'none')) AS runs FROM failures WHERE resolved = 0"
    " GROUP BY stage, item_id, fingerprint"
)


@dataclass(frozen=True)
class FailureTallies:
    """A run's failures counted by item, in SQL (a run with a hundred thousand failures is never read whole)."""

    by_stage: dict[str, int]
    """Items still failing, by stage (in stage order)."""
    quarantined: int
    """Items still failing that failed in `quarantine_after` run sessions or more."""
    resolved: int
    """Items that failed before and then succeeded."""
    by_kind: dict[str, dict[str, int]]
    """Items still failing, by stage and by the kind of their latest failure (`unparseable`, `provider`, ...)."""
    first: list[tuple[StoredFailure, int]]
    """The first items to fail that still fail: each one's latest failure and its run sessions."""


def failure_tallies(store: RunStore, quarantine_after: int, first: int) -> FailureTallies:
    """The run's failures by item: still failing (by stage), quarantined, resolved, and the first `first`."""
    shown = store.execute(
        f"SELECT {', '.join(f'f.{c}' for c in FAILURE_COLUMNS.split(', '))}, g.runs FROM"
        f" ({_FAILING} ORDER BY first_id LIMIT ?) g JOIN failures f ON f.id = g.last_id ORDER BY g.first_id",
        (first,),
    )
    resolved = store.execute(
        "SELECT COUNT(*) FROM (SELECT stage, item_id, fingerprint FROM failures WHERE resolved = 1"
        " EXCEPT SELECT stage, item_id, fingerprint FROM failures WHERE resolved = 0)"
    )
    kinds: dict[str, dict[str, int]] = {}
    for stage, kind, n in store.execute(
        f"SELECT g.stage, f.kind, COUNT(*) FROM ({_FAILING}) g JOIN failures f ON f.id = g.last_id"
        " GROUP BY g.stage, f.kind ORDER BY g.stage, COUNT(*) DESC, f.kind"
    ):
        kinds.setdefault(stage, {})[kind or "unknown"] = n
    return FailureTallies(
        by_stage=dict(store.execute(f"SELECT stage, COUNT(*) FROM ({_FAILING}) GROUP BY stage ORDER BY stage")),
        quarantined=store.execute(f"SELECT COUNT(*) FROM ({_FAILING}) WHERE runs >= ?", (quarantine_after,))[0][0],
        resolved=resolved[0][0],
        by_kind=kinds,
        first=[(stored_failure(row[:-1]), row[-1]) for row in shown],
    )
