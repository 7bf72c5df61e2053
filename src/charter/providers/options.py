"""The command-line options of what the providers own, declared once for every command that takes them: the
variable that holds a model's key (`--api-key-env`) and the call cache (`--cache`).

A command takes one as `api_key_env: ApiKeyEnv = None` or `cache: CacheOption = DEFAULT_CACHE`."""

from __future__ import annotations

from typing import Annotated

import typer

#: `--api-key-env NAME`: the environment variable holding the key of the model a command names.
ApiKeyEnv = Annotated[
    str | None,
    typer.Option(
        "--api-key-env",
        metavar="NAME",
        help="The environment variable holding the key of the model the command names (--model, --judge), for a host "
        "other than api.openai.com / api.anthropic.com.",
    ),
]


def _none_if_empty(value: str | None) -> str | None:
    return value or None


#: `--cache FILE`: the call cache; '' gives None (no cache).
CacheOption = Annotated[str | None, typer.Option("--cache", callback=_none_if_empty, help="Call cache ('' for none).")]
