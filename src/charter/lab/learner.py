"""What the lab's two learners from people's pairs share (`charter.lab.infer`, a constitution;
`charter.lab.rubrics`, a rubric): the seeded split, the tally of a run, the common part of their reports, and the
files they write."""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from charter.constitutions.schema import Constitution
from charter.errors import ArgumentError
from charter.lab.votes import LabelledPair
from charter.records import Record

#: Fewer labelled pairs than this teach nothing that a held-out split could confirm.
MIN_PAIRS = 10


class AgreementEstimate(Record):
    """An agreement with people (or a difference of two) over pairs, with its 95% interval."""

    value: float | None
    ci: list[float] | None
    n: int


def estimate_text(estimate: AgreementEstimate | None, signed: bool = False) -> str:
    """`0.812 [0.700, 0.900] (n=40)`; `n/a` where there is no value."""
    if estimate is None or estimate.value is None:
        return "n/a"
    fmt = "+.3f" if signed else ".3f"
    ci = f" [{estimate.ci[0]:{fmt}}, {estimate.ci[1]:{fmt}}]" if estimate.ci else ""
    return f"{estimate.value:{fmt}}{ci} (n={estimate.n})"


E = TypeVar("E", bound=AgreementEstimate)


class LabReport(Record, ABC, Generic[E]):
    """What a learner from people's pairs reports of every run: the split, the models, the proposals, the
    held-out agreement (an estimate of kind `E`) and the cost."""

    pairs: int
    """Human-labelled pairs used."""
    train_pairs: int
    test_pairs: int
    proposer: str
    judge: str
    seed: int
    proposals_failed: int
    """Proposer replies that were not the JSON asked for (recorded, not guessed at)."""
    candidates_raw: int
    """Candidates proposed, the rejected ones included."""
    candidates_rejected: int = 0
    """Proposed candidates the screen rejected (`rejected` says why), left out before deduplication."""
    rejected: list[str] = []
    """Each rejected candidate, as `reason: text`."""
    held_out: E
    """The learned constitution's agreement with people on the held-out pairs (a tie counts half; no value when
    nothing was learned)."""
    judge_calls: int
    proposer_calls: int
    wall_s: float
    constitution_hash: str
    """The written constitution's hash; empty when nothing was learned and none was made."""

    made_by: ClassVar[str]
    """How the constitution was made, as a sentence's start: `Inferred by charter constitutions infer`."""

    @abstractmethod
    def markdown(self) -> str:
        """The report page."""

    @abstractmethod
    def learned_lines(self) -> list[str]:
        """The summary's opening: what was learned, a line for each principle or criterion."""

    @abstractmethod
    def compared_lines(self) -> list[str]:
        """The summary's close: what the learned constitution is compared with on the held-out pairs."""

    def summary_lines(self) -> list[str]:
        """A few terminal lines."""
        held_out = f"held-out agreement with people: {estimate_text(self.held_out)}"
        return [*self.learned_lines(), held_out, *self.compared_lines()]

    def header(self) -> str:
        """The first lines of the written constitution: how it was made, and how it fared with people."""
        return (
            f"{self.made_by} from {self.pairs} human-labelled pairs (proposer {self.proposer}, judge {self.judge}, "
            f"seed {self.seed}); held-out agreement with people {estimate_text(self.held_out)}."
        )

    def rejected_table(self, heading: str) -> list[str]:
        """The report page's section of the candidates the screen rejected (none where there are none)."""
        if not self.rejected:
            return []
        rows = [f"| {reason} | {cell(text)} |" for reason, text in (r.split(": ", 1) for r in self.rejected)]
        return ["", f"## {heading}", "", "| reason | candidate |", "|---|---|", *rows]


R = TypeVar("R", bound=LabReport[Any])


@dataclass
class Learned(Generic[R]):
    """A constitution learned from people's pairs, and its report."""

    constitution: Constitution
    report: R


def split(pairs: list[LabelledPair], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train and held-out indices."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_test = max(1, round(len(pairs) * test_fraction))
    return sorted(order[n_test:]), sorted(order[:n_test])


@dataclass(frozen=True)
class LearnOptions:
    """What both learners take from their caller (the public `charter.infer_constitution` and
    `charter.learn_rubrics` hold the defaults)."""

    proposals: int
    """Training pairs the proposer is asked about."""
    per_pair: int
    """Candidates asked for per pair."""
    test_fraction: float
    """Share of the pairs held out."""
    seed: int
    """Seed of the split, the sample asked, the calls and the intervals."""
    concurrency: int
    """Calls in flight at once."""
    name: str
    """The learned constitution's name."""


@dataclass
class LearnerRun:
    """One learner's run as it goes: the split of the pairs, the training pairs the proposer is asked about, what
    it proposed and the judge calls; `report_fields` makes them the common part of its report (`LabReport`)."""

    pairs: list[LabelledPair]
    options: LearnOptions
    train: list[int]
    test: list[int]
    started: float = field(default_factory=time.perf_counter)
    asked: list[int] = field(default_factory=list)
    """Training pairs the proposer was asked about, in pair order."""
    failed: int = 0
    """Proposer replies that were not usable."""
    raw: int = 0
    """Candidates proposed."""
    rejected: list[str] = field(default_factory=list)
    """Candidates the screen rejected, as `reason: text`."""
    judge_calls: int = 0

    @classmethod
    def start(cls, pairs: list[LabelledPair], options: LearnOptions, learning: str) -> LearnerRun:
        """A run over `pairs`, split; `learning` names it in the error for too few pairs."""
        if len(pairs) < MIN_PAIRS:
            raise ArgumentError("pairs", f"{len(pairs)} labelled pairs: {learning} needs at least {MIN_PAIRS}")
        return cls(pairs, options, *split(pairs, options.test_fraction, options.seed))

    def ask(self) -> list[LabelledPair]:
        """The training pairs the proposer is asked about: a seeded sample of at most `proposals`, in pair order."""
        sample = random.Random(self.options.seed).sample(self.train, min(self.options.proposals, len(self.train)))
        self.asked = sorted(sample)
        return [self.pairs[i] for i in self.asked]

    def report_fields(self, proposer: str, judge: str, made: Constitution | None) -> dict[str, Any]:
        """The fields of `LabReport` but `held_out`, as the run counted them; `made` is the constitution written."""
        return {
            "pairs": len(self.pairs),
            "train_pairs": len(self.train),
            "test_pairs": len(self.test),
            "proposer": proposer,
            "judge": judge,
            "seed": self.options.seed,
            "proposals_failed": self.failed,
            "candidates_raw": self.raw,
            "candidates_rejected": len(self.rejected),
            "rejected": self.rejected,
            "judge_calls": self.judge_calls,
            "proposer_calls": len(self.asked),
            "wall_s": round(time.perf_counter() - self.started, 1),
            "constitution_hash": made.hash if made is not None else "",
        }


def cell(text: str) -> str:
    """Text for one markdown table cell: one line, its pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def agreement_table(compared: str, interval: str, rows: list[tuple[str, AgreementEstimate | None]]) -> list[str]:
    """The report page's section of held-out agreements with people: a row for each (`name`, `estimate`) compared,
    under the column headings `compared` and `agreement [interval]`."""
    return [
        "## Held-out agreement with people",
        "",
        f"| {compared} | agreement [{interval}] |",
        "|---|---|",
        *(f"| {name} | {estimate_text(estimate)} |" for name, estimate in rows),
    ]


def write_report(report: LabReport[Any], out: Path) -> tuple[Path, Path]:
    """The report beside the constitution path `out`: `NAME.report.md` and `NAME.report.json`."""
    stem = out.with_suffix("")
    md, js = Path(f"{stem}.report.md"), Path(f"{stem}.report.json")
    md.write_text(report.markdown(), encoding="utf-8")
    js.write_text(report.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return md, js


def write_outputs(learned: Learned[Any], out: Path) -> dict[str, Path]:
    """The constitution YAML at `out` (its header says how it was made), the report beside it."""
    from charter.constitutions.importers import dump_constitution_yaml

    md, js = write_report(learned.report, out)
    dump_constitution_yaml(learned.constitution, out, header=f"{learned.report.header()} See {md.name}.")
    return {"constitution": out, "report": md, "json": js}


__all__ = [
    "MIN_PAIRS",
    "AgreementEstimate",
    "LabReport",
    "LearnOptions",
    "Learned",
    "LearnerRun",
    "agreement_table",
    "cell",
    "estimate_text",
    "split",
    "write_outputs",
    "write_report",
]
