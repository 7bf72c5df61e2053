"""A test that reads the shared evaluation data fails (an error in its fixture) where the data is missing: under CI
always, elsewhere unless CHARTER_SKIP_SHARED_DATA=1 asks to skip it. A checkout without the data never runs fewer
tests and stays green.

Each case runs pytest on a checkout of the suite's conftest.py alone, whose ../shared/data is (or is not) there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"
#: What the conftest imports of the tests' own package: the framework sessions' test list and the test support.
CONFTEST_NEEDS = ("__init__.py", "frameworks.py", "support")
READS_THE_DATA = """
def test_reads_the_shared_data(shared_data):
    assert (shared_data / "README.md").is_file()
"""


def outcome(tmp_path: Path, data: bool, **env: str) -> tuple[int, str]:
    """Exit code and output of pytest on one test reading the shared data, in a checkout under `tmp_path`."""
    tests = tmp_path / "checkout" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(CONFTEST, tests / "conftest.py")
    for name in CONFTEST_NEEDS:
        source = CONFTEST.parent / name
        shutil.copytree(source, tests / name) if source.is_dir() else shutil.copy(source, tests / name)
    (tests / "test_it.py").write_text(READS_THE_DATA, encoding="utf-8")
    if data:
        (tmp_path / "shared" / "data").mkdir(parents=True)
        (tmp_path / "shared" / "data" / "README.md").write_text("the data\n", encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "CHARTER_SKIP_SHARED_DATA")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path / "checkout",
        env={**environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    "env", [{"CI": "true"}, {"CI": "true", "CHARTER_SKIP_SHARED_DATA": "1"}, {}], ids=["ci", "ci-opt-out", "local"]
)
def test_missing_data_fails(tmp_path: Path, env: dict[str, str]) -> None:
    code, output = outcome(tmp_path, data=False, **env)
    assert code == 1 and "1 error" in output and "skipped" not in output, output  # the fixture fails: an error
    assert f"looked for {tmp_path / 'shared' / 'data'}" in output
    assert ("under CI every test runs" if env else "set CHARTER_SKIP_SHARED_DATA=1") in output


def test_missing_data_is_skipped_with_its_reason_where_asked(tmp_path: Path) -> None:
    code, output = outcome(tmp_path, data=False, CHARTER_SKIP_SHARED_DATA="1")
    assert code == 0 and "1 skipped" in output, output
    assert "the shared evaluation data is not beside this checkout" in output


def test_data_beside_the_checkout_is_read(tmp_path: Path) -> None:
    code, output = outcome(tmp_path, data=True, CI="true")
    assert code == 0 and "1 passed" in output, output
