"""No source file outside the table of modes names a judge mode as a string literal where a mode is meant: no
`mode == "..."` branch, no mode written as a default, a keyword argument, a config value or a failure's kind. Every
such use reads the table (`charter.judge.modes`: its entries, `DEFAULT_MODE`, `pairwise_modes()`, ...), so that a new
mode is one entry in one module."""

from __future__ import annotations

import ast
from pathlib import Path

from charter.judge.modes import MODES

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "charter"
TABLE = PACKAGE / "judge" / "modes.py"
#: Names that hold a judge mode, or the way a rating is read.
MODE_WORDS = ("mode", "rating")


def _means_mode(name: str) -> bool:
    return any(word in name.lower() for word in MODE_WORDS)


def _mode_literals(node: ast.AST | None) -> list[str]:
    """The mode names `node` writes as literals: a string, or strings in a tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODES:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [found for element in node.elts for found in _mode_literals(element)]
    if isinstance(node, ast.BoolOp):  # `mode or "logprobs"`
        return [found for value in node.values for found in _mode_literals(value)]
    if isinstance(node, ast.IfExp):
        return _mode_literals(node.body) + _mode_literals(node.orelse)
    if isinstance(node, ast.Call) and node.args:  # typer.Option("logprobs", "--mode")
        return _mode_literals(node.args[0])
    return []


def mode_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) for each judge mode's name that `source` writes where a mode is meant."""
    found: list[tuple[int, ast.AST]] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_means_mode(ast.unparse(side)) for side in sides if not _mode_literals(side)):
                found += [(node.lineno, side) for side in sides]
        elif isinstance(node, ast.keyword) and node.arg is not None and _means_mode(node.arg):
            found.append((node.value.lineno, node.value))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.posonlyargs + node.args.args
            defaults = list(zip(args[len(args) - len(node.args.defaults) :], node.args.defaults))
            defaults += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            found += [(default.lineno, default) for arg, default in defaults if _means_mode(arg.arg)]
            if _means_mode(node.name):
                found += [(n.lineno, n.value) for n in ast.walk(node) if isinstance(n, ast.Return) and n.value]
        elif isinstance(node, ast.AnnAssign) and node.value is not None and _means_mode(ast.unparse(node.target)):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Assign) and any(_means_mode(ast.unparse(t)) for t in node.targets):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "Failure":
            found += [(k.value.lineno, k.value) for k in node.keywords if k.arg == "kind"]  # a mode as failure kind
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and _means_mode(key.value):
                    found.append((value.lineno, value))
    return sorted({(line, literal) for line, node in found for literal in _mode_literals(node)})


def test_the_scan_finds_a_mode_named_outside_the_table() -> None:
    [name, other, *_] = MODES
    source = f"""
def judge(settings, mode=None):
    if settings.mode == {name!r}:
        return 1
    if mode in ({name!r}, {other!r}):
        return 2
    pick(judge_mode={other!r})
    return {{"mode": {name!r}}}


def default_mode(scoring):
    return {name!r} if scoring else {other!r}


class Config:
    mode: str = {name!r}


failure = records.Failure(kind={name!r}, message="no score")
"""
    expected = [(3, name), (5, name), (5, other), (7, other), (8, name), (12, name), (12, other), (16, name)]
    expected.append((19, name))
    assert mode_literals(source) == sorted(expected)
    assert mode_literals(f"column = {name!r}\nreply = {{'verdict': 'yes', 'score': 3}}\n") == []
    assert mode_literals("Failure(kind='provider', message='x')\nFailure(kind=entry.name, message=x)\n") == []


def test_no_source_file_outside_the_table_names_a_mode() -> None:
    named = {
        f"{path.relative_to(PACKAGE.parent)}:{line}": literal
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != TABLE
        for line, literal in mode_literals(path.read_text(encoding="utf-8"))
    }
    assert named == {}, "name the mode through the table (charter.judge.modes), not as a string literal"
