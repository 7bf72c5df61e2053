"""Fixtures for the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Third-party evaluation data (human preference pairs, prompt sets) kept beside the checkout, never copied into it:
#: ../shared/data from the repository root; its README says what each file is.
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared evaluation data folder (the one way a test reaches it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared evaluation data is not beside this checkout (looked for {SHARED_DATA})")
    return SHARED_DATA
