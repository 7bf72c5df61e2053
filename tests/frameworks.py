"""The tests that run in an RL framework's own environment, one a framework (noxfile.py makes each and runs
`pytest --framework NAME` in it): they import the framework's own code, whose pins conflict with each other's and
charter's, so the main environment has none of them. Without `--framework` the suite leaves these tests out; with
it, the suite is that framework's tests alone. Each entry is a test file or a test's node id."""

from __future__ import annotations

from pathlib import Path

import pytest

FRAMEWORK_TESTS: dict[str, tuple[str, ...]] = {
    "verifiers": (
        "tests/integrations/test_verifiers.py",
        "tests/integrations/test_verifiers_scorings.py",
        "tests/test_docs.py::test_python_blocks_run[verifiers.md]",
        "tests/test_trajectory.py::test_a_verifiers_trace_reads_its_last_branch_task_rewards_and_failure",
    ),
    "openenv": (
        "tests/integrations/test_openenv.py",
        "tests/test_docs.py::test_python_blocks_run[openenv.md]",
        "tests/test_trajectory.py::test_an_openenv_episode_reads_each_step_as_a_tool_call_and_its_observation",
    ),
    "verl": (
        "tests/integrations/test_verl.py",
        "tests/integrations/test_verl_scorings.py",
        "tests/test_docs.py::test_python_blocks_run[verl.md]",
    ),
    "openrlhf": ("tests/serve/test_openrlhf.py",),
    "agentdojo": (
        "tests/integrations/test_agentdojo.py",
        "tests/test_docs.py::test_python_blocks_run[agentdojo.md]",
    ),
}


def _files(entries: tuple[str, ...]) -> set[str]:
    return {entry.split("::", 1)[0] for entry in entries}


def _whole_files(entries: tuple[str, ...]) -> set[str]:
    return {entry for entry in entries if "::" not in entry}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--framework",
        choices=sorted(FRAMEWORK_TESTS),
        help="run only this RL framework's tests (in its own environment: nox -s frameworks)",
    )


def _relative(path: Path, config: pytest.Config) -> str:
    try:
        return path.resolve().relative_to(config.rootpath.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Without `--framework`: no file that imports a framework. With it: only the folders and files of its tests."""
    framework = config.getoption("framework")
    path = _relative(collection_path, config)
    if framework is None:
        owned = set().union(*(_whole_files(entries) for entries in FRAMEWORK_TESTS.values()))
        return True if path in owned else None
    files = _files(FRAMEWORK_TESTS[framework])
    if collection_path.is_dir():
        return None if any(f == path or f.startswith(f"{path}/") for f in files) or path == "." else True
    return None if path in files else True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without `--framework`: leave out each framework's single tests; with it: keep only that framework's."""
    framework = config.getoption("framework")
    if framework is None:
        leave = {entry for entries in FRAMEWORK_TESTS.values() for entry in entries if "::" in entry}
        out = [item for item in items if item.nodeid in leave]
    else:
        keep = FRAMEWORK_TESTS[framework]
        out = [item for item in items if not any(item.nodeid == k or item.nodeid.startswith(f"{k}::") for k in keep)]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [item for item in items if item not in out]
