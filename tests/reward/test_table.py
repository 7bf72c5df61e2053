"""The table of scorings is the one place a scoring is named: no module of the package writes a scoring's name as a
string literal where it lists, checks or defaults a scoring (its entry's own `ScoringEntry("name", ...)` aside)."""

from __future__ import annotations

import ast
from pathlib import Path

import charter
from charter.reward.function import TABLE

PACKAGE = Path(charter.__file__).parent
#: What else a reward can rest on beside the table's scorings: online DPO's pairs and the adapters' other parts.
OTHER_BASES = {"pair", "verify", "reward_model"}
#: The evaluations' own `scoring` (`pair` or `checklist`: how a win rate or an arena judges two answers) is how a judge
#: compares, not a reward scoring: the judge's table of modes and kinds owns it.
NOT_REWARDS = ("evals",)


def _says_scoring(node: ast.AST) -> bool:
    """Whether an expression names a scoring: a name or attribute spelled `scoring` or `basis` (any case)."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "scoring" in name.lower() or name.lower() == "basis"


def _names_in(node: ast.AST, names: set[str]) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in names]


def _a_list_of_scorings(node: ast.Tuple | ast.List | ast.Set, names: set[str]) -> bool:
    texts = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return len(set(texts) & names) >= 2 and set(texts) <= names | OTHER_BASES


def _is_literal(node: ast.AST) -> bool:
    value = node.value if isinstance(node, ast.Subscript) else None
    return isinstance(value, ast.Name | ast.Attribute) and getattr(value, "id", getattr(value, "attr", "")) == "Literal"


def scoring_literals(source: str, names: set[str]) -> set[tuple[int, str]]:
    """Where `source` writes a scoring's name as a literal that lists, checks or defaults a scoring (line, name)."""
    found: set[tuple[int, str]] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        hits: list[str] = []
        if isinstance(node, ast.Compare) and any(_says_scoring(x) for x in [node.left, *node.comparators]):
            hits = _names_in(node, names)  # scoring == "rank", scoring in ("group", "rank")
        elif isinstance(node, ast.Tuple | ast.List | ast.Set) and _a_list_of_scorings(node, names):
            hits = _names_in(node, names)  # a hand-written list of scorings (not columns that share a name)
        elif (
            isinstance(node, ast.Dict) and len({k.value for k in node.keys if isinstance(k, ast.Constant)} & names) >= 2
        ):
            hits = [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
        elif _is_literal(node) and len(set(_names_in(node, names))) >= 2:
            hits = _names_in(node, names)  # Literal["score", "group", ...]
        elif isinstance(node, ast.AnnAssign) and _says_scoring(node.target):
            hits = _names_in(node.value, names) if node.value is not None else []
            hits += _names_in(node.annotation, names)
        elif isinstance(node, ast.Assign) and any(_says_scoring(t) for t in node.targets):
            hits = _names_in(node.value, names)
        elif isinstance(node, ast.arguments):
            pairs = list(zip(reversed(node.args), reversed(node.defaults))) + [
                (a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults) if d is not None
            ]
            found |= {(d.lineno, h) for arg, d in pairs if "scoring" in arg.arg for h in _names_in(d, names)}
        elif isinstance(node, ast.Call):
            hits = [h for kw in node.keywords if kw.arg and "scoring" in kw.arg for h in _names_in(kw.value, names)]
        found |= {(getattr(node, "lineno", 0), h) for h in hits}
    return found


def test_no_module_names_a_scoring_outside_the_table() -> None:
    names = set(TABLE)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in NOT_REWARDS:
            continue
        for line, name in sorted(scoring_literals(path.read_text(), names)):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name!r}")
    assert offenders == []


def test_the_scan_finds_each_way_of_naming_a_scoring() -> None:
    names = {"score", "group", "rank"}
    source = """
from typing import Literal
Kind = Literal["score", "group"]
ALL = ("score", "rank")
COLUMNS = ("model", "score", "rank")
LABELS = {"score": 1, "group": 2}
def f(scoring: str = "rank") -> None:
    if scoring == "group":
        pass
    g(scoring="score")
class C:
    scoring: str = "score"
mode = "score"  # a judge mode of the same name: not a scoring
"""
    assert scoring_literals(source, names) == set(
        [(3, "score"), (3, "group"), (4, "score"), (4, "rank"), (6, "score"), (6, "group"), (7, "rank"),
         (8, "group"), (10, "score"), (12, "score")]
    )  # fmt: skip
