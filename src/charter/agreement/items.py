"""Agreement part by part: people's verdicts on single checklist items (judge mode `checklist`) and people's first
violating steps of trajectories (a step-judging mode, `stepwise`), each set against the judge's on the same parts.

A person judges an item about one response on the labeling page (yes, no or n/a); that verdict is compared with the
judge's on the same item and response (a verifier's, for a verifier item). A judge verdict that failed is left out
(it is a recorded failure, not a verdict). Each item's agreement is the share of its compared verdicts that match,
with a Wilson 95% interval at the number compared.

A person names, for the trajectory ending in one response of a spot-checked pair, the first step that violates the
pair's sampled principle, or none. The judge's first violating step of that trajectory (`Judgment.first_violation_a`
or `_b`) is its answer for the principle it names: a step for that principle, none where the judge found no
violating step. Where the judge's first violating step names another principle, the judge said nothing about this
principle from that step on, so the label is left out (counted in `left_out`). Two figures per principle, each with
a Wilson 95% interval at the number compared: the share whose first violating step is the same (none and none
matching), and the share that agree on whether the trajectory violates the principle at all."""

from __future__ import annotations

import json
from collections.abc import Mapping

from charter.agreement.labels import JudgedPair
from charter.checklist.store import checklist_record
from charter.judge.modes import mode
from charter.records import Judgment, Record
from charter.runs.item_labels import ItemLabel, StepLabel, item_labels, step_labels
from charter.runs.store import RunStore
from charter.stats.intervals import wilson_interval


class ItemAgreement(Record):
    """People's agreement with the judge on one checklist item."""

    item_id: str
    """The item (`all` for every item together)."""
    requirement: str | None = None
    """What a "yes" means, where the run's checklists hold the item."""
    compared: int
    """Verdicts compared (a person's, on an item and response the judge answered)."""
    agree: int
    """Of them, those where the person and the judge gave the same verdict."""
    share: float | None
    """agree / compared; None when nothing was compared."""
    ci: tuple[float, float]
    """Wilson 95% interval of the share at `compared`."""


def requirements(store: RunStore, judged: Mapping[str, JudgedPair]) -> dict[str, dict[str, str]]:
    """Each checklist's items' requirements by item id, by the checklist's fingerprint (those the judgments used)."""
    found: dict[str, dict[str, str]] = {}
    for entry in judged.values():
        checked = entry.judgment.checklist
        if checked is None or checked.checklist_fingerprint in found:
            continue
        record = checklist_record(store, checked.checklist_fingerprint)
        items = json.loads(record)["items"] if record else []
        found[checked.checklist_fingerprint] = {item["id"]: item["requirement"] for item in items}
    return found


def judge_verdict(entry: JudgedPair, label: ItemLabel) -> str | None:
    """The judge's verdict on the labeled item and response; None where it has none, or it failed."""
    checked = entry.judgment.checklist
    if checked is None:
        return None
    side = checked.a if label.side == "a" else checked.b
    verdict = next((v.verdict for v in side.verdicts if v.item_id == label.item_id), None)
    return None if verdict in (None, "failed") else verdict


def _figure(item_id: str, requirement: str | None, matches: list[bool]) -> ItemAgreement:
    agree = sum(matches)
    return ItemAgreement(
        item_id=item_id,
        requirement=requirement,
        compared=len(matches),
        agree=agree,
        share=agree / len(matches) if matches else None,
        ci=wilson_interval(agree, len(matches)),
    )


def item_agreement(store: RunStore, judged: Mapping[str, JudgedPair]) -> list[ItemAgreement]:
    """Per item id (in the order first labeled), then `all`: people's agreement with the judge's verdicts; empty
    when nobody has judged an item."""
    texts = requirements(store, judged)
    by_item: dict[str, list[bool]] = {}
    requirement: dict[str, str | None] = {}
    for label in item_labels(store):
        entry = judged.get(label.pair_id)
        said = None if entry is None else judge_verdict(entry, label)
        if entry is None or said is None:
            continue
        by_item.setdefault(label.item_id, []).append(said == label.verdict)
        checked = entry.judgment.checklist
        assert checked is not None
        requirement.setdefault(label.item_id, texts.get(checked.checklist_fingerprint, {}).get(label.item_id))
    if not by_item:
        return []
    figures = [_figure(item_id, requirement.get(item_id), matches) for item_id, matches in by_item.items()]
    return [*figures, _figure("all", None, [m for matches in by_item.values() for m in matches])]


def items_markdown(figures: list[ItemAgreement]) -> list[str]:
    """The agreement report's section on checklist items (nothing when no item was judged)."""
    if not figures:
        return []
    lines = [
        "## By checklist item",
        "",
        "People's verdicts on single checklist items against the judge's (Wilson 95% intervals).",
        "",
        "| item | requirement | compared | agreement |",
        "|---|---|---|---|",
    ]
    for f in figures:
        share = "n/a" if f.share is None else f"{f.share:.3f} [{f.ci[0]:.3f}, {f.ci[1]:.3f}]"
        lines.append(f"| {f.item_id} | {f.requirement or ''} | {f.compared} | {share} |")
    return [*lines, ""]


class StepAgreement(Record):
    """People's agreement with the judge on trajectories' first violating steps, for one principle."""

    principle_id: str
    """The principle (`all` for every principle together)."""
    compared: int
    """Step labels compared (a person's, on a trajectory the judge judged step by step)."""
    same_step: int
    """Of them, those where the person and the judge name the same first violating step (or both none)."""
    step_share: float | None
    """same_step / compared; None when nothing was compared."""
    step_ci: tuple[float, float]
    """Wilson 95% interval of step_share at `compared`."""
    same_verdict: int
    """Of them, those where the person and the judge agree whether the trajectory violates the principle at all."""
    verdict_share: float | None
    """same_verdict / compared; None when nothing was compared."""
    verdict_ci: tuple[float, float]
    """Wilson 95% interval of verdict_share at `compared`."""
    left_out: int = 0
    """Labels left out: the judge's first violating step names another principle, so its step for this one is not
    known."""


#: The judge's answer for one principle: a step, None for no violating step; `UNKNOWN` where it is not known.
UNKNOWN = -1


def judges_steps(judgment: Judgment) -> bool:
    """Whether the judgment's mode judges trajectories step by step (its kind's subject is a step)."""
    try:
        return mode(judgment.mode).kind.subject == "step"
    except ValueError:  # a mode this charter does not have: not a step judgment it can read
        return False


def judge_step(judgment: Judgment, label: StepLabel) -> int | None:
    """The judge's first step of the labeled trajectory violating the labeled principle: a step, None for none,
    `UNKNOWN` where its first violating step names another principle."""
    found = judgment.first_violation_a if label.side == "a" else judgment.first_violation_b
    if found is None:
        return None
    return found.step if found.principle_id == label.principle_id else UNKNOWN


def _steps_figure(principle_id: str, pairs: list[tuple[int | None, int | None]], left_out: int) -> StepAgreement:
    same_step = sum(person == judge for person, judge in pairs)
    same_verdict = sum((person is None) == (judge is None) for person, judge in pairs)
    n = len(pairs)
    return StepAgreement(
        principle_id=principle_id,
        compared=n,
        same_step=same_step,
        step_share=same_step / n if n else None,
        step_ci=wilson_interval(same_step, n),
        same_verdict=same_verdict,
        verdict_share=same_verdict / n if n else None,
        verdict_ci=wilson_interval(same_verdict, n),
        left_out=left_out,
    )


def step_agreement(store: RunStore, judged: Mapping[str, JudgedPair]) -> list[StepAgreement]:
    """Per principle (in the order first labeled), then `all`: people's first violating steps against the judge's;
    empty when nobody has labeled a step of a trajectory the judge judged step by step."""
    compared: dict[str, list[tuple[int | None, int | None]]] = {}
    left_out: dict[str, int] = {}
    for label in step_labels(store):
        entry = judged.get(label.pair_id)
        if entry is None or not judges_steps(entry.judgment):
            continue
        said = judge_step(entry.judgment, label)
        compared.setdefault(label.principle_id, [])
        if said == UNKNOWN:
            left_out[label.principle_id] = left_out.get(label.principle_id, 0) + 1
        else:
            compared[label.principle_id].append((label.step, said))
    if not compared:
        return []
    figures = [_steps_figure(pid, pairs, left_out.get(pid, 0)) for pid, pairs in compared.items()]
    every = [pair for pairs in compared.values() for pair in pairs]
    return [*figures, _steps_figure("all", every, sum(left_out.values()))]


def steps_markdown(figures: list[StepAgreement]) -> list[str]:
    """The agreement report's section on trajectory steps (nothing when no step was labeled)."""
    if not figures:
        return []
    lines = [
        "## By trajectory step",
        "",
        "People's first violating step of each labeled trajectory against the judge's, per principle: the same step",
        "(none and none matching), and the same verdict on whether the trajectory violates the principle at all",
        "(Wilson 95% intervals at n compared). Left out: the judge's first violating step names another principle.",
        "",
        "| principle | n | same first violating step | violates or not | left out |",
        "|---|---|---|---|---|",
    ]

    def cell(share: float | None, ci: tuple[float, float]) -> str:
        return "n/a" if share is None else f"{share:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    for f in figures:
        lines.append(
            f"| {f.principle_id} | {f.compared} | {cell(f.step_share, f.step_ci)} | "
            f"{cell(f.verdict_share, f.verdict_ci)} | {f.left_out} |"
        )
    return [*lines, ""]


__all__ = [
    "ItemAgreement",
    "StepAgreement",
    "item_agreement",
    "items_markdown",
    "judge_step",
    "judge_verdict",
    "judges_steps",
    "step_agreement",
    "steps_markdown",
]
