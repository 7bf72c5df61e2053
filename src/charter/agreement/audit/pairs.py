"""The judge audit's input: pairs with a known better response, from a labeled file or a run, and the sample."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from charter.records import Message
from charter.runs.items import judged_pairs
from charter.runs.store import RunStore


@dataclass(frozen=True)
class AuditPair:
    """A prompt and two responses of which `better` is known to be the better one."""

    pair_id: str
    prompt: list[Message]
    better: str
    worse: str


def pairs_from_file(path: str | Path) -> list[AuditPair]:
    """Human-labeled pairs (prompt, chosen, rejected): `chosen` is the better response."""
    from charter.agreement.evaluate import load_pairs_file

    return [AuditPair(r["id"], list(r["prompt"]), r["chosen"], r["rejected"]) for r in load_pairs_file(path)]


def pairs_from_run(store: RunStore, min_confidence: float) -> list[AuditPair]:
    """A run's own pairs that its judge (the settings in effect) decided with confidence and consistently in
    both orders: the judge's winner is the better response."""
    fp = store.fingerprints()
    if fp is None:
        return []
    out = []
    for pair, judgment in judged_pairs(store, fp):
        if judgment.p_a is None or abs(judgment.p_a - 0.5) < min_confidence or judgment.position_consistent is False:
            continue
        better, worse = (pair.a, pair.b) if judgment.p_a > 0.5 else (pair.b, pair.a)
        out.append(AuditPair(pair.pair_id, list(pair.prompt), better, worse))
    return out


def sample(pairs: list[AuditPair], n: int | None, seed: int) -> list[AuditPair]:
    """A seeded sample of n pairs, in pair-id order (all of them when there are no more)."""
    ordered = sorted(pairs, key=lambda p: p.pair_id)
    if n is None or n >= len(ordered):
        return ordered
    keep = set(random.Random(f"audit:{seed}").sample(range(len(ordered)), n))
    return [p for i, p in enumerate(ordered) if i in keep]
