"""The help screens: arguments in capitals as usage lines and the reference pages write them, flags without a value
type, and each group's help naming its commands."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from charter.cli import app

runner = CliRunner()


def command_paths(command: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        if not sub.hidden:
            yield from command_paths(sub, [*path, name])


ALL_COMMANDS = list(command_paths(typer.main.get_command(app), []))


def test_run_help_writes_its_argument_in_capitals_and_its_flags_without_a_type() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "Usage: charter run [OPTIONS] CONFIG" in result.output, result.output
    assert "{config}" not in result.output and "<bool>" not in result.output
    assert "--dry-run" in result.output


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "charter")
def test_no_help_screen_shows_a_bool_type_or_a_braced_argument(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "<bool>" not in result.output, result.output


def visible_commands(group: str) -> list[str]:
    """Every command of a group its help screen lists."""
    commands = typer.main.get_command(app).commands[group].commands  # type: ignore[attr-defined]
    return [name for name, command in commands.items() if not command.hidden]


@pytest.mark.parametrize(
    "group, commands", [("train", visible_commands("train")), ("constitutions", ["infer", "test"])]
)
def test_a_groups_help_names_its_commands(group: str, commands: list[str]) -> None:
    text = typer.main.get_command(app).commands[group].help  # type: ignore[attr-defined]
    assert all(f"`{name}`" in text for name in commands), text
    result = runner.invoke(app, [group, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert all(name in result.output.split("Commands")[0] for name in commands), result.output
