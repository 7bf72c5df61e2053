"""`charter.mix_plan`: choose training sources per target subtask and write a mixture manifest.

A score table says how well each source does on each target subtask (an evaluation of a model trained on that
source, or of the source itself). Three strategies choose from it:

- `micro`: the top `top_n` sources of each target, then their union (SUPERNOVA's micro-mixing);
- `macro`: the top `top_n` sources by their mean score over the targets (weighted by the targets' weights);
- `all`: every source with a score.

Ranking is by score, higher first; equal scores are ordered by source name (ascending), and the manifest names
every source a chosen one was tied with. A source without a score for a target is not ranked for it (listed
under `unscored`); `macro` and `all` take a source's mean over the targets it has scores for, and say over how
many.

Weights (`weighting`): `targets` (each target's weight split evenly over the sources it chose, summed per source:
proportional to how many targets chose a source; under `macro` and `all` every source is chosen for the mean,
so this is uniform), `uniform`, or `gain` (each choosing target's weight times the source's gain there: its
score less the `baseline` source's, or the score itself without a baseline; gains below 0 count 0; under `macro`
and `all` the weighted mean gain). A chosen source whose weight comes to 0 is left out, and says so.

The manifest (`MixtureManifest`, YAML) holds the sources with their paths, weights and why each was chosen,
the targets with what each chose, the sources left out, and a fingerprint of all of it.

The score table the plan is made from holds one score per source and target subtask (higher is better), read from
files or from Python values:

- long form (CSV with a header, JSON Lines, or a JSON list of objects): one row per source and target with
  `source`, `target`, `score` and optionally `n` (the items the score rests on). A row without a score is an
  error: leave the row out for a source that was not scored on a target;
- wide form (CSV whose first column is `source`, or a JSON object `{source: {target: score}}`): one row per
  source, one column per target; an empty cell (or a JSON null) is "no score";
- `charter eval rm` summaries (JSON with `subsets`), one per source: each subset is a target, its accuracy the
  score and its n the n; a subset whose every comparison failed has no score (a recorded failure, never 0).
  The source is the file's stem, or NAME in `NAME=PATH`.

Every problem is one `DatasetError` naming the file and line (or key): a missing or non-numeric score, a
duplicate (source, target), an empty name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import Field, model_validator

from charter.api_args import Kinds, Range, public
from charter.errors import ArgumentError, ConfigError, DatasetError
from charter.records import fingerprint
from charter.tables import iter_csv, iter_jsonl, read_text_file
from charter.yamlio import ConfigModel, Positions, load_yaml, model_from_data, require_unique

Strategy = Literal["micro", "macro", "all"]
Weighting = Literal["targets", "uniform", "gain"]
SCORE_KINDS = "a score file, a list of score files or rows, or a mapping of source -> target -> score"
HEADER = "# A mixture manifest, written by `charter mix plan`; `charter mix build` reads it.\n"


class Reason(ConfigModel):
    """Why a source was chosen: where it ranked, on what score."""

    target: str | None
    """The target subtask it ranked on; null for its mean over the targets (`macro`, `all`)."""
    score: float
    """Its score there (for the mean: the weighted mean over the targets it has scores for)."""
    rank: int
    """Its rank there, 1 for the best; equal scores are ranked by source name."""
    of: int
    """How many sources were ranked there."""
    n: int | None = None
    """The items the score rests on, where the table gives it."""
    tied_with: list[str] = []
    """Sources with exactly the same score there."""
    over_targets: int | None = None
    """For the mean: how many of the targets it has scores for."""


class PlannedSource(ConfigModel):
    """One source of the mixture."""

    name: str
    """The source's name in the score table."""
    path: str
    """Where its rows are: a .jsonl/.parquet file, an export folder, a run directory or a Hub dataset id (relative
    paths are read from the directory `charter mix build` runs in)."""
    weight: float = Field(gt=0)
    """Its share of the mixture's rows (the weights are normalised to sum to 1 when the mixture is built)."""
    why: list[Reason]
    """Where it ranked among the chosen: per target (`micro`) or on its mean (`macro`, `all`)."""
    summary: str = ""
    """The same in words."""
    unscored: list[str] = []
    """Targets it has no score for (not ranked there)."""


class PlannedTarget(ConfigModel):
    """One target subtask: its weight and what it chose."""

    name: str
    """The target's name in the score table."""
    weight: float = Field(ge=0)
    """Its weight in the plan (0: left out of the plan)."""
    chosen: list[str] = []
    """The sources chosen for it (`micro`), best first."""
    ranked: int = 0
    """How many sources have a score for it."""


class LeftOut(ConfigModel):
    """A source of the table that is not in the mixture, and its best place."""

    name: str
    """The source's name."""
    reason: str
    """Why it is not in the mixture."""


class ScoreFile(ConfigModel):
    """A score file the plan was made from."""

    path: str
    """The file as given."""
    sha256: str
    """Its sha256."""


class MixtureManifest(ConfigModel):
    """A mixture plan: which sources, at which weights, and why. `charter mix build` makes the training set."""

    charter_mixture: Literal[1] = 1
    """The manifest format's version."""
    strategy: Strategy
    """How the sources were chosen: `micro`, `macro` or `all`."""
    top_n: int = Field(ge=1)
    """Sources chosen per target (`micro`) or in all (`macro`)."""
    weighting: Weighting
    """How the weights were set: `targets`, `uniform` or `gain`."""
    baseline: str | None = None
    """The source gains are measured against (not a candidate), if any."""
    scores: list[ScoreFile] = []
    """The score files the plan was made from (none for a table given in Python)."""
    targets: list[PlannedTarget] = []
    """The target subtasks, with their weights and choices."""
    sources: list[PlannedSource] = Field(min_length=1)
    """The sources of the mixture, with their weights and why each was chosen."""
    left_out: list[LeftOut] = []
    """The sources of the table that are not in the mixture."""
    notes: list[str] = []
    """Ties across a cut, targets no source has a score for, evaluations that failed."""
    fingerprint: str | None = None
    """A hash of everything above (`charter mix build` refuses a manifest edited since; delete this key to accept
    the edit)."""

    @model_validator(mode="after")
    def _unique_sources(self) -> MixtureManifest:
        named = ((source.name, ("sources", i, "name")) for i, source in enumerate(self.sources))
        require_unique(named, "source {!r} is listed twice")
        return self

    def content_fingerprint(self) -> str:
        """The fingerprint of the manifest's content (every field but `fingerprint`)."""
        return fingerprint(self.model_dump(mode="json", exclude={"fingerprint"}))

    def weights(self) -> dict[str, float]:
        """Source -> weight, normalised to sum to 1."""
        total = sum(s.weight for s in self.sources)
        return {s.name: s.weight / total for s in self.sources}


# -- ranking ---------------------------------------------------------------------------------------------------------


def _ranked(values: dict[str, float], n: dict[str, int | None], target: str | None) -> dict[str, Reason]:
    """Source -> its place, best first: by value, higher first, equal values by name."""
    order = sorted(values, key=lambda s: (-values[s], s))
    return {
        s: Reason(
            target=target,
            score=values[s],
            rank=i + 1,
            of=len(order),
            n=n.get(s),
            tied_with=[t for t in order if t != s and values[t] == values[s]],
        )
        for i, s in enumerate(order)
    }


def _cut_note(ranked: dict[str, Reason], top_n: int, where: str) -> str | None:
    """A note where equal scores straddle the cut after `top_n`."""
    places = list(ranked.values())
    if len(places) <= top_n or places[top_n - 1].score != places[top_n].score:
        return None
    tied = [s for s, r in ranked.items() if r.score == places[top_n].score]
    kept = [s for s in tied if ranked[s].rank <= top_n]
    return f"{where}: {', '.join(tied)} tie at {places[top_n].score:g} across the cut; {', '.join(kept)} chosen by name"


def _mean(table: ScoreTable, source: str, weights: dict[str, float]) -> tuple[float, int] | None:
    """The weighted mean of a source's scores over the weighted targets it has scores for, and their count."""
    scored = [(weights[t], s.value) for t in weights if weights[t] > 0 and (s := table.get(source, t)) is not None]
    total = sum(w for w, _ in scored)
    if not scored or total <= 0:
        return None
    return sum(w * v for w, v in scored) / total, len(scored)


class _Plan:
    """The choices of one strategy: per source the reasons it was chosen, per target what it chose, notes."""

    def __init__(self, table: ScoreTable, candidates: list[str], target_weights: dict[str, float]) -> None:
        self.table, self.candidates, self.target_weights = table, candidates, target_weights
        self.why: dict[str, list[Reason]] = {}
        self.chosen: dict[str, list[str]] = {t: [] for t in table.targets}
        self.ranked: dict[str, int] = {t: 0 for t in table.targets}
        self.notes: list[str] = []
        self.rankings: dict[str | None, dict[str, Reason]] = {}
        """Target (None: the mean) -> source -> its place there."""

    def micro(self, top_n: int) -> None:
        for target, weight in self.target_weights.items():
            scores = {s: score for s in self.candidates if (score := self.table.get(s, target)) is not None}
            ranked = _ranked({s: x.value for s, x in scores.items()}, {s: x.n for s, x in scores.items()}, target)
            self.ranked[target] = len(ranked)
            if weight <= 0:
                continue
            self.rankings[target] = ranked
            if not ranked:
                self.notes.append(f"target {target}: no source has a score for it; nothing is chosen for it")
                continue
            if note := _cut_note(ranked, top_n, f"target {target}"):
                self.notes.append(note)
            for name, reason in list(ranked.items())[:top_n]:
                self.why.setdefault(name, []).append(reason)
                self.chosen[target].append(name)

    def by_mean(self, top_n: int | None) -> None:
        means = {s: m for s in self.candidates if (m := _mean(self.table, s, self.target_weights)) is not None}
        for source in self.candidates:
            if source not in means:
                self.notes.append(f"source {source}: no score on any target in the plan; not ranked")
        ranked = _ranked({s: m[0] for s, m in means.items()}, {}, None)
        self.rankings[None] = ranked
        for t in self.table.targets:
            self.ranked[t] = sum(self.table.get(s, t) is not None for s in self.candidates)
        if top_n is not None and (note := _cut_note(ranked, top_n, "mean over targets")):
            self.notes.append(note)
        for name, reason in list(ranked.items())[:top_n]:
            self.why[name] = [reason.model_copy(update={"over_targets": means[name][1]})]


# -- weights ---------------------------------------------------------------------------------------------------------


def _gains(table: ScoreTable, baseline: str | None, weights: dict[str, float]) -> dict[str, float]:
    """Target -> the score a source's gain is measured from (the baseline's, or 0)."""
    if baseline is None:
        return {t: 0.0 for t in weights}
    base = {}
    for target, weight in weights.items():
        score = table.get(baseline, target)
        if score is None and weight > 0:
            raise DatasetError(f"baseline {baseline!r} has no score for target {target!r}: no gain can be measured")
        base[target] = score.value if score is not None else 0.0
    return base


def _weights(plan: _Plan, strategy: Strategy, weighting: Weighting, baseline: str | None) -> dict[str, float]:
    """Source -> raw weight (not normalised) for the chosen sources."""
    if weighting == "uniform" or (weighting == "targets" and strategy != "micro"):
        return {s: 1.0 for s in plan.why}
    if weighting == "targets":
        return {
            s: sum(plan.target_weights[r.target] / len(plan.chosen[r.target]) for r in reasons if r.target)
            for s, reasons in plan.why.items()
        }
    base = _gains(plan.table, baseline, plan.target_weights)
    if strategy == "micro":
        return {
            s: sum(plan.target_weights[r.target] * max(r.score - base[r.target], 0.0) for r in reasons if r.target)
            for s, reasons in plan.why.items()
        }
    base_mean = {s: sum(plan.target_weights[t] * base[t] for t in _scored(plan, s)) for s in plan.why}
    totals = {s: sum(plan.target_weights[t] for t in _scored(plan, s)) for s in plan.why}
    return {s: max(reasons[0].score - base_mean[s] / totals[s], 0.0) for s, reasons in plan.why.items()}


def _scored(plan: _Plan, source: str) -> list[str]:
    return [t for t, w in plan.target_weights.items() if w > 0 and plan.table.get(source, t) is not None]


# -- the manifest ----------------------------------------------------------------------------------------------------


def _summary(reasons: list[Reason], unscored: list[str], table: ScoreTable, source: str) -> str:
    parts = []
    for r in reasons:
        place = f"its mean over {r.over_targets} target(s)" if r.target is None else r.target
        tie = f", tied with {', '.join(r.tied_with)} (ranked by name)" if r.tied_with else ""
        parts.append(f"{place}: {r.score:g}, rank {r.rank} of {r.of}{tie}")
    text = "chosen for " + "; ".join(parts)
    if unscored:
        failed = [f"{t} ({table.failed[(source, t)]})" if (source, t) in table.failed else t for t in unscored]
        text += f"; not ranked for {', '.join(failed)} (no score)"
    return text


def _unscored(table: ScoreTable, source: str, weights: dict[str, float]) -> list[str]:
    return [t for t in table.targets if weights[t] > 0 and table.get(source, t) is None]


def _target_weights(table: ScoreTable, given: Mapping[str, float] | None) -> dict[str, float]:
    weights = {t: 1.0 for t in table.targets}
    for target, weight in (given or {}).items():
        if target not in weights:
            raise ArgumentError(
                "target_weights", f"no target {target!r} in the scores (has {', '.join(table.targets)})"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise ArgumentError("target_weights", f"{target}: a weight is a number of at least 0 (got {weight!r})")
        weights[target] = float(weight)
    if not any(w > 0 for w in weights.values()):
        raise ArgumentError("target_weights", "every target has weight 0: nothing to plan for")
    return weights


def _candidates(table: ScoreTable, baseline: str | None, sources: Mapping[str, str] | None) -> list[str]:
    for name in sources or {}:
        if name not in table.sources:
            raise ArgumentError("sources", f"no source {name!r} in the scores (has {', '.join(table.sources)})")
    if baseline is not None and baseline not in table.sources:
        raise ArgumentError("baseline", f"no source {baseline!r} in the scores (has {', '.join(table.sources)})")
    candidates = [s for s in table.sources if s != baseline]
    if not candidates:
        raise DatasetError("the score table has no source to choose besides the baseline")
    return candidates


def plan_mixture(
    table: ScoreTable,
    strategy: Strategy = "micro",
    top_n: int = 2,
    weighting: Weighting = "targets",
    target_weights: Mapping[str, float] | None = None,
    sources: Mapping[str, str] | None = None,
    baseline: str | None = None,
) -> MixtureManifest:
    """The manifest of a score table (see `mix_plan`)."""
    weights = _target_weights(table, target_weights)
    plan = _Plan(table, _candidates(table, baseline, sources), weights)
    if strategy == "micro":
        plan.micro(top_n)
    else:
        plan.by_mean(top_n if strategy == "macro" else None)
    raw = _weights(plan, strategy, weighting, baseline)
    if not plan.why or sum(raw.values()) <= 0:
        raise DatasetError(f"no source is chosen: {_no_gain(baseline) if plan.why else 'no scores'}")
    chosen, left_out = _sources(plan, raw, dict(sources or {}), top_n, baseline)
    notes = plan.notes + [
        f"source {s}: no score for {t}: {why} (not ranked for it)" for (s, t), why in table.failed.items()
    ]
    manifest = MixtureManifest(
        strategy=strategy,
        top_n=top_n,
        weighting=weighting,
        baseline=baseline,
        scores=[ScoreFile(path=p, sha256=h) for p, h in table.files],
        targets=[
            PlannedTarget(name=t, weight=weights[t], chosen=plan.chosen[t], ranked=plan.ranked[t]) for t in weights
        ],
        sources=chosen,
        left_out=left_out,
        notes=notes,
    )
    return manifest.model_copy(update={"fingerprint": manifest.content_fingerprint()})


def _no_gain(baseline: str | None) -> str:
    """Why no chosen source weighs anything under `gain` weighting."""
    if baseline is None:
        return "every chosen source scores 0 or less (gain weighting without a baseline weighs each by its score)"
    return "none gains over the baseline"


def _sources(
    plan: _Plan, raw: dict[str, float], paths: dict[str, str], top_n: int, baseline: str | None
) -> tuple[list[PlannedSource], list[LeftOut]]:
    """The chosen sources with a weight above 0 (heaviest first, then by name) and the rest, each with its why."""
    total = sum(raw.values())
    chosen, left_out = [], []
    for name in plan.candidates:
        if name not in plan.why or raw[name] <= 0:
            left_out.append(LeftOut(name=name, reason=_left_out_reason(plan, name, top_n, baseline)))
            continue
        unscored = _unscored(plan.table, name, plan.target_weights)
        chosen.append(
            PlannedSource(
                name=name,
                path=paths.get(name, name),
                weight=round(raw[name] / total, 6) or 1e-6,  # a share too small to show stays above 0
                why=plan.why[name],
                summary=_summary(plan.why[name], unscored, plan.table, name),
                unscored=unscored,
            )
        )
    return sorted(chosen, key=lambda s: (-s.weight, s.name)), sorted(left_out, key=lambda s: s.name)


def _left_out_reason(plan: _Plan, name: str, top_n: int, baseline: str | None) -> str:
    if name in plan.why:
        if baseline is None:
            return "chosen, but it scores 0 or less where it was chosen (no baseline: weighed by its score): weight 0"
        return "chosen, but no gain over the baseline where it was chosen: weight 0"
    places = [(t, ranked[name]) for t, ranked in plan.rankings.items() if name in ranked]
    if not places:
        return "no score on any target in the plan: not ranked"
    target, best = min(places, key=lambda p: (p[1].rank, p[0] or ""))
    if target is None:
        return f"its mean over targets: {best.score:g}, rank {best.rank} of {best.of}; the top {top_n} are chosen"
    return f"best on {target}: {best.score:g}, rank {best.rank} of {best.of}; the top {top_n} of each target are chosen"


# -- files -----------------------------------------------------------------------------------------------------------


def write_manifest(manifest: MixtureManifest, path: str | Path) -> Path:
    """Write the manifest as YAML (with its fingerprint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"charter_mixture": manifest.charter_mixture, **manifest.model_dump(mode="json", exclude_defaults=True)}
    path.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    return path


def load_manifest(path: str | Path) -> MixtureManifest:
    """A manifest from its YAML file, checked: a bad key is file:line:column, an edit since planning is refused.

    Raises:
        ConfigError: The file is not a valid manifest, or its content no longer matches its fingerprint.
    """
    return read_manifest(path)[0]


def read_manifest(path: str | Path) -> tuple[MixtureManifest, Positions]:
    """`load_manifest`, with the line and column of each key (for messages about a value that validated)."""
    data, positions = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: expected a mixture manifest (a mapping)")
    manifest = model_from_data(MixtureManifest, data, str(path), positions)
    if manifest.fingerprint is not None and manifest.fingerprint != manifest.content_fingerprint():
        line, column = positions.get(("fingerprint",), (1, 1))
        raise ConfigError(
            f"{path}:{line}:{column}: fingerprint: the manifest was edited after planning "
            f"({manifest.fingerprint} planned, {manifest.content_fingerprint()} now); plan again, or delete the "
            "fingerprint line to use it as edited"
        )
    return manifest, positions


@public
def mix_plan(
    scores: Annotated[Any, Kinds(str, Path, list, tuple, dict, said=SCORE_KINDS)],
    strategy: Strategy = "micro",
    top_n: Annotated[int, Range(ge=1)] = 2,
    weighting: Weighting = "targets",
    target_weights: dict[str, float] | None = None,
    sources: dict[str, str] | None = None,
    baseline: str | None = None,
    out: str | Path | None = None,
) -> MixtureManifest:
    """Choose training sources from their scores per target subtask, and say why (SUPERNOVA-style micro-mixing).

    Args:
        scores: The score table: a .csv, .json or .jsonl file (long: `source, target, score[, n]`; wide: one row
            per source, one column per target), a `charter eval rm` summary per source (`NAME=PATH` names it, else
            the file's stem), a list of such files or of long rows, or a mapping `{source: {target: score}}`.
            Higher is better.
        strategy: `micro` (the top `top_n` per target, then their union), `macro` (the top `top_n` by mean score
            over the targets) or `all`.
        top_n: Sources chosen per target (`micro`) or in all (`macro`); at least 1.
        weighting: `targets` (each target's weight split over the sources it chose), `uniform`, or `gain`
            (proportional to the score gain over `baseline`, or to the scores themselves).
        target_weights: Target -> weight (at least 0; default 1 each; 0 leaves a target out of the plan).
        sources: Source -> where its rows are (a file, folder, run directory or Hub id); default: the name itself.
        baseline: A source of the table to measure gains against (a model trained on no source); not a candidate.
        out: Write the manifest there as YAML.

    Returns:
        The manifest: the chosen sources with weights (summing to 1) and why, the targets and their choices, the
        sources left out, notes (ties across a cut, missing scores) and a fingerprint.

    Raises:
        ArgumentError: A bad argument: `top_n` below 1, an unknown strategy or weighting, a target or source
            (in `target_weights`, `sources`, `baseline`) that the table does not have.
        DatasetError: The table cannot be read (a missing or non-numeric score, a duplicate row: named by file
            and line or key), or no source can be chosen.
    """
    table = read_scores(scores)
    manifest = plan_mixture(table, strategy, top_n, weighting, target_weights, sources, baseline)
    if out is not None:
        write_manifest(manifest, out)
    return manifest


LONG_COLUMNS = ("source", "target", "score")
SCORE_SUFFIXES = (".csv", ".json", ".jsonl")


@dataclass(frozen=True)
class Score:
    """One source's score on one target, and where it was read."""

    value: float
    n: int | None
    where: str


@dataclass
class ScoreTable:
    """Scores by (source, target); sources and targets in order of first appearance."""

    scores: dict[tuple[str, str], Score] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    """(source, target) -> why it has no score although it was evaluated (every comparison failed)."""
    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    """(path, sha256) of each file read."""

    def name(self, source: str, target: str) -> None:
        if source not in self.sources:
            self.sources.append(source)
        if target not in self.targets:
            self.targets.append(target)

    def add(self, source: str, target: str, score: Score) -> None:
        """Add a score; a second one for the same (source, target) is an error naming both places."""
        first = self.scores.get((source, target))
        if first is not None:
            raise DatasetError(
                f"{score.where}: a second score for source {source!r}, target {target!r} ({first.where})"
            )
        self.name(source, target)
        self.scores[(source, target)] = score

    def get(self, source: str, target: str) -> Score | None:
        return self.scores.get((source, target))


def _name(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise DatasetError(f"{where}: {key}: missing (a non-empty name)")
    return str(value).strip()


def _number(value: Any, where: str, key: str, text: bool = False) -> float:
    """A finite number; a text cell is parsed where the file is text (`text`: CSV), and is an error elsewhere (JSON,
    Python values): `"0.9"` is not a number there. Anything else is an error naming where."""
    if isinstance(value, str) and not text:
        raise DatasetError(f"{where}: {key}: a number, not the text {value!r} (write it without quotes)")
    if isinstance(value, str):
        cell = value.strip()
        try:
            value = float(cell)
        except ValueError:
            raise DatasetError(f"{where}: {key}: not a number ({cell!r})") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetError(f"{where}: {key}: not a number ({value!r})")
    if not math.isfinite(value):
        raise DatasetError(f"{where}: {key}: not a finite number ({value!r})")
    return float(value)


def _count(value: Any, where: str, text: bool = False) -> int | None:
    if value is None or value == "" and text:
        return None
    number = _number(value, where, "n", text)
    if number < 0 or number != int(number):
        raise DatasetError(f"{where}: n: not a count ({value!r})")
    return int(number)


def add_long_row(table: ScoreTable, row: Mapping[str, Any], where: str, text: bool = False) -> None:
    """One long-form row: source, target, score (required) and n (optional); `text`: its cells are text (CSV)."""
    source, target = _name(row.get("source"), where, "source"), _name(row.get("target"), where, "target")
    if row.get("score") is None or row.get("score") == "":
        raise DatasetError(
            f"{where}: score: missing (a source not scored on a target is left out of the table, not given an "
            "empty score)"
        )
    score = _number(row["score"], where, "score", text)
    table.add(source, target, Score(score, _count(row.get("n"), where, text), where))


def add_wide_row(
    table: ScoreTable,
    source: Any,
    cells: Mapping[str, Any],
    where: str,
    place: Callable[[str], str],
    text: bool = False,
) -> None:
    """One source's row of a wide table: an empty cell or null is no score. `place` names a target's cell; `text`:
    the cells are text (CSV)."""
    source = _name(source, where, "source")
    for target, value in cells.items():
        target = _name(target, where, "target")
        table.name(source, target)
        if value is not None and not (text and value == ""):
            cell = place(target)
            table.add(source, target, Score(_number(value, cell, "score", text), None, cell))


def _read_csv(table: ScoreTable, path: Path) -> None:
    header: list[str] | None = None
    for line, row in iter_csv(path):
        where = f"{path}:{line}"
        if header is None:
            header = list(row)
            if not (set(LONG_COLUMNS) <= set(header) or header[:1] == ["source"]):
                raise DatasetError(
                    f"{path}:1: expected columns source, target, score[, n] (long form) or source and one column "
                    f"per target (wide form); found {', '.join(header)}"
                )
        if set(LONG_COLUMNS) <= set(header):
            add_long_row(table, row, where, text=True)
        else:
            cells = {k: v for k, v in row.items() if k != "source"}
            place = lambda target, where=where: f"{where}: {target}"  # noqa: E731
            add_wide_row(table, row["source"], cells, where, place, text=True)
    if header is None:
        raise DatasetError(f"{path}: no rows")


def _read_eval(table: ScoreTable, data: dict, path: Path, source: str) -> None:
    subsets = data.get("subsets")
    if not isinstance(subsets, dict) or not subsets:
        raise DatasetError(f"{path}: subsets: expected the per-subset accuracies of `charter eval rm`")
    for target, acc in subsets.items():
        where = f"{path}: subsets.{target}"
        if not isinstance(acc, dict):
            raise DatasetError(f"{where}: expected an object with accuracy and n")
        table.name(source, str(target))
        if acc.get("accuracy") is None:
            failed = acc.get("failures")
            table.failed[(source, str(target))] = (
                f"every comparison failed ({failed} failed)" if failed else "no pair scored"
            )
            continue
        table.add(
            source, str(target), Score(_number(acc["accuracy"], where, "accuracy"), _count(acc.get("n"), where), where)
        )


def _read_json(table: ScoreTable, path: Path, source: str | None) -> None:
    try:
        data = orjson.loads(read_text_file(path, DatasetError, "JSON file"))
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON: {exc}") from None
    if isinstance(data, dict) and "subsets" in data:
        return _read_eval(table, data, path, source or path.stem)
    if source is not None:
        raise DatasetError(f"{source}={path}: NAME= is for a `charter eval rm` summary (this file has no subsets)")
    if isinstance(data, list):
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise DatasetError(f"{path}: [{i}]: expected an object with source, target and score")
            add_long_row(table, row, f"{path}: [{i}]")
        return None
    if isinstance(data, dict):
        for name, cells in data.items():
            if not isinstance(cells, dict):
                raise DatasetError(f"{path}: {name}: expected an object of target -> score")
            add_wide_row(table, name, cells, f"{path}: {name}", lambda target, name=name: f"{path}: {name}.{target}")
        return None
    raise DatasetError(f"{path}: expected a list of rows, an object of source -> target -> score, or an eval summary")


def split_named(spec: str) -> tuple[str | None, Path]:
    """`NAME=PATH` -> (NAME, PATH); a plain path (or one that exists with `=` in it) -> (None, PATH)."""
    name, sep, rest = spec.partition("=")
    if sep and name and rest and not Path(spec).exists() and "/" not in name:
        return name, Path(rest)
    return None, Path(spec)


def read_file(table: ScoreTable, spec: str | Path) -> None:
    """Add the scores of one file (`NAME=PATH` names the source of an eval summary)."""
    from charter.hub.croissant import sha256

    name, path = split_named(spec) if isinstance(spec, str) else (None, Path(spec))
    if path.suffix not in SCORE_SUFFIXES:
        raise DatasetError(f"{path}: expected a .csv, .json or .jsonl score table")
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    if name is not None and path.suffix != ".json":
        raise DatasetError(f"{spec}: NAME= is for a `charter eval rm` summary (a .json file)")
    if path.suffix == ".csv":
        _read_csv(table, path)
    elif path.suffix == ".jsonl":
        for line, row in iter_jsonl(path):
            add_long_row(table, row, f"{path}:{line}")
    else:
        _read_json(table, path, name)
    table.files.append((str(path), sha256(path)))


def read_scores(scores: Any) -> ScoreTable:
    """The score table from a file, a list of files, a `{source: {target: score}}` mapping or a list of long rows.

    Raises:
        DatasetError: A file cannot be read or holds a bad row (named by file and line or key); the table is empty.
    """
    table = ScoreTable()
    if isinstance(scores, str | Path):
        read_file(table, scores)
    elif isinstance(scores, Mapping):
        for name, cells in scores.items():
            if not isinstance(cells, Mapping):
                raise DatasetError(f"scores[{name!r}]: expected a mapping of target -> score")
            add_wide_row(
                table, name, cells, f"scores[{name!r}]", lambda target, name=name: f"scores[{name!r}][{target!r}]"
            )
    elif isinstance(scores, Sequence):
        for i, item in enumerate(scores):
            if isinstance(item, str | Path):
                read_file(table, item)
            elif isinstance(item, Mapping):
                add_long_row(table, item, f"scores[{i}]")
            else:
                raise DatasetError(f"scores[{i}]: expected a file or a row with source, target and score")
    if not table.scores:
        raise DatasetError("the score table holds no score")
    return table
