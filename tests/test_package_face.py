"""The package face (`charter/__init__.py`) has one list of its public names, `_API` (name -> defining module):
`__all__` and the lazy `__getattr__` read it, and the imports type checkers and IDEs see are written from it (this test
fails when they are out of step; `python tests/test_package_face.py` rewrites them)."""

from __future__ import annotations

import sys
from pathlib import Path

import charter

FACE = Path(charter.__file__)
BEGIN = "# Written from _API by tests/test_package_face.py (`python tests/test_package_face.py`); do not edit.\n"
END = "# End of the written part.\n"


def _sort_key(name: str) -> tuple[int, str]:
    """The order ruff's isort gives the names of one import: constants, classes, then functions."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name


def render(api: dict[str, str]) -> str:
    """The written part of the face for the table `api`."""
    by_module: dict[str, list[str]] = {}
    for name, module in api.items():
        by_module.setdefault(module, []).append(name)
    lines = [BEGIN, "if TYPE_CHECKING:  # what type checkers and IDEs see: every public name with its signature\n"]
    for module in sorted(by_module):
        names = sorted(by_module[module], key=_sort_key)
        lines += [f"    from {module} import {name} as {name}\n" for name in names]  # `X as X`: a re-export
    lines.append(END)
    return "".join(lines)


def written_part(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def test_the_type_checking_imports_are_written_from_the_one_list_and_all_is_it() -> None:
    text = FACE.read_text(encoding="utf-8")
    assert written_part(text) == render(charter._API), "out of step with _API: run `python tests/test_package_face.py`"
    assert charter.__all__ == ["__version__", *charter._API]


def test_the_face_cites_files_that_exist() -> None:
    root = FACE.parent.parent.parent
    cited = [word.strip("`(),.") for word in (charter.__doc__ or "").split() if word.strip("`(),.").endswith(".py")]
    assert cited and all((root / path).exists() for path in cited), cited


if __name__ == "__main__":
    text = FACE.read_text(encoding="utf-8")
    FACE.write_text(text.replace(written_part(text), render(charter._API)), encoding="utf-8")
    sys.exit(0)
