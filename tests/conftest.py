"""Fixtures for the whole suite."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from charter.providers.scripted import add_script_source

ROOT = Path(__file__).resolve().parent.parent
#: Third-party evaluation data (human preference pairs, prompt sets) kept beside the checkout, never copied into it:
#: ../shared/data from the repository root; its README says what each file is.
SHARED_DATA = ROOT.parent / "shared" / "data"
#: Set to 1 to skip, rather than fail, the tests that read the shared data where it is missing (not under CI).
SKIP_SHARED_DATA = "CHARTER_SKIP_SHARED_DATA"


def under_ci(environ: Mapping[str, str]) -> bool:
    """Whether the suite runs under CI (`CI` set, as CI services set it, to anything but false or 0)."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_data_folder(folder: Path, environ: Mapping[str, str]) -> Path:
    """`folder` where it is there; where it is not, the test fails (a checkout without the data would otherwise
    run fewer tests and stay green), or is skipped with the reason where `CHARTER_SKIP_SHARED_DATA=1` asks for it
    outside CI."""
    if folder.is_dir():
        return folder
    missing = f"the shared evaluation data is not beside this checkout (looked for {folder})"
    if under_ci(environ):
        pytest.fail(f"{missing}: under CI every test runs; give the CI job the data", pytrace=False)
    if environ.get(SKIP_SHARED_DATA) == "1":
        pytest.skip(f"{missing}; {SKIP_SHARED_DATA}=1 skips the tests that read it")
    pytest.fail(f"{missing}: put it there, or set {SKIP_SHARED_DATA}=1 to skip the tests that read it", pytrace=False)


def _register_test_doubles() -> None:
    """charter's scripted test doubles (`scripted:checklist-judge`, `scripted:longer`, ...) known by name in the tests,
    as the command line makes them known."""
    from charter.testing.judges import register_biased_judges
    from charter.testing.lab import register_lab_models

    register_lab_models()
    register_biased_judges()


add_script_source(_register_test_doubles)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared evaluation data folder (the one way a test reaches it)."""
    return shared_data_folder(SHARED_DATA, os.environ)


@pytest.fixture(autouse=True)
def _hashed_run_embeddings(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run measures its dataset's embedding diversity (and `filters.diversity` embeds rows) with MiniLM; outside
    the tests marked `slow` the model name `minilm-l6` gets the hashed embedder of `tests.support.embeddings`, so
    that no test loads a model it is not about."""
    if request.node.get_closest_marker("slow") is None:
        from charter.providers.embeddings import EMBEDDERS
        from tests.support.embeddings import hashed_embed

        monkeypatch.setitem(EMBEDDERS, "minilm-l6", hashed_embed)
