"""A module's private names (`_x`) are its own: no module of the package imports one from another, nor reaches one
through an imported module (`from charter.judge import pairwise; pairwise._ask(...)`). A public class name is one
thing: no two modules of the package define a public class of the same name."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
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


#: Public class names deliberately defined in two modules, each with why. Empty: a name that two things need is
#: given to neither (`MonitorConfig` is the gold monitor's, the loop's is `CollapseMonitorConfig`).
TWO_DEFINITIONS_ALLOWED: dict[str, str] = {}


def _module_classes(body: list[ast.stmt]) -> Iterator[ast.ClassDef]:
    """The classes a module defines at its top level, those under a module-level `if`/`try`/`with` included."""
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, block, [])
                yield from _module_classes([s for h in inner for s in h.body] if block == "handlers" else inner)


def public_classes_defined_twice(sources: dict[str, str]) -> dict[str, list[str]]:
    """Public class name -> `module:line` of each definition, for the names more than one module defines."""
    where: dict[str, list[str]] = defaultdict(list)
    for module, source in sources.items():
        for node in _module_classes(ast.parse(source).body):
            if not _private(node.name):
                where[node.name].append(f"{module}:{node.lineno}")
    return {name: places for name, places in where.items() if len(places) > 1}


def test_no_public_class_name_is_defined_twice() -> None:
    sources = {str(p.relative_to(PACKAGE.parent)): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}
    twice = {n: p for n, p in public_classes_defined_twice(sources).items() if n not in TWO_DEFINITIONS_ALLOWED}
    assert twice == {}, "\n".join(f"{name}: {', '.join(places)}" for name, places in sorted(twice.items()))


def test_the_name_check_sees_a_class_defined_twice_and_passes_private_ones() -> None:
    sources = {
        "a.py": "class Figure:\n    pass\nclass _Tally:\n    pass\n",
        "b.py": "import x\nif x:\n    class Figure:\n        pass\nclass _Tally:\n    pass\n",
        "c.py": "def f():\n    class Figure:\n        pass\n",
    }
    assert public_classes_defined_twice(sources) == {"Figure": ["a.py:1", "b.py:3"]}
