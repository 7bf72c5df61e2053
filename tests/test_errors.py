"""The two roots of charter's errors: a `UserError` (a mistake in what was given) apart from a `RunFailure` (what
went wrong while the run ran: a failed call, an unreadable judge reply, a stop), both `CharterError`s."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import charter
from charter import errors
from charter.agreement.labels import LabelError
from charter.agreement.report import NoLabels

PACKAGE = Path(charter.__file__).parent


@pytest.mark.parametrize(
    "error",
    [
        errors.ProviderError,
        errors.FatalProviderError,
        errors.JudgeParseError,
        errors.BudgetExceeded,
        errors.TooManyFailures,
        errors.Interrupted,
    ],
)
def test_failures_of_a_run_are_not_user_errors(error: type[errors.CharterError]) -> None:
    assert issubclass(error, errors.RunFailure)
    assert not issubclass(error, errors.UserError)
    assert issubclass(error, errors.CharterError)  # `except CharterError` still catches them


@pytest.mark.parametrize(
    "error",
    [
        errors.ArgumentError,
        errors.ConfigError,
        errors.ConfigFieldError,
        errors.ConstitutionError,
        errors.MissingExtra,
        errors.MissingAPIKey,
        errors.UnknownModel,
        errors.LogprobsUnsupported,
        errors.DatasetError,
        errors.NoSignal,
        errors.GateFailed,
        errors.SecretFound,
        errors.HubError,
        errors.StorageError,
        errors.RunStoreError,
        errors.FileSystemError,
        errors.TrainingError,
        LabelError,
        NoLabels,
    ],
)
def test_mistakes_in_what_was_given_are_user_errors(error: type[errors.CharterError]) -> None:
    assert issubclass(error, errors.UserError)
    assert not issubclass(error, errors.RunFailure)
    assert issubclass(error, errors.CharterError)


def test_no_error_class_skips_the_two_roots() -> None:
    """Only `UserError` and `RunFailure` derive from `CharterError` directly, anywhere in the package."""
    direct = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name | ast.Attribute) and ast.unparse(base).endswith("CharterError")
                for base in node.bases
            ):
                direct.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert direct == ["errors.py:UserError", "errors.py:RunFailure"]


def test_the_exit_codes_stay_with_the_classes() -> None:
    assert errors.ProviderError("x").exit_code == errors.JudgeParseError("x").exit_code == 2
    assert errors.ConfigError("x").exit_code == 2
    assert (errors.TooManyFailures("x").exit_code, errors.BudgetExceeded("x").exit_code) == (3, 4)
    assert errors.Interrupted("terminated", 143).exit_code == 143


def test_every_raise_picks_a_root() -> None:
    """No code raises the bare base: each error it raises says whether it is a user error or a run failure."""
    bare = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "CharterError"
    ]
    assert bare == []
