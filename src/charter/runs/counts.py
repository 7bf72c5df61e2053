"""What a run counts, as the run store keeps it: each stage's state (the stages table: the one reader and writer of
it), the items of the settings in effect (current while a stage runs), a stage's progress, the usage summed over the
calls, the failure tallies, and the counts' labels: one wording for status, report and dataset card.

    stages(stage, status, started_at, finished_at, counts)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from charter.records import Fingerprints, UsageRow
from charter.runs.failures import FAILURE_COLUMNS, StoredFailure, stored_failure
from charter.runs.store import RunStore

#: count keys in the order status, report and card show them, with their labels
COUNT_LABELS: dict[str, str] = {
    "prompts_total": "prompts read",
    "prompts_empty": "prompts skipped: empty",
    "prompts_duplicate": "prompts skipped: duplicate",
    "prompts_too_long": "prompts over the length limit",
    "prompts_skipped_too_long": "prompts skipped: too long",
    "prompts_truncated": "prompts truncated to the length limit",
    "prompts_used": "prompts used",
    "chains": "critique chains",
    "chains_unrevised": "revisions equal to the first answer (no pair)",
    "samples": "prompts with policy samples",
    "pairs": "response pairs",
    "judged": "pairs judged",
    "judge_failures": "judge failures",
    "failures": "failures (all stages)",
    "preferences_before_filters": "preference rows before filters",
    "preferences": "preference rows written",
    "calibrated": "rows with a calibrated probability",
    "sft": "SFT rows written",
    "sft_failed_verification": "SFT rows whose revision failed verification",
}

#: filters in the order the dataset builder applies them (charter.preference.filters.Waterfall);
#: each row is dropped by at most one, so the rows left after each step add up
FILTER_LABELS: dict[str, str] = {
    "dropped_not_best_vs_worst": "not the best-vs-worst pair of a prompt's samples",
    "dropped_failed_verification": "chosen response failed the prompt's verifier",
    "dropped_ties": "ties",
    "dropped_low_confidence_calibrated": "calibrated confidence below the threshold",
    "dropped_low_confidence": "judge confidence below the threshold",
    "dropped_inconsistent": "the two presentation orders disagreed",
    "dropped_duplicates": "exact duplicates",
    "dropped_principle_cap": "over the per-principle cap",
    "dropped_length_balance": "over the length balance (chosen the longer too often, or too rarely)",
    "dropped_diversity": "not picked to cover the embedding space (diversity selection)",
}


def ordered_counts(counts: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, value) rows: the known counts in pipeline order, then any others by name; filters left out."""
    known = [(label, counts[key]) for key, label in COUNT_LABELS.items() if key in counts]
    extra = sorted(
        (key.replace("_", " "), value)
        for key, value in counts.items()
        if key not in COUNT_LABELS
        and not key.startswith("dropped_")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    )
    return known + extra


class FilterStep(TypedDict):
    """One step of the dataset filters' waterfall."""

    step: str
    """The filter's label ("before filters" for the first row)."""
    dropped: int | None
    """Rows it dropped (None on the first row)."""
    remaining: int
    """Rows left after it."""


def filter_steps(counts: Mapping[str, Any]) -> list[FilterStep]:
    """The dataset filters as a waterfall: rows dropped by each filter and the rows left after it."""
    left = counts.get("preferences_before_filters")
    if left is None:
        return []
    steps = [FilterStep(step="before filters", dropped=None, remaining=left)]
    others = sorted(k for k in counts if k.startswith("dropped_") and k not in FILTER_LABELS)
    for key in [*FILTER_LABELS, *others]:
        if key in counts:
            left -= counts[key]
            label = FILTER_LABELS.get(key) or key.removeprefix("dropped_").replace("_", " ")
            steps.append(FilterStep(step=label, dropped=counts[key], remaining=left))
    return steps


class StageState(TypedDict):
    """A stage as the store records it."""

    status: str
    """running, done, failed or stopped."""
    started_at: float | None
    """Seconds since the epoch."""
    finished_at: float | None
    """Seconds since the epoch; None while it runs (or if its process ended without finishing it)."""
    counts: dict[str, Any]
    """What the stage counted (done, total, its own counts; `reason` when it stopped early)."""


def set_stage(store: RunStore, stage: str, status: str, counts: dict | None = None) -> None:
    now = time.time()
    row = store.execute("SELECT started_at FROM stages WHERE stage = ?", (stage,))
    started = row[0][0] if row and row[0][0] else now
    finished = now if status == "done" else None
    store.write(
        "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?, ?)",
        [(stage, status, started, finished, json.dumps(counts or {}))],
    )


def stage_states(store: RunStore) -> dict[str, StageState]:
    """Each stage recorded in the store, by name: its status, start and end times and its counts."""
    rows = store.execute("SELECT stage, status, started_at, finished_at, counts FROM stages")
    return {
        s: StageState(status=st, started_at=a, finished_at=b, counts=json.loads(c or "{}")) for s, st, a, b, c in rows
    }


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
