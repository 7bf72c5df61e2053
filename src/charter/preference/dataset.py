"""Preference and SFT datasets in TRL's conversational format: rows from pairs and judgments, the human
calibration joined in, filters, and the files written through the run directory's owner (RunFiles).

The dataset is always rebuilt from the run store: from the items of the settings in effect, with the
stored calibration, so nothing another command wrote (calibration) is ever lost by a rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from charter.errors import DatasetError
from charter.messages import last_text
from charter.preference.config import FiltersConfig
from charter.preference.diverse import choose_rows, diverse_selection
from charter.preference.manifest import DatasetManifest, DatasetSettings
from charter.records import (
    CalibrationMap,
    Chain,
    ChosenVote,
    Judgment,
    Message,
    OrderProbs,
    Pair,
    PreferenceRow,
    Prompt,
    Provenance,
    SFTRow,
    as_dicts,
)
from charter.runs.files import RunFiles
from charter.runs.store import RunStore
from charter.verify import check, resolve, verifier_name


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def calibrated_p_a(judgment: Judgment, calibration: CalibrationMap | None) -> float | None:
    """The calibrated P(a) where the calibration was fitted on this judgment's judge settings, else None."""
    if calibration is None or judgment.p_a is None or calibration.judge_fingerprint != judgment.fingerprint:
        return None
    return calibration.apply(judgment.p_a)


class Checks:
    """The verifier of each prompt that has one (charter.verify), for the rows of its responses."""

    def __init__(self, prompts: Iterable[Prompt], default: str) -> None:
        self.by_prompt: dict[str, tuple[str, str | None, str]] = {}
        for p in prompts:
            name = verifier_name(p.verifier, p.reference, default)
            if name is not None:
                resolve(name)  # an unknown verifier is a one-line error before any row is written
                self.by_prompt[p.prompt_id] = (name, p.reference, last_text(p.messages))

    def __call__(self, prompt_id: str | None, response: str) -> bool | None:
        """Whether the response passes its prompt's check; None when the prompt has none."""
        found = self.by_prompt.get(prompt_id or "")
        return None if found is None else check(response, found[0], found[1], found[2])


def preference_row(
    pair: Pair,
    judgment: Judgment,
    provenance: Provenance,
    calibration: CalibrationMap | None = None,
    checks: Checks | None = None,
) -> PreferenceRow:
    """One TRL preference row from a pair and its (ok) judgment: the preferred response is `chosen`."""
    if judgment.status != "ok" or judgment.p_a is None or judgment.p_a_ab is None:
        raise ValueError(f"pair {pair.pair_id}: a failed judgment makes no preference row")
    a_wins = judgment.p_a >= 0.5

    def flip(p: float) -> float:
        return p if a_wins else 1.0 - p

    def flip_or_none(p: float | None) -> float | None:
        return None if p is None else flip(p)

    def side(a: float | None, b: float | None, chosen_side: bool) -> float | None:
        return (a if a_wins else b) if chosen_side else (b if a_wins else a)

    def mean_score(chosen_side: bool) -> float | None:
        scores = [side(v.score_a, v.score_b, chosen_side) for v in judgment.principles]
        present = [s for s in scores if s is not None]
        return sum(present) / len(present) if present and len(present) == len(scores) else None

    chosen, rejected = (pair.a, pair.b) if a_wins else (pair.b, pair.a)
    p_chosen = flip(judgment.p_a)
    cal = calibrated_p_a(judgment, calibration)
    return PreferenceRow(
        **dict(provenance),
        prompt=pair.prompt,
        chosen=[Message(role="assistant", content=chosen)],
        rejected=[Message(role="assistant", content=rejected)],
        p_chosen=p_chosen,
        p_chosen_calibrated=None if cal is None else round(flip(cal), 6),
        margin=2 * p_chosen - 1,
        pair_id=pair.pair_id,
        prompt_id=pair.prompt_id,
        pair_kind=pair.kind,
        chosen_source=pair.a_source if a_wins else pair.b_source,
        rejected_source=pair.b_source if a_wins else pair.a_source,
        principle_ids=judgment.principle_ids,
        per_principle=[
            ChosenVote(
                principle_id=v.principle_id,
                p_chosen=flip(v.p_a),
                p_chosen_ab=flip(v.p_a_ab),
                p_chosen_ba=flip_or_none(v.p_a_ba),
                consistent=v.consistent,
                score_chosen=side(v.score_a, v.score_b, True),
                score_rejected=side(v.score_a, v.score_b, False),
                judge=v.judge,
            )
            for v in judgment.principles
        ],
        per_order=OrderProbs(ab=flip(judgment.p_a_ab), ba=flip_or_none(judgment.p_a_ba)),
        position_consistent=judgment.position_consistent,
        judge_model=judgment.judge_model,
        judge_mode=judgment.mode,
        judge_fingerprint=judgment.fingerprint,
        chosen_verified=checks(pair.prompt_id, chosen) if checks else None,
        rejected_verified=checks(pair.prompt_id, rejected) if checks else None,
        score_chosen=mean_score(True),
        score_rejected=mean_score(False),
    )


def sft_row(chain: Chain, provenance: Provenance, checks: Checks | None = None) -> SFTRow:
    """One SFT row: the prompt and the final revision."""
    return SFTRow(
        **dict(provenance),
        messages=[*chain.prompt, Message(role="assistant", content=chain.final)],
        prompt_id=chain.prompt_id,
        principle_ids=chain.principle_ids,
        rounds=len(chain.rounds),
        verified=checks(chain.prompt_id, chain.final) if checks else None,
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the filters look at in a preference row: a few fields and a digest of its texts. Small, so that
    a dataset of any size is filtered without holding its rows."""

    index: int
    prompt_id: str | None
    pair_kind: str
    chosen_source: str
    rejected_source: str
    p_chosen: float
    p_chosen_calibrated: float | None
    position_consistent: bool | None
    first_principle: str
    digest: bytes
    chosen_verified: bool | None = None
    chosen_longer: bool | None = None
    """The chosen response is the longer one (characters); None when both are as long."""

    @classmethod
    def of(cls, row: PreferenceRow, index: int) -> Candidate:
        text = orjson.dumps([as_dicts(row.prompt), as_dicts(row.chosen), as_dicts(row.rejected)])
        chosen, rejected = len(row.chosen[-1].content), len(row.rejected[-1].content)
        return cls(
            index,
            row.prompt_id,
            row.pair_kind,
            row.chosen_source,
            row.rejected_source,
            row.p_chosen,
            row.p_chosen_calibrated,
            row.position_consistent,
            row.principle_ids[0] if row.principle_ids else "",
            hashlib.sha256(text).digest(),
            row.chosen_verified,
            None if chosen == rejected else chosen > rejected,
        )


def _best_vs_worst(rows: list[Candidate]) -> list[Candidate]:
    """Per prompt, keep only the judged pair of the best sample against the worst one."""
    by_prompt: dict[str | None, list[Candidate]] = defaultdict(list)
    kept = [r for r in rows if r.pair_kind != "samples"]
    for row in rows:
        if row.pair_kind == "samples":
            by_prompt[row.prompt_id].append(row)
    for group in by_prompt.values():
        score: dict[str, list[float]] = defaultdict(list)
        for row in group:
            score[row.chosen_source].append(row.p_chosen)
            score[row.rejected_source].append(1 - row.p_chosen)
        mean = {s: sum(v) / len(v) for s, v in score.items()}
        best, worst = max(mean, key=mean.get), min(mean, key=mean.get)  # type: ignore[arg-type]
        kept += [r for r in group if {r.chosen_source, r.rejected_source} == {best, worst}]
    return kept


FILTER_COUNTS = (
    "dropped_ties",
    "dropped_low_confidence_calibrated",
    "dropped_low_confidence",
    "dropped_inconsistent",
    "dropped_duplicates",
    "dropped_principle_cap",
)
EPS = 1e-9  # 0.6 - 0.5 is 0.0999...: a margin equal to the threshold is not below it


class Waterfall:
    """The filters, in the order they apply to each row after best-vs-worst (the report's waterfall): first those
    that look at the row alone, then dedupe and the per-principle cap, which look at the rows kept before it.

    A row with a calibrated probability is held to the calibration's threshold (a row whose calibrated side
    flips is always dropped); others to `filters.min_confidence` on the judge's probability."""

    def __init__(self, filters: FiltersConfig, calibrated_min_confidence: float | None = None) -> None:
        self.filters = filters
        self.cal_min = filters.min_confidence if calibrated_min_confidence is None else calibrated_min_confidence
        self.per_principle: dict[str, int] = defaultdict(int)

    def alone(self, row: Candidate) -> str | None:
        """The count that drops the row for what it is, or None."""
        f = self.filters
        if f.verify == "drop" and row.chosen_verified is False:
            return "dropped_failed_verification"
        if f.drop_ties and abs(row.p_chosen - 0.5) < EPS:
            return "dropped_ties"
        if row.p_chosen_calibrated is not None and row.p_chosen_calibrated < 0.5 + self.cal_min - EPS:
            return "dropped_low_confidence_calibrated"
        if row.p_chosen_calibrated is None and row.p_chosen - 0.5 < f.min_confidence - EPS:
            return "dropped_low_confidence"
        if f.drop_inconsistent and row.position_consistent is False:
            return "dropped_inconsistent"
        return None

    @property
    def looks_back(self) -> bool:
        """Whether a row's fate depends on the rows kept before it."""
        return self.filters.dedupe or bool(self.filters.max_per_principle)

    def after(self, first_principle: str, duplicate: bool) -> str | None:
        """For a row that passed `alone`: the count that drops it given whether its texts were kept already, or
        None (then it is kept, and counted against its principle's cap)."""
        if self.filters.dedupe and duplicate:
            return "dropped_duplicates"
        cap = self.filters.max_per_principle
        if cap and self.per_principle[first_principle] >= cap:
            return "dropped_principle_cap"
        self.per_principle[first_principle] += 1
        return None


def length_balance_drops(longer: int, shorter: int, band: tuple[float, float]) -> tuple[bool | None, int]:
    """Which side to thin and by how many rows so that longer / (longer + shorter) lies in [low, high]: (True,
    k) drops k rows whose chosen is the longer, (False, k) k whose chosen is the shorter, (None, 0) none."""
    low, high = band
    total = longer + shorter
    if not total:
        return None, 0
    if longer / total > high + EPS:
        keep = math.floor(high * shorter / (1 - high) + EPS) if high < 1 else longer
        return True, max(longer - keep, 0)
    if longer / total < low - EPS:
        keep = math.floor(longer * (1 - low) / low + EPS) if low > 0 else shorter
        return False, max(shorter - keep, 0)
    return None, 0


def _balanced(rows: list[Candidate], band: tuple[float, float]) -> set[int]:
    """The indices `length_balance` drops from the kept rows: the thinned side's least confident first."""
    side, k = length_balance_drops(
        sum(r.chosen_longer is True for r in rows), sum(r.chosen_longer is False for r in rows), band
    )
    if side is None:
        return set()
    pool = sorted((r for r in rows if r.chosen_longer is side), key=lambda r: (r.p_chosen, r.index))
    return {r.index for r in pool[:k]}


def _first_counts(rows_verified: bool, strategy: str, total: int, balanced: bool = False) -> dict[str, int]:
    counts = {name: 0 for name in FILTER_COUNTS}
    counts["preferences_before_filters"] = total
    if balanced:
        counts["dropped_length_balance"] = 0
    if rows_verified:  # a step of the waterfall only where it can act
        counts["dropped_failed_verification"] = 0
    if strategy == "best_vs_worst":
        counts["dropped_not_best_vs_worst"] = 0
    return counts


def select(
    rows: list[Candidate], filters: FiltersConfig, strategy: str = "all", calibrated_min_confidence: float | None = None
) -> tuple[list[int], dict[str, int]]:
    """The indices of the rows the filters keep, in order, and how many each filter dropped (see `Waterfall`)."""
    verified = any(row.chosen_verified is not None for row in rows)
    counts = _first_counts(verified, strategy, len(rows), filters.length_balance is not None)
    if strategy == "best_vs_worst":
        best = {row.index for row in _best_vs_worst(rows)}
        counts["dropped_not_best_vs_worst"] = len(rows) - len(best)
        rows = [row for row in rows if row.index in best]
    waterfall, kept, seen = Waterfall(filters, calibrated_min_confidence), [], set()
    for row in rows:
        reason = waterfall.alone(row) or waterfall.after(row.first_principle, row.digest in seen)
        if reason:
            counts[reason] += 1
            continue
        seen.add(row.digest)
        kept.append(row)
    if filters.length_balance is not None:
        dropped = _balanced(kept, filters.length_balance)
        counts["dropped_length_balance"] = len(dropped)
        kept = [row for row in kept if row.index not in dropped]
    counts["preferences"] = len(kept)
    counts["calibrated"] = sum(row.p_chosen_calibrated is not None for row in kept)
    return [row.index for row in kept], counts


def apply_filters(
    rows: list[PreferenceRow],
    filters: FiltersConfig,
    strategy: str = "all",
    calibrated_min_confidence: float | None = None,
) -> tuple[list[PreferenceRow], dict[str, int]]:
    """Filter preference rows; returns the kept rows and how many each filter dropped (see `select`)."""
    kept, counts = select(
        [Candidate.of(row, i) for i, row in enumerate(rows)], filters, strategy, calibrated_min_confidence
    )
    if filters.diversity is not None:
        return choose_rows([rows[i] for i in kept], filters.diversity, counts), counts
    return [rows[i] for i in kept], counts


_FIELDS = [f.name for f in dataclasses.fields(Candidate)]
_COLUMNS = ", ".join(f'"{f}"' for f in _FIELDS)  # "index" is a keyword in SQL


def _stored(row: tuple) -> Candidate:
    """A candidate read back from SQLite, which keeps booleans as 0 and 1."""
    flags = {
        f: None if row[i] is None else bool(row[i])
        for i, f in enumerate(_FIELDS)
        if f in ("position_consistent", "chosen_verified", "chosen_longer")
    }
    return dataclasses.replace(Candidate(*row), **flags)


class StoredSelection:
    """`select` for a dataset of any size: the candidates go into a scratch SQLite file as the rows are written,
    best-vs-worst and the look-back filters run over it a window at a time, and the kept positions stream out.
    Nothing per row stays in Python, so memory is flat from a thousand rows to millions."""

    def __init__(self, path: Path, waterfall: Waterfall, strategy: str, window: int = 5000) -> None:
        self.waterfall, self.strategy, self.window = waterfall, strategy, window
        self.path = path
        path.unlink(missing_ok=True)  # left by a run that was killed while building
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        # alone: the drop by a filter that looks at the row alone, applied after best-vs-worst as `reason`
        self.db.execute(f'CREATE TABLE c ({_COLUMNS}, alone TEXT, reason TEXT, PRIMARY KEY ("index"))')
        self.db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY) WITHOUT ROWID")
        self.db.execute("BEGIN")
        self.pending: list[tuple] = []
        self.total = 0
        self.verified = False

    def add(self, row: PreferenceRow) -> PreferenceRow:
        """Record the row's candidate; returns the row (so rows pass through on their way to the file)."""
        self.add_candidate(Candidate.of(row, self.total))
        return row

    def add_candidate(self, candidate: Candidate) -> None:
        """Record the next candidate (its `index` is its position)."""
        self.total += 1
        self.verified |= candidate.chosen_verified is not None
        self.pending.append((*(getattr(candidate, f) for f in _FIELDS), self.waterfall.alone(candidate), None))
        if len(self.pending) >= self.window:
            self._insert()

    def _insert(self) -> None:
        self.db.executemany(f"INSERT INTO c VALUES ({', '.join('?' * (len(_FIELDS) + 2))})", self.pending)
        self.pending = []

    def _windows(self, columns: str, where: str = "") -> Iterator[list[tuple]]:
        """The rows not dropped yet (and matching `where`), `window` at a time in position order (`columns` start
        with "index"); no read stays open between windows, so each window's decisions are written before the
        next is read."""
        last = -1
        while window := self.db.execute(
            f'SELECT {columns} FROM c WHERE reason IS NULL{where} AND "index" > ? ORDER BY "index" LIMIT ?',
            (last, self.window),
        ).fetchall():
            last = window[-1][0]
            yield window

    def run(self) -> dict[str, int]:
        """Apply the filters; returns the counts, as `select` does."""
        db, waterfall = self.db, self.waterfall
        self._insert()
        db.execute("COMMIT")
        band = waterfall.filters.length_balance
        counts = _first_counts(self.verified, self.strategy, self.total, band is not None)
        if self.strategy == "best_vs_worst":
            self._best_vs_worst()
        db.execute("UPDATE c SET reason = alone WHERE reason IS NULL")
        if waterfall.looks_back:
            # only rows whose texts recur can be duplicates; without a cap, only they can be dropped at all
            db.execute("CREATE TABLE recurring (digest BLOB PRIMARY KEY) WITHOUT ROWID")
            db.execute(
                "INSERT INTO recurring SELECT digest FROM c WHERE reason IS NULL GROUP BY digest HAVING COUNT(*) > 1"
            )
            where = "" if waterfall.filters.max_per_principle else " AND digest IN recurring"
            for window in self._windows('"index", first_principle, digest, digest IN recurring', where):
                digests = [digest for *_, digest, recurs in window if recurs]
                seen = {
                    d
                    for (d,) in db.execute(
                        f"SELECT digest FROM seen WHERE digest IN ({','.join('?' * len(digests))})", digests
                    )
                }
                dropped, kept = [], []
                for index, principle, digest, recurs in window:
                    reason = waterfall.after(principle, digest in seen)
                    if reason:
                        dropped.append((reason, index))
                    elif recurs:
                        seen.add(digest)
                        kept.append((digest,))
                db.execute("BEGIN")
                db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", kept)
                db.executemany('UPDATE c SET reason = ? WHERE "index" = ?', dropped)
                db.execute("COMMIT")
        if band is not None:
            self._balance_lengths(band)
        for reason, n in db.execute("SELECT reason, COUNT(*) FROM c WHERE reason IS NOT NULL GROUP BY reason"):
            counts[reason] += n
        counts["preferences"], counts["calibrated"] = db.execute(
            "SELECT COUNT(*), COUNT(p_chosen_calibrated) FROM c WHERE reason IS NULL"
        ).fetchone()
        return counts

    def _balance_lengths(self, band: tuple[float, float]) -> None:
        """`length_balance` over the kept rows, in SQL: the thinned side's least confident rows are dropped."""
        db = self.db
        longer, shorter = db.execute(
            "SELECT COALESCE(SUM(chosen_longer = 1), 0), COALESCE(SUM(chosen_longer = 0), 0) FROM c"
            " WHERE reason IS NULL"
        ).fetchone()
        side, k = length_balance_drops(longer, shorter, band)
        if side is None or not k:
            return
        db.execute("BEGIN")
        db.execute(
            'UPDATE c SET reason = \'dropped_length_balance\' WHERE "index" IN (SELECT "index" FROM c WHERE'
            ' reason IS NULL AND chosen_longer = ? ORDER BY p_chosen, "index" LIMIT ?)',
            (int(side), k),
        )
        db.execute("COMMIT")

    def _best_vs_worst(self) -> None:
        """Per prompt, only the judged pair of the best sample against the worst stays."""
        db = self.db
        db.execute('CREATE TABLE not_best ("index" INTEGER PRIMARY KEY)')
        db.execute("BEGIN")
        cursor = db.execute(f"SELECT {_COLUMNS} FROM c WHERE pair_kind = 'samples' ORDER BY prompt_id, \"index\"")
        for _, group in itertools.groupby(map(_stored, cursor), key=lambda c: c.prompt_id):
            rows = list(group)
            best = {row.index for row in _best_vs_worst(rows)}
            db.executemany("INSERT INTO not_best VALUES (?)", [(row.index,) for row in rows if row.index not in best])
        db.execute(
            'UPDATE c SET reason = \'dropped_not_best_vs_worst\' WHERE "index" IN (SELECT "index" FROM not_best)'
        )
        db.execute("COMMIT")

    def kept(self) -> Iterator[int]:
        """The kept rows' positions, ascending."""
        for (index,) in self.db.execute('SELECT "index" FROM c WHERE reason IS NULL ORDER BY "index"'):
            yield index

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)


def _judged_rows(
    store: RunStore, settings: DatasetSettings, counts: dict[str, int] | None = None
) -> Iterator[PreferenceRow]:
    """The preference row of every current pair with a successful judgment, in pair order, one at a time."""
    provenance, calibration = settings.provenance(), store.calibration()
    checks = Checks(store.iter_prompts(checked_only=True), settings.filters.verifier)
    kinds = set(settings.pairs.kinds)
    for pair, judgment in store.pairs_with_judgments(settings.fingerprints.sources(), settings.fingerprints.judge):
        if pair.kind not in kinds:
            continue
        if counts is not None:
            counts["pairs"] += 1
            counts[
                "judged"
                if judgment is not None and judgment.status == "ok"
                else "judge_failures"
                if judgment is not None
                else "unjudged"
            ] += 1
        if judgment is not None and judgment.status == "ok":
            yield preference_row(pair, judgment, provenance, calibration, checks)


def _calibrated_threshold(store: RunStore, settings: DatasetSettings) -> float | None:
    calibration = store.calibration()
    applies = calibration is not None and calibration.judge_fingerprint == settings.fingerprints.judge
    return calibration.min_confidence if applies and calibration else None


def sft_rows(store: RunStore, settings: DatasetSettings, counter: dict[str, int]) -> Iterator[SFTRow]:
    """The SFT rows of these settings' chains, one at a time (counted into `counter`)."""
    provenance = settings.provenance()
    if settings.fingerprints.critique is None:
        return
    checks = Checks(store.iter_prompts(checked_only=True), settings.filters.verifier)
    for chain in store.chains(settings.fingerprints.critique):
        row = sft_row(chain, provenance, checks)
        if row.verified is False:
            counter["sft_failed_verification"] = counter.get("sft_failed_verification", 0) + 1
            if settings.filters.verify == "drop":
                continue
        counter["sft"] = counter.get("sft", 0) + 1
        yield row


#: From this many chains, the SFT file is written by a second process while this one writes the preferences (a
#: core otherwise idle at the end of a run: at a million prompts the two files took ~200 s one after the other).
SFT_BESIDE = 20_000


def write_sft(store: RunStore, settings: DatasetSettings) -> dict[str, int]:
    """Write data/sft.* for these settings; returns the SFT counts."""
    counts = {"sft": 0}
    RunFiles(store.run_dir).write_dataset("sft", sft_rows(store, settings, counts))
    return counts


class _SFTBeside:
    """`write_sft` in a fresh Python process (not a fork of this one, which may hold threads and locks, and not
    multiprocessing's spawn, which runs the caller's main script again); `result()` waits for its counts."""

    def __init__(self, store: RunStore, settings: DatasetSettings) -> None:
        import subprocess
        import sys

        code = (
            "import json, sys; from charter.preference.dataset import _sft_main; "
            "print(json.dumps(_sft_main(sys.argv[1], sys.stdin.read())))"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(store.run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.process.stdin.write(settings.model_dump_json())  # type: ignore[union-attr]
        self.process.stdin.close()  # type: ignore[union-attr]

    def result(self) -> dict[str, int]:
        lines = self.process.stdout.read().strip().splitlines() or ["no message"]  # type: ignore[union-attr]
        if self.process.wait() != 0:
            raise DatasetError(f"writing data/sft.* in a second process failed: {lines[-1]}")
        return json.loads(lines[-1])


def _sft_main(run_dir: str, settings: str) -> dict[str, int]:
    with RunStore(run_dir) as store:
        return write_sft(store, DatasetSettings.model_validate_json(settings))


def write(store: RunStore, settings: DatasetSettings) -> DatasetManifest:
    """Build the datasets of these settings and write data/preferences.* and data/sft.*; returns the manifest
    (also stored as meta `dataset`). When neither the settings nor the store changed since the files were
    written, they are left as they are."""
    from charter.preference.manifest import dataset_manifest, store_marker

    marker = store_marker(store)
    files = RunFiles(store.run_dir)
    last = dataset_manifest(store)
    if (
        last is not None
        and last.settings == settings
        and last.store_marker == marker
        and files.has_dataset("preferences")
        and files.has_dataset("sft")
    ):
        return last
    tallies = {"pairs": 0, "judged": 0, "judge_failures": 0, "unjudged": 0}
    filter_counts: dict[str, int] = {}
    files.data_dir.mkdir(parents=True, exist_ok=True)
    selection = StoredSelection(
        files.data_dir / ".selection.sqlite",
        Waterfall(settings.filters, _calibrated_threshold(store, settings)),
        settings.pairs.strategy,
    )

    diverse = diverse_selection(files.data_dir, settings.filters)

    def keep() -> Iterable[int] | None:
        filter_counts.update(selection.run())
        kept = None if filter_counts["preferences"] == selection.total else selection.kept()
        return kept if diverse is None else diverse.choose(kept, filter_counts)

    chains = store.count("chains", "fingerprint = ?", (settings.fingerprints.critique,))
    sft_job = _SFTBeside(store, settings) if chains >= SFT_BESIDE else None
    rows = map(selection.add, _judged_rows(store, settings, tallies))
    try:
        files.write_dataset("preferences", rows if diverse is None else map(diverse.add, rows), keep)
    finally:
        selection.close()
        if diverse is not None:
            diverse.close()
        sft_counts = sft_job.result() if sft_job is not None else write_sft(store, settings)
    del tallies["unjudged"]
    counts = {**(store.meta("prompt_counts") or {}), **tallies, **filter_counts}
    counts.update(
        chains=sft_counts["sft"]
        + (sft_counts.get("sft_failed_verification", 0) if settings.filters.verify == "drop" else 0),
        **sft_counts,
    )
    calibration = store.calibration()
    applies = calibration is not None and calibration.judge_fingerprint == settings.fingerprints.judge
    manifest = DatasetManifest(
        settings=settings,
        written_at=now_iso(),
        counts=counts,
        calibration=calibration if applies else None,
        store_marker=marker,
    )
    store.set_meta(dataset=manifest)
    return manifest


def rewrite(store: RunStore) -> DatasetManifest | None:
    """Write the datasets again with the settings they were last written with (after a calibration, say)."""
    from charter.preference.manifest import dataset_manifest

    manifest = dataset_manifest(store)
    return write(store, manifest.settings) if manifest is not None else None
