"""The collapse monitor: how diverse a policy's answers to a fixed probe set are, round after round.

Every metric of the diversity table (`charter.stats.diversity.METRICS`: distinct-1/2/3, self-BLEU with its
interval, the Vendi score and mean pairwise cosine of MiniLM embeddings, kept as the dispersion 1 - mean cosine, the
compression ratio, and any metric registered there) on the answers, with the length spread in tokens, and besides
them the refusal rate (answers that open with a refusal) and the vocabulary size (distinct tokens).

Diversity falling round after round is the signature of model collapse (Shumailov et al. 2024). `compare` sets a
round's answers against a reference, round 0's answers to the same probes (paired) or a sample of real responses
(independent), measure by measure, as the relative change of the diversity (for self-BLEU: of 1 - self-BLEU) with a
leave-one-out jackknife 95% interval (`charter.stats.intervals`); `collapse_flags` raises a flag for a measure that
fell by more than the allowed fraction (by the `interval` rule: with its whole interval below no change). `flags`
is the point rule on stored figures alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from charter.errors import CharterError
from charter.providers.embeddings import embedder
from charter.records.base import is_refusal
from charter.stats.diversity import METRICS as DIVERSITY
from charter.stats.diversity import DiversityConfig, Metric, Texts, measure_texts, tokens, unit_rows
from charter.stats.intervals import Statistic, change_interval

Embed = Callable[[Sequence[str]], np.ndarray]

#: the monitor's measures beside the diversity table: label, and True when a fall means less diversity (None: not
#: a diversity measure)
OWN: dict[str, tuple[str, bool | None]] = {
    "mean_length": ("mean length (tokens)", None),
    "length_std": ("length spread (sd, tokens)", True),
    "refusal_rate": ("refusal rate", None),
    "vocabulary": ("vocabulary size", True),
}


def _kept_as(entry: Metric) -> str:
    """The key of a diversity metric among the monitor's measures (mean cosine's oriented value: `dispersion`)."""
    return entry.monitor[0] if entry.monitor else entry.name


def monitor_metrics() -> dict[str, tuple[str, bool | None]]:
    """Every measure of the monitor: key -> (label, True when a fall means less diversity, False when a rise does,
    None: not a diversity measure): each metric of the diversity table (one with a `monitor` name kept as its
    oriented value), then the monitor's own."""
    table = {
        _kept_as(e): (e.monitor[1], True) if e.monitor else (e.label, e.higher == "diverse") for e in DIVERSITY.values()
    }
    return {**table, **OWN}


def flaggable() -> tuple[str, ...]:
    """The measures that can raise a collapse flag (the diversity measures)."""
    return tuple(key for key, (_, falls) in monitor_metrics().items() if falls is not None)


def default_embed() -> Embed:
    """The monitor's embedder: MiniLM-L6, as the dataset figures use."""
    return embedder(DiversityConfig().embedding_model or "minilm-l6")


def collapse_metrics(texts: Sequence[str], embed: Embed | None = None) -> dict[str, Any]:
    """Every monitor metric of one set of answers (all of them: a probe set is small), with the intervals of the
    metrics that have one (`self_bleu_ci95`) and what could not be measured (`notes`)."""
    embed = embed or default_embed()
    texts = list(texts)
    config = DiversityConfig(sample=max(len(texts), 2), bleu_sample=max(len(texts), 2), embed_sample=max(len(texts), 2))
    figures = measure_texts(texts, config, embed)
    named = {name: figures.figure(name) for name in DIVERSITY}
    length = figures.length
    return {
        **{key: figure.value for key, figure in named.items()},
        **{f"{e.name}_ci95": named[e.name].ci95 for e in DIVERSITY.values() if e.interval is not None},
        **{e.monitor[0]: e.oriented(named[e.name].value) for e in DIVERSITY.values() if e.monitor},
        "mean_length": length.mean,
        "length_std": length.sd,
        "length_quartiles": None if length.q1 is None else [length.q1, length.median, length.q3],
        "refusal_rate": sum(map(is_refusal, texts)) / len(texts) if texts else None,
        "vocabulary": len({w for t in texts for w in tokens(t)}),
        "notes": [f"{key}: {figure.note}" for key, figure in named.items() if figure.note],
    }


def relative_change(value: float | None, base: float | None) -> float | None:
    """(value - base) / |base|; None where either is missing or base is 0."""
    if value is None or base is None or base == 0 or not math.isfinite(base):
        return None
    return (value - base) / abs(base)


def flags(round_metrics: dict[str, Any], base: dict[str, Any], max_drop: float) -> list[str]:
    """The diversity measures that fell more than `max_drop` (a fraction) below round 0 (self-BLEU: whose
    complement did)."""
    raised = []
    for key, (label, falls) in monitor_metrics().items():
        if falls is None:
            continue
        value, ref = round_metrics.get(key), base.get(key)
        if not falls:  # self-BLEU: measure the diversity 1 - BLEU
            value = None if value is None else 1 - value
            ref = None if ref is None else 1 - ref
        change = relative_change(value, ref)
        if change is not None and change < -max_drop:
            raised.append(f"{label} {change:+.0%} against round 0")
    return raised


# -- against a reference, with intervals ----------------------------------------------------------------------


def _vectors(texts: Sequence[str], embed: Embed) -> np.ndarray | None:
    try:
        return unit_rows(embed(list(texts))) if texts else None
    except CharterError:
        return None


def _statistic(key: str, texts: Sequence[str], vectors: np.ndarray | None) -> Statistic:
    """The measure `key` of the texts at some positions, oriented so that higher is more diverse."""
    entry = next((e for e in DIVERSITY.values() if _kept_as(e) == key), None)

    def stat(positions: Sequence[int]) -> float | None:
        chosen = [texts[i] for i in positions]
        if entry is not None and entry.needs == "embeddings":
            return None if vectors is None else entry.oriented(entry.measure(vectors[list(positions)]))
        if entry is not None:
            return entry.oriented(entry.measure(Texts(chosen)))
        if key == "length_std":
            return float(np.std([len(tokens(t)) for t in chosen])) if chosen else None
        return float(len({w for t in chosen for w in tokens(t)}))  # vocabulary

    return stat


def compare(
    texts: Sequence[str], reference: Sequence[str], paired: bool, embed: Embed | None = None
) -> dict[str, dict[str, Any]]:
    """Per diversity measure: the round's value and the reference's (self-BLEU as 1 - self-BLEU), the relative
    change (value - reference) / |reference| and its 95% jackknife interval (`ci95`, or `note` why none). `paired`:
    item i of both sets answers the same probe."""
    embed = embed or default_embed()
    vectors, ref_vectors = _vectors(texts, embed), _vectors(reference, embed)
    out: dict[str, dict[str, Any]] = {}
    for key in flaggable():
        stat, ref_stat = _statistic(key, texts, vectors), _statistic(key, reference, ref_vectors)
        found = change_interval(stat, len(texts), ref_stat, len(reference), paired)
        value, base = stat(range(len(texts))), ref_stat(range(len(reference)))
        entry: dict[str, Any] = {"value": value, "reference": base, "change": None, "ci95": None, "note": found["note"]}
        if found["change"] is not None and base:
            scale = abs(base)
            entry["change"] = found["change"] / scale
            entry["ci95"] = None if found["ci95"] is None else [v / scale for v in found["ci95"]]
        elif found["change"] is not None:
            entry["note"] = "no relative change: the reference is 0"
        out[key] = entry
    return out


def collapse_flags(
    compared: dict[str, dict[str, Any]], max_drop: float, rule: str, keys: Sequence[str] | None, against: str
) -> list[str]:
    """The measures (of `keys`; None: all) that fell more than `max_drop` below the reference: by the `interval`
    rule only where the whole 95% interval of the change is below 0 (the point rule where there is none)."""
    raised = []
    for key in keys or flaggable():
        entry = compared.get(key) or {}
        change, interval = entry.get("change"), entry.get("ci95")
        if change is None or not change < -max_drop:
            continue
        if rule == "interval" and interval is not None and not interval[1] < 0:
            continue
        shown = "" if interval is None else f" [{interval[0]:+.0%}, {interval[1]:+.0%}]"
        raised.append(f"{monitor_metrics()[key][0]} {change:+.0%}{shown} against {against}")
    return raised


def round_verdict(
    seen: dict[str, Any], base: dict[str, Any], real: dict[str, Any] | None, monitor: Any
) -> dict[str, Any]:
    """A round's collapse check: its answers against round 0's (paired by probe) and against the real sample, each
    measure's change with its interval, and the flags `monitor` (a `CollapseMonitorConfig`) raises by its rule against
    the references it names. Monitor results without their texts get the point rule on their stored figures."""
    against: dict[str, Any] = {}
    raised: list[str] = []
    if seen.get("texts") is not None and base.get("texts") is not None:
        against["round_0"] = compare(seen["texts"], base["texts"], paired=True)
        if "round_0" in monitor.against:
            raised += collapse_flags(against["round_0"], monitor.max_drop, monitor.rule, monitor.metrics, "round 0")
    elif "round_0" in monitor.against:
        keys = set(monitor.metrics or flaggable())
        raised += [f for f in flags(seen["metrics"], base["metrics"], monitor.max_drop) if _key(f) in keys]
    if real is not None and seen.get("texts") is not None:
        against["real"] = compare(seen["texts"], real["texts"], paired=False)
        if "real" in monitor.against:
            raised += collapse_flags(against["real"], monitor.max_drop, monitor.rule, monitor.metrics, "the real data")
    return {"against": against, "flags": raised, "rule": monitor.rule, "max_drop": monitor.max_drop}


def collapse_stop(raised: list[str], monitor: Any) -> str | None:
    """Why the loop stops on these flags, with the rule that raised them; None without flags."""
    if not raised:
        return None
    return f"collapse flag ({monitor.rule} rule, a fall of more than {monitor.max_drop:.0%}): " + "; ".join(raised)


def _key(flag: str) -> str | None:
    """The measure a point-rule flag names."""
    return next((key for key, (label, _) in monitor_metrics().items() if flag.startswith(label + " ")), None)
