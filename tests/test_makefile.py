"""The Makefile's own Python one-liners name code that exists (a moved function must not break `make model`)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"


def one_liners() -> list[str]:
    return re.findall(r'python -c "([^"]+)"', MAKEFILE.read_text())


def test_the_makefile_has_python_one_liners_to_check() -> None:
    assert one_liners(), "no `python -c` line found in the Makefile"


def test_every_name_a_makefile_one_liner_imports_exists() -> None:
    for code in one_liners():
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"Makefile: {node.module} has no {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
