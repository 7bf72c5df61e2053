"""Imports that the import-linter contract does not see: those under TYPE_CHECKING and into the package face, private
names taken from another package, and the trainers' shared base."""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import charter
from charter._version import __version__

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(charter.__file__).parent


@dataclass(frozen=True)
class Imported:
    importer: str
    module: str
    name: str | None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> list[Imported]:
    """Every charter import of a module: at the top, inside functions and under TYPE_CHECKING alike."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "charter":
            assert node.module is not None
            found += [Imported(module, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [Imported(module, a.name, None) for a in node.names if a.name.split(".")[0] == "charter"]
    return found


def _target(imp: Imported) -> str:
    """The module an import reads: `from charter.x import y` reads charter.x.y when that is a module."""
    full = f"{imp.module}.{imp.name}"
    return full if imp.name is not None and full in MODULES else imp.module


ALL = [imp for module in MODULES for imp in _imports(module)]


def test_no_two_modules_import_each_other() -> None:
    edges = {(imp.importer, _target(imp)) for imp in ALL}
    assert sorted((a, b) for a, b in edges if a < b and (b, a) in edges) == []


def test_no_module_imports_from_the_package_face() -> None:
    offenders = [
        f"{imp.importer}: {imp.name}"
        for imp in ALL
        if imp.module == "charter" and imp.importer != "charter" and f"charter.{imp.name}" not in MODULES
    ]
    assert offenders == []


def test_no_private_name_is_imported_from_another_package() -> None:
    def package(module: str) -> list[str]:
        return module.split(".")[:2]

    offenders = [
        f"{imp.importer}: {imp.module}.{imp.name}"
        for imp in ALL
        if imp.name and imp.name.startswith("_") and not imp.name.startswith("__")
        if package(imp.module) != package(imp.importer)
    ]
    assert offenders == []


def test_trainers_stand_on_the_shared_base_not_on_each_other() -> None:
    """DPO and online training take data, LoRA, TRL arguments, output folders and cards from charter.training; the
    reward model's scorer (for win rates) and the `charter train` command group are what they may still use."""

    def borrows(imp: Imported) -> bool:
        target = _target(imp)
        if imp.importer.startswith("charter.online") and target.startswith("charter.dpo"):
            return True
        uses_reward_model = target.startswith("charter.reward_model")
        allowed = target in ("charter.reward_model.evaluate", "charter.reward_model.cli")
        return imp.importer.startswith(("charter.dpo", "charter.online")) and uses_reward_model and not allowed

    borrowed = [f"{imp.importer}: {_target(imp)}" for imp in ALL if borrows(imp)]
    assert borrowed == []


def test_the_version_lives_in_a_leaf_module_that_packaging_reads() -> None:
    assert charter.__version__ == __version__ and "__version__" in charter.__all__
    assert _imports("charter._version") == []
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "charter._version.__version__"}


def _entry_point_edges(pyproject: dict) -> set[tuple[str, str]]:
    """(the module that loads a group, an entry's target module) for every entry point charter declares: a module
    loads a group where its source names the group."""
    edges = set()
    for group, entries in pyproject["project"].get("entry-points", {}).items():
        loaders = [m for m, path in MODULES.items() if f'"{group}"' in path.read_text(encoding="utf-8")]
        edges |= {(loader, target.split(":")[0]) for loader in loaders for target in entries.values()}
    return edges


def _reachable(start: str, edges: set[tuple[str, str]]) -> set[str]:
    seen, todo = set(), [m for m in MODULES if m == start or m.startswith(start + ".")]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += [b for a, b in edges if a == module]
    return seen


def test_no_testing_module_is_reachable_from_the_providers() -> None:
    """The scripted provider stands near the ground floor: neither an import (at the top, in a function, under
    TYPE_CHECKING) nor an entry point it loads reaches `charter.testing`, the test doubles written above it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    edges = {(imp.importer, _target(imp)) for imp in ALL} | _entry_point_edges(pyproject)
    assert sorted(m for m in _reachable("charter.providers", edges) if m.startswith("charter.testing")) == []
    escape = {"project": {"entry-points": {"charter.scripts": {"lab": "charter.testing.lab:register_lab_models"}}}}
    assert ("charter.providers.scripted", "charter.testing.lab") in _entry_point_edges(escape)  # the check sees one


def test_the_billing_oracle_is_written_apart_from_what_it_checks() -> None:
    """The server's bill, against which the cost forecast and the reported cost are checked, lives with the tests
    and imports nothing of charter (so it cannot share the forecast's cache model or token counts)."""
    oracle = ROOT / "tests" / "support" / "billing.py"
    imported = [
        name
        for node in ast.walk(ast.parse(oracle.read_text(encoding="utf-8")))
        for name in (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])]
        )
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert imported and not [name for name in imported if name.split(".")[0] in ("charter", "tests")]
    assert not any(m.startswith("charter.testing.billing") for m in MODULES)
