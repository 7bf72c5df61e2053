"""A module's private names (`_x`) are its own: no module of the package imports one from another, nor reaches one
through an imported module (`from charter.judge import pairwise; pairwise._ask(...)`)."""

from __future__ import annotations

import ast
from pathlib import Path

import charter

PACKAGE = Path(charter.__file__).parent


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """The names a module binds to charter's modules, each with the module it names."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("charter.") and alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "charter":
            for alias in node.names:
                if _is_module(f"{node.module}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def private_uses(source: str, where: str) -> list[str]:
    """Where a module's `source` imports or reaches a private name of a charter module."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "charter":
            found += [f"{where}:{node.lineno}: {node.module}.{a.name}" for a in node.names if _private(a.name)]
    aliases = _module_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if _private(node.attr):
                found.append(f"{where}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    offenders = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        for hit in private_uses(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    ]
    assert offenders == [], "\n".join(offenders)


def test_the_check_sees_an_import_and_a_reach_through_a_module() -> None:
    source = (
        "from charter.reward.function import _hash, reward_function\n"
        "from charter.judge import pairwise\n"
        "import charter.judge.score as score\n"
        "pairwise._ask(1)\n"
        "pairwise.judge_pair(1)\n"
        "score._retry(2)\n"
        "x.__name__\n"
    )
    assert private_uses(source, "m.py") == [
        "m.py:1: charter.reward.function._hash",
        "m.py:4: charter.judge.pairwise._ask",
        "m.py:6: charter.judge.score._retry",
    ]
