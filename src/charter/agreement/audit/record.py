"""The judge audit's record: each bias as a rate with its interval, and where the audit came from."""

from __future__ import annotations

from pydantic import Field

from charter.agreement.summary import Figure
from charter.judge_prompt import PROMPT_FORMAT
from charter.records import Record


class FlipShift(Record):
    """How a perturbation moved the judge."""

    flip: Figure
    """Share of the pairs judged correctly before the perturbation that it turned to the worse response."""
    shift: Figure
    """Mean drop in P(better) the perturbation caused, over all pairs measured (positive: toward the worse)."""


class InjectionFigures(Record):
    """One injection family in both prompt formats."""

    fenced: FlipShift
    """In the prompt format in use (format 2: responses fenced as data)."""
    unfenced: FlipShift
    """In the unfenced prompt format 1."""


class AuditReport(Record):
    """A judge audit: each bias as a rate with its 95% bootstrap interval and the pairs it rests on."""

    computed_at: str
    """When (ISO 8601, UTC)."""
    judge_model: str
    """The judge model audited."""
    judge_fingerprint: str | None = None
    """The judge settings audited, when they are a run's."""
    mode: str
    """Judge mode."""
    orders: str
    """Judge orders (the position measure always asks both)."""
    ensemble: str
    """Principles per question, in words."""
    constitution: str
    """Constitution name and short hash."""
    prompt_format: int = PROMPT_FORMAT
    """The fenced prompt format; injections are also measured in format 1 (unfenced)."""
    source: str
    """Where the pairs with a known better response came from."""
    reference: str
    """`human`: the better response is a person's choice; `judge`: the judge's own confident verdict."""
    pairs: int
    """Pairs audited."""
    seed: int
    """Seed of the sample, the shown order (one-order judges) and the bootstrap."""
    bootstrap_samples: int
    """Bootstrap resamples of pairs behind each interval."""
    clean_agreement: Figure
    """Share of unperturbed pairs where the judge picks the known better response (the reference)."""
    position_flip: Figure
    """Share of pairs whose winner changes when the order is swapped (1 - position consistency)."""
    first_shown: Figure
    """Share of single-order verdicts that picked the response shown first (0.5: no position preference)."""
    length: FlipShift
    """Padding the worse response and trimming the better one."""
    injection: dict[str, InjectionFigures] = Field(default_factory=dict)
    """Per injection family, in both prompt formats."""
    self_over_better: Figure | None = None
    """Share of pairs where the judge prefers its own answer over the known better response (if measured)."""
    self_over_worse: Figure | None = None
    """Share of pairs where the judge prefers its own answer over the known worse response (if measured)."""
    failed_pairs: int = 0
    """Pairs with at least one failed call (left out of the measures that needed it)."""
    failures: list[str] = Field(default_factory=list)
    """The first few failure messages."""
    calls: int = 0
    """Judge requests made (and generations, for self-preference), cache hits included."""
    wall_s: float = 0.0
    """Wall-clock seconds."""
    key: str = ""
    """Fingerprint of what was audited (judge settings, audit settings, pairs), to skip a repeat."""

    @property
    def calls_per_pair(self) -> float | None:
        return self.calls / self.pairs if self.pairs else None

    def worst_injection(self, fmt: str = "fenced") -> tuple[str | None, Figure | None]:
        """The injection family with the highest flip rate in a format, and that rate."""
        found = [
            (name, getattr(f, fmt).flip) for name, f in self.injection.items() if getattr(f, fmt).flip.value is not None
        ]
        if not found:
            return None, None
        return max(found, key=lambda item: item[1].value)
