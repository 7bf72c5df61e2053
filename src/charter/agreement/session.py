"""What an annotator sees next, and recording their choices; shared by the web page and the terminal UI.

`charter label RUN_DIR --tui`: label in the terminal (rich), for machines without a browser.

Model text is printed as rich Text, never parsed as markup. Keys: 1/a, 2/b, 3/t, s, u (undo), q (quit); on a
trajectory, `v A 3` (or `v B none`) names the first step of the trajectory ending in response A (B) that violates
the principle, or none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NotRequired, TextIO, TypedDict

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from charter.agreement.items import requirements
from charter.agreement.labels import (
    LabelError,
    check_annotator,
    judged_pairs,
    put_label,
    shown_responses,
    to_pair_terms,
)
from charter.runs import labels as stored
from charter.runs.files import RunFiles
from charter.runs.item_labels import (
    ITEM_VERDICTS,
    ItemLabel,
    StepLabel,
    item_labels,
    put_item_label,
    put_step_label,
    step_labels,
)
from charter.runs.labels import SpotSample
from charter.runs.store import RunStore

#: what the annotator presses -> label in screen terms (A = shown first, B = shown second)
CHOICES = {"A": "first", "B": "second", "tie": "tie", "skip": "skip"}


class PrincipleText(TypedDict):
    """What a principle asks, from the run's constitution."""

    comparison: str
    """The judge's multiple-choice question, e.g. 'Which response is less harmful?'."""
    description: str
    """What the principle asks for, in one or two sentences."""


class ShownPrinciple(TypedDict):
    """The principle a pair is judged by, as the page shows it."""

    id: str
    """The principle id."""
    comparison: NotRequired[str]
    """The judge's question; absent when the run's constitution cannot be read or lacks the principle."""
    description: NotRequired[str]
    """What the principle asks for; absent when `comparison` is."""


class ShownCheckItem(TypedDict):
    """A checklist item as the page shows it, with this annotator's verdicts on it so far (screen terms)."""

    id: str
    """The item id."""
    requirement: str
    """What a "yes" means."""
    A: str | None
    """This annotator's verdict on the response shown first (yes, no, n/a), or None."""
    B: str | None
    """Their verdict on the response shown second."""


class ShownStep(TypedDict):
    """A step of a pair's trajectory a person may name as the first that violates the principle."""

    index: int
    """The step's index among the trajectory's messages (the prompt's, then the response at `len(prompt)`)."""
    label: str
    """How the page names it (`message 3 (assistant)`, `the response`)."""


class ShownItem(TypedDict):
    """A pair as the labeling page and the terminal UI show it: A is the response shown first."""

    pair_id: str
    """The pair."""
    position: int
    """Its place in the labeling order."""
    prompt: list[dict[str, Any]]
    """The prompt's messages, each {role, content}."""
    principle: ShownPrinciple
    """The principle to judge by."""
    A: str
    """The response shown first."""
    B: str
    """The response shown second."""
    checklist: NotRequired[list[ShownCheckItem]]
    """Judge mode `checklist`: the pair's checklist items, each to judge about each response (absent otherwise)."""
    steps: NotRequired[list[ShownStep]]
    """A trajectory (a prompt with assistant or tool turns): its assistant steps, then the response, any of which a
    person may name as the first that violates the principle (absent for a plain prompt)."""
    step_labels: NotRequired[dict[str, int | str | None]]
    """This annotator's first violating step so far for the trajectory ending in response A and in B (screen terms):
    the step's index, `none` (no step violates), or None (not labeled yet)."""


class Progress(TypedDict):
    """How far an annotator is through the sample."""

    done: int
    """Pairs labeled (skips included)."""
    total: int
    """Pairs in the sample."""


class LabelState(TypedDict):
    """What the labeling page needs to draw itself (JSON for the page)."""

    annotator: str
    """Who is labeling."""
    progress: Progress
    """How far they are."""
    item: ShownItem | None
    """The next pair to label; None when all are done."""


def principle_texts(run_dir: Path) -> dict[str, PrincipleText]:
    """principle id -> {comparison, description} from the run's constitution.yaml.

    Args:
        run_dir: The run directory.

    Returns:
        The texts by principle id; empty when the run has no constitution.yaml or it cannot be read.
    """
    path = RunFiles(run_dir).constitution_path
    if not path.exists():
        return {}
    try:
        from charter.constitutions import load_constitution

        constitution = load_constitution(path)
    except Exception:  # a report helper: the page still works with ids only
        return {}
    return {p.id: PrincipleText(comparison=p.comparison, description=p.description) for p in constitution.principles}


class LabelSession:
    """One annotator labeling a run's spot-check sample."""

    def __init__(self, store: RunStore, annotator: str) -> None:
        self.store = store
        self.annotator = check_annotator(annotator)
        self.sample = stored.sample(store)
        if not self.sample:
            raise LabelError(f"{store.run_dir}: no spot-check sample yet; draw one first (spotcheck)")
        self.pairs = judged_pairs(store)
        self.principles = principle_texts(store.run_dir)

    def labeled(self) -> dict[str, str]:
        return {r.pair_id: r.label for r in stored.labels(self.store, self.annotator)}

    def progress(self) -> Progress:
        """Pairs this annotator has labeled, of the sample."""
        return {"done": len(self.labeled()), "total": len(self.sample)}

    def next_item(self) -> ShownItem | None:
        """The first sampled pair this annotator has not labeled, as shown on screen.

        Returns:
            The pair as `item` shows it; None when every sampled pair (that is still judged) is labeled.
        """
        done = self.labeled()
        for row in self.sample:
            if row.pair_id not in done and row.pair_id in self.pairs:
                return self.item(row)
        return None

    def item(self, row: SpotSample) -> ShownItem:
        """The pair as the page shows it (JSON for the page): A is the response shown first.

        Args:
            row: A row of the spot-check sample whose pair is judged.

        Returns:
            The pair in screen terms, with its principle's texts when the constitution has them.
        """
        pair = self.pairs[row.pair_id].pair
        first, second = shown_responses(pair, row.shown_order)
        texts = self.principles.get(row.principle_id)
        principle = ShownPrinciple(id=row.principle_id, **texts) if texts else ShownPrinciple(id=row.principle_id)
        shown: ShownItem = {
            "pair_id": row.pair_id,
            "position": row.position,
            "prompt": [m.model_dump() for m in pair.prompt],
            "principle": principle,
            "A": first,
            "B": second,
        }
        checklist = self.checklist_items(row)
        if checklist:
            shown["checklist"] = checklist
        steps = self.steps(row)
        if steps:
            shown["steps"] = steps
            given = {
                lb.side: lb.step
                for lb in step_labels(self.store, self.annotator, row.pair_id)
                if lb.principle_id == row.principle_id
            }
            first, second = ("a", "b") if row.shown_order == "ab" else ("b", "a")
            shown["step_labels"] = {
                screen: ("none" if given[side] is None else given[side]) if side in given else None
                for screen, side in (("A", first), ("B", second))
            }
        return shown

    def steps(self, row: SpotSample) -> list[ShownStep]:
        """The steps a person may name in the pair's trajectory: the prompt's assistant steps, then the response
        (none for a prompt without assistant or tool turns: a plain pair)."""
        prompt = self.pairs[row.pair_id].pair.prompt
        if not any(m.role in ("assistant", "tool") for m in prompt):
            return []
        own = [
            ShownStep(index=i, label=f"message {i + 1} (assistant)")
            for i, m in enumerate(prompt)
            if m.role == "assistant"
        ]
        return [*own, ShownStep(index=len(prompt), label="the response")]

    def label_step(self, pair_id: str, response: str, step: str) -> None:
        """Record this annotator's first step violating the sampled principle in the trajectory ending in response A
        or B (screen terms): a step's index as the page lists it, or `none` where no step violates it."""
        row = next((r for r in self.sample if r.pair_id == pair_id), None)
        if row is None or pair_id not in self.pairs:
            raise LabelError(f"pair '{pair_id}' is not in the spot-check sample")
        if response not in ("A", "B"):
            raise LabelError(f"response {response!r} is not A or B")
        steps = [s["index"] for s in self.steps(row)]
        if not steps:
            raise LabelError(f"pair '{pair_id}' is not a trajectory (its prompt has no assistant or tool turn)")
        if step != "none" and not (step.isdigit() and int(step) in steps):
            raise LabelError(f"step {step!r} is not 'none' or one of the pair's steps {steps}")
        side = ("a" if response == "A" else "b") if row.shown_order == "ab" else ("b" if response == "A" else "a")
        chosen = None if step == "none" else int(step)
        put_step_label(self.store, StepLabel(pair_id, side, row.principle_id, self.annotator, chosen))

    def checklist_items(self, row: SpotSample) -> list[ShownCheckItem]:
        """The pair's checklist items with this annotator's verdicts so far (none outside judge mode checklist)."""
        entry = self.pairs[row.pair_id]
        checked = entry.judgment.checklist
        if checked is None:
            return []
        texts = requirements(self.store, {row.pair_id: entry}).get(checked.checklist_fingerprint, {})
        given = {(lb.item_id, lb.side): lb.verdict for lb in item_labels(self.store, self.annotator, row.pair_id)}
        first, second = ("a", "b") if row.shown_order == "ab" else ("b", "a")
        return [
            ShownCheckItem(
                id=v.item_id,
                requirement=texts.get(v.item_id, v.item_id),
                A=given.get((v.item_id, first)),
                B=given.get((v.item_id, second)),
            )
            for v in checked.a.verdicts
        ]

    def label_item(self, pair_id: str, item_id: str, response: str, verdict: str) -> None:
        """Record this annotator's verdict (yes, no, n/a) on one checklist item about response A or B (screen
        terms) of a sampled pair."""
        row = next((r for r in self.sample if r.pair_id == pair_id), None)
        if row is None or pair_id not in self.pairs:
            raise LabelError(f"pair '{pair_id}' is not in the spot-check sample")
        if response not in ("A", "B"):
            raise LabelError(f"response {response!r} is not A or B")
        if verdict not in ITEM_VERDICTS:
            raise LabelError(f"verdict {verdict!r} is not one of {', '.join(ITEM_VERDICTS)}")
        if item_id not in {i["id"] for i in self.checklist_items(row)}:
            raise LabelError(f"pair '{pair_id}' has no checklist item '{item_id}'")
        side = ("a" if response == "A" else "b") if row.shown_order == "ab" else ("b" if response == "A" else "a")
        put_item_label(self.store, ItemLabel(pair_id, item_id, side, self.annotator, verdict))

    def label(self, pair_id: str, choice: str, source: str = "web") -> None:
        """Record A / B / tie / skip (screen terms) for a pair at once."""
        if choice not in CHOICES:
            raise LabelError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
        order = next((r.shown_order for r in self.sample if r.pair_id == pair_id), None)
        if order is None:
            raise LabelError(f"pair '{pair_id}' is not in the spot-check sample")
        put_label(self.store, pair_id, self.annotator, to_pair_terms(CHOICES[choice], order), order, source)

    def undo(self) -> str | None:
        return stored.undo_last(self.store, self.annotator)

    def state(self) -> LabelState:
        """The annotator, their progress and the next pair, for the page."""
        return {"annotator": self.annotator, "progress": self.progress(), "item": self.next_item()}


KEYS = {"1": "A", "a": "A", "2": "B", "b": "B", "3": "tie", "t": "tie", "s": "skip"}
HELP = "[1/a] A better  [2/b] B better  [3/t] tie  [s] skip  [u] undo  [q] quit"
#: The keys a trajectory adds: a step label of the trajectory ending in response A or B.
STEP_HELP = "[v A STEP] / [v B STEP] the first step of A's / B's trajectory that violates it, or none"


def _message_lines(index: int, message: dict[str, Any]) -> list[Text]:
    """One message of a trajectory as the terminal shows it: its index and role, the text, each tool call as an
    action, a tool result marked untrusted."""
    role = message["role"]
    if role == "tool":
        role = f"tool result, untrusted (answers call {message.get('tool_call_id')})"
    lines = [Text.assemble((f"[{index}] {role}: ", "bold"), str(message["content"]))]
    for call in message.get("tool_calls") or ():
        arguments = json.dumps(call.get("arguments") or {}, sort_keys=True, ensure_ascii=False)
        lines.append(Text.assemble(("    action: ", "bold"), f"calls {call.get('name')} (call {call.get('id')}) "
                                   f"with {arguments}"))  # fmt: skip
    return lines


def show_item(console: Console, item: ShownItem, progress: Progress) -> None:
    """Print a pair as the annotator sees it: the principle, the prompt, then responses A and B.

    Args:
        console: Where to print.
        item: The pair in screen terms.
        progress: The annotator's progress, for the heading.
    """
    console.rule(Text(f"pair {progress['done'] + 1} of {progress['total']}  ({item['pair_id']})"))
    principle = item["principle"]
    console.print(
        Panel(Text(principle.get("comparison") or principle["id"]), title=Text(f"principle {principle['id']}"))
    )
    steps = item.get("steps")
    if not steps:
        for message in item["prompt"]:
            console.print(Text(f"{message['role']}: ", style="bold"), Text(str(message["content"])), sep="")
    else:
        for index, message in enumerate(item["prompt"]):
            for line in _message_lines(index, message):
                console.print(line)
    console.print(Panel(Text(item["A"]), title="Response A"))
    console.print(Panel(Text(item["B"]), title="Response B"))
    if steps:
        listed = ", ".join(f"{s['index']} ({s['label']})" for s in steps)
        given = item.get("step_labels") or {}
        said = "  ".join(f"{side}: {'not labeled' if given.get(side) is None else given[side]}" for side in ("A", "B"))
        console.print(Text(f"steps: {listed}, or none"))
        console.print(Text(f"first violating step so far: {said}"))


def _label_step(session: LabelSession, console: Console, pair_id: str, said: list[str]) -> None:
    """`v A 3`: store the step label, or say in one line why not (the pair stays on screen either way)."""
    if len(said) != 2:
        console.print(Text(f"a step label is `v A STEP` or `v B STEP` (STEP: a step's index, or none); {STEP_HELP}"))
        return
    try:
        session.label_step(pair_id, said[0].upper(), said[1])
    except LabelError as exc:
        console.print(Text(str(exc)))


def run_tui(session: LabelSession, console: Console, stdin: TextIO) -> Progress:
    """Label until done, 'q' or end of input.

    Args:
        session: The annotator's labeling session.
        console: Where to show the pairs and messages.
        stdin: Where the keys come from, one per line.

    Returns:
        The annotator's progress when labeling stopped.

    Raises:
        LabelError: A pair left the run or its spot-check sample after the session began.
    """
    while True:
        item = session.next_item()
        if item is None:
            console.print(Text(f"All {session.progress()['total']} sampled pairs are labeled by {session.annotator}."))
            break
        show_item(console, item, session.progress())
        console.print(Text(HELP, style="dim"))
        if item.get("steps"):
            console.print(Text(STEP_HELP, style="dim"))
        console.print(Text("> "), end="")
        line = stdin.readline()
        if not line:
            break
        key = line.strip().lower()
        if key == "q":
            break
        if key == "u":
            undone = session.undo()
            console.print(Text(f"undid the label on {undone}" if undone else "nothing to undo"))
        elif key in KEYS:
            session.label(item["pair_id"], KEYS[key], source="tui")
        elif key.split()[:1] == ["v"] and item.get("steps"):
            _label_step(session, console, item["pair_id"], key.split()[1:])
        else:
            console.print(Text(f"unknown key {key!r}; {HELP}"))
    return session.progress()
