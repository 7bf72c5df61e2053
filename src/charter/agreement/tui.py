"""`charter label RUN_DIR --tui`: label in the terminal (rich), for machines without a browser.

Model text is printed as rich Text, never parsed as markup. Keys: 1/a, 2/b, 3/t, s, u (undo), q (quit).
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from charter.agreement.session import LabelSession, Progress, ShownItem

KEYS = {"1": "A", "a": "A", "2": "B", "b": "B", "3": "tie", "t": "tie", "s": "skip"}
HELP = "[1/a] A better  [2/b] B better  [3/t] tie  [s] skip  [u] undo  [q] quit"


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
    for message in item["prompt"]:
        console.print(Text(f"{message['role']}: ", style="bold"), Text(str(message["content"])), sep="")
    console.print(Panel(Text(item["A"]), title="Response A"))
    console.print(Panel(Text(item["B"]), title="Response B"))


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
        else:
            console.print(Text(f"unknown key {key!r}; {HELP}"))
    return session.progress()
