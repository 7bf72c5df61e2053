"""Agreement item by item: people's verdicts on single checklist items of spot-checked pairs (judge mode
`checklist`), set against the judge's verdicts on the same items and responses.

A person judges an item about one response on the labeling page (yes, no or n/a); that verdict is compared with the
judge's on the same item and response (a verifier's, for a verifier item). A judge verdict that failed is left out
(it is a recorded failure, not a verdict). Each item's agreement is the share of its compared verdicts that match,
with a Wilson 95% interval at the number compared."""

from __future__ import annotations

import json
from collections.abc import Mapping

from charter.agreement.labels import JudgedPair
from charter.checklist.store import checklist_record
from charter.records import Record
from charter.runs.item_labels import ItemLabel, item_labels
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


__all__ = ["ItemAgreement", "item_agreement", "items_markdown", "judge_verdict"]
