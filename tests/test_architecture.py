"""The structure docs/architecture.md promises: layers that only import downwards (import-linter), no importlib
indirection between charter's packages, and a public API whose names no subpackage import can shadow."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import charter

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(charter.__file__).parent


def test_layers_import_only_downwards() -> None:
    """The import-linter contract in pyproject.toml (lint-imports sees imports inside functions too)."""
    executable = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert executable, "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [executable, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_the_contract_sees_type_checking_imports_and_the_package_face() -> None:
    """An import under TYPE_CHECKING is an import (a cycle or an upward import hidden there is still one), and no
    module below the package face imports it (the version lives in the leaf `charter._version`)."""
    linter = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert linter["exclude_type_checking_imports"] is False
    face = [c for c in linter["contracts"] if c["type"] == "forbidden"]
    assert face and face[0]["forbidden_modules"] == ["charter"] and face[0]["source_modules"] == ["charter.**"]


def _contract_layers() -> list[str]:
    linter = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in linter["contracts"] if c["type"] == "layers")
    return [" ".join(layer.split()) for layer in layers["layers"]]


def _page_layers() -> list[str]:
    """The first column of the code block under the architecture page's "Layers" heading: a line that starts in
    column 0 opens a layer (its names end at two spaces); a line after one ending in `:` continues it."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = page.split("\n## Layers", 1)[1].split("```", 2)[1]
    layers: list[str] = []
    for line in block.splitlines()[1:]:
        names = re.split(r"\s{2,}| \(", line.strip(), maxsplit=1)[0]
        if not line.startswith(" "):
            layers.append(names)
        elif layers and layers[-1].endswith(":"):
            layers[-1] += " " + names
    return [" ".join(layer.split()) for layer in layers]


def test_the_architecture_page_lists_the_contract_layers() -> None:
    """The page's layer list is the import contract's, top to bottom, with the same siblings and separators."""
    assert _page_layers() == _contract_layers()


def test_every_module_of_the_package_has_a_layer() -> None:
    placed = {name for layer in _contract_layers() for name in re.split(r" [|:] ", layer)}
    modules = {info.name for info in pkgutil.iter_modules([str(PACKAGE)])} - {"_version"}
    assert modules - placed == set()


def _layer_of(module: str) -> int:
    """The layer of a charter module, counted from the top (0), by its top-level name."""
    top = module.split(".")[1]
    return next(i for i, layer in enumerate(_contract_layers()) if top in re.split(r" [|:] ", layer))


def _entry_point_escapes(pyproject: dict) -> list[str]:
    """Entry points whose target sits above a charter module that loads their group (names it in its source): an
    import the contract cannot see, made when the group is loaded."""
    escapes = []
    for group, entries in pyproject.get("project", {}).get("entry-points", {}).items():
        for path in sorted(PACKAGE.rglob("*.py")):
            if f'"{group}"' not in path.read_text(encoding="utf-8"):
                continue
            loader = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            for target in entries.values():
                module = target.split(":")[0]
                if module.startswith("charter.") and _layer_of(module) < _layer_of(loader):
                    escapes.append(f"{group}: {loader} loads {target}")
    return escapes


def test_entry_points_load_nothing_from_a_higher_layer() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert _entry_point_escapes(pyproject) == []
    upward = {"project": {"entry-points": {"charter.scripts": {"lab": "charter.testing.lab:register_lab_models"}}}}
    assert _entry_point_escapes(upward) == [
        "charter.scripts: charter.providers.scripted loads charter.testing.lab:register_lab_models"
    ]


def _dynamic_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_importlib_indirection() -> None:
    """Only the package root's lazy export table imports by name (it is above every layer)."""
    offenders = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "__init__.py"
        for hit in _dynamic_imports(path)
    ]
    assert offenders == []


def test_public_names_are_not_subpackages_and_survive_their_imports() -> None:
    modules = {info.name for info in pkgutil.iter_modules([str(PACKAGE)])}
    assert set(charter.__all__).isdisjoint(modules)
    for info in pkgutil.walk_packages([str(PACKAGE)], "charter."):
        if not info.name.startswith("charter.testing.loopback"):
            importlib.import_module(info.name)  # every subpackage imported: none may replace a public name
    for name in charter.__all__:
        value = getattr(charter, name)
        assert not isinstance(value, types.ModuleType), f"charter.{name} is a module"
    assert callable(charter.critique_chains) and callable(charter.run)
