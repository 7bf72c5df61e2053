"""Principles as voters: every principle judges every human-labelled pair through charter's judge (the fenced
multiple-choice prompt, both orders, log-probabilities where the model has them, the call cache, limits and budget),
and each answer becomes a vote: for `a`, for `b`, an abstention (the two orders disagree, or an even split), or a
recorded failure (never a made-up vote)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charter.agreement.evaluate import PairRow, load_pairs_file, to_pair
from charter.constitutions.schema import Constitution, Principle
from charter.errors import DatasetError
from charter.judge.pairwise import judge_many
from charter.judge.settings import JudgeSettings
from charter.providers.base import ChatModel
from charter.records import Judgment, Pair
from charter.runs.items import judged_pairs, stored_pair
from charter.runs.store import RunStore

#: A vote's codes: for `a`, for `b`, abstain; a failed judgment is NaN.
FOR_A, FOR_B, ABSTAIN = 1.0, -1.0, 0.0

#: The critique and revision requests of a principle that came from its one-line text.
CRITIQUE = "Identify specific ways in which the assistant's last response falls short of this principle: {principle}"
REVISION = "Rewrite the assistant's last response so that it follows this principle: {principle}"
COMPARISON = "Which response better follows this principle: {principle}"


@dataclass
class LabelledPair:
    """A pair with the side people preferred ('a' or 'b'; '' where nobody has labelled it)."""

    pair: Pair
    human: str


def slug(text: str, taken: set[str]) -> str:
    """A principle id from its text: its first words, lowercase, made unique with a number."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    skip = {"select", "the", "response", "that", "which", "is", "a", "an", "more", "most"}
    base = "-".join([w for w in words if w not in skip][:5]) or "principle"
    found, n = base, 2
    while found in taken:
        found, n = f"{base}-{n}", n + 1
    taken.add(found)
    return found


def principle_from_text(pid: str, text: str) -> Principle:
    """A full principle from one line ('Select the response that ...'): the line is its description, and its
    critique, revision and comparison requests are written from templates around it."""
    return Principle(
        id=pid,
        description=text,
        critique_request=CRITIQUE,
        revision_request=REVISION,
        comparison=COMPARISON,
    )


def labelled_pairs(rows: Sequence[PairRow], seed: int) -> list[LabelledPair]:
    """Rows of a human pair file as pairs whose `a` is drawn per row (seeded), with the human side."""
    return [LabelledPair(*to_pair(row, seed)) for row in rows]


def read_pairs(source: str | Path, seed: int, labelled_only: bool = True) -> list[LabelledPair]:
    """Human-labelled pairs from a JSONL pair file (prompt, chosen, rejected) or a run directory's human labels
    (skips and ties left out; a pair labelled by several people counts once, by majority, ties left out). With
    `labelled_only=False`, a run directory gives every judged pair, labelled where people labelled it."""
    from charter.runs.files import RunFiles
    from charter.runs.store import open_store

    source = Path(source)
    if RunFiles.is_run_dir(source) and not labelled_only:
        with open_store(source, read_only=True) as store:
            found = run_pairs(store, None, seed)
        if not found:
            raise DatasetError(f"{source}: no judged pairs yet; run the judge stage first")
        return found
    if RunFiles.is_run_dir(source):
        return _run_pairs(source)
    return labelled_pairs(load_pairs_file(source), seed)


def run_pairs(store: RunStore, n: int | None, seed: int) -> list[LabelledPair]:
    """A seeded sample of `n` (None: all) of a run's judged pairs, with the side people picked where they
    labelled it ('' where nobody did)."""
    import random

    fingerprints = store.fingerprints()
    if fingerprints is None:
        return []
    pairs = [pair for pair, _ in judged_pairs(store, fingerprints)]
    if n is not None and len(pairs) > n:
        keep = set(random.Random(seed).sample(range(len(pairs)), n))
        pairs = [p for i, p in enumerate(pairs) if i in keep]
    sides = human_sides(store)
    return [LabelledPair(p, sides.get(p.pair_id, "")) for p in pairs]


def human_sides(store: RunStore) -> dict[str, str]:
    """pair id -> the side most of its labels pick ('a' or 'b'); skips, ties and even splits left out."""
    from charter.runs import labels as stored

    votes: dict[str, list[str]] = {}
    for label in stored.labels(store):
        if label.label in ("a", "b"):
            votes.setdefault(label.pair_id, []).append(label.label)
    return {p: "a" if v.count("a") > v.count("b") else "b" for p, v in votes.items() if v.count("a") != v.count("b")}


def _run_pairs(run_dir: Path) -> list[LabelledPair]:
    from charter.runs.store import open_store

    with open_store(run_dir, read_only=True) as store:
        out = []
        for pair_id, side in human_sides(store).items():
            pair = stored_pair(store, pair_id)
            if pair is not None:
                out.append(LabelledPair(pair, side))
    if not out:
        raise DatasetError(f"{run_dir}: no human labels that pick a side; label a spot check first")
    return out


@dataclass
class Votes:
    """Each principle's vote on each pair: `codes[i, j]` for principle i on pair j (FOR_A, FOR_B, ABSTAIN or NaN
    for a failed judgment), and the judge's P(A) behind it."""

    principles: list[Principle]
    pairs: list[LabelledPair]
    p_a: np.ndarray
    codes: np.ndarray
    failures: int = 0
    calls: int = 0
    judgments: list[list[Judgment | None]] = field(default_factory=list, repr=False)

    @property
    def human(self) -> np.ndarray:
        """+1 where people preferred `a`, -1 where `b`, 0 where nobody has labelled the pair."""
        return np.array([{"a": FOR_A, "b": FOR_B}.get(p.human, ABSTAIN) for p in self.pairs])

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """The codes of these principles, in this order."""
        index = {p.id: i for i, p in enumerate(self.principles)}
        return self.codes[[index[i] for i in ids]]


def code(judgment: Judgment) -> float:
    """A judgment as a vote: for the side both orders prefer, abstain when they disagree or split evenly, NaN when
    it failed."""
    if judgment.status != "ok" or judgment.p_a is None:
        return float("nan")
    if judgment.position_consistent is False or judgment.p_a == 0.5:
        return ABSTAIN
    return FOR_A if judgment.p_a > 0.5 else FOR_B


async def vote(
    model: ChatModel,
    principles: Sequence[Principle],
    pairs: Sequence[LabelledPair],
    settings: JudgeSettings,
    seed: int = 0,
    concurrency: int = 64,
    on_judgment: Callable[[], None] | None = None,
) -> Votes:
    """Every principle's vote on every pair (one judgment of the pair under that principle alone); `on_judgment`
    is called as each judgment comes in (a progress display)."""
    n, m = len(principles), len(pairs)
    p_a = np.full((n, m), np.nan)
    codes = np.full((n, m), np.nan)
    judgments: list[list[Judgment | None]] = [[None] * m for _ in range(n)]
    failures = 0
    for i, principle in enumerate(principles):
        constitution = Constitution(name="lab", principles=[principle])
        fixed = settings.model_copy(update={"principles": [principle.id], "principles_per_pair": 1})
        column = {lp.pair.pair_id: j for j, lp in enumerate(pairs)}
        async for judgment in judge_many(model, constitution, (lp.pair for lp in pairs), fixed, seed, concurrency):
            j = column[judgment.pair_id]
            judgments[i][j] = judgment
            codes[i, j] = code(judgment)
            if judgment.status == "ok" and judgment.p_a is not None:
                p_a[i, j] = judgment.p_a
            else:
                failures += 1
            if on_judgment is not None:
                on_judgment()
    calls = n * m * (2 if settings.orders == "both" else 1)
    return Votes(list(principles), list(pairs), p_a, codes, failures, calls, judgments)


def ensemble(codes: np.ndarray) -> np.ndarray:
    """The ensemble's side per pair from its members' votes: the sign of their sum (0: a tie, or no vote)."""
    return np.sign(np.nansum(codes, axis=0)) if len(codes) else np.zeros(codes.shape[1])


def agreement(side: np.ndarray, human: np.ndarray) -> float:
    """Share of pairs whose side matches people's; a tie counts half (it picks neither)."""
    if not len(side):
        return float("nan")
    return float(np.mean(np.where(side == 0, 0.5, side == human)))


__all__ = [
    "ABSTAIN",
    "FOR_A",
    "FOR_B",
    "LabelledPair",
    "Votes",
    "agreement",
    "code",
    "ensemble",
    "labelled_pairs",
    "principle_from_text",
    "read_pairs",
    "run_pairs",
    "slug",
    "vote",
]
