"""Fixtures for the mixing tests: the hub tests' run directories, and no ambient Hub secrets."""

from __future__ import annotations

from tests.hub.conftest import _no_ambient_secrets, build_run, make_run

__all__ = ["_no_ambient_secrets", "build_run", "make_run"]
