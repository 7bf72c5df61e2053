"""What the reward function accepts: the settings it is built with and each batch TRL hands it.

Each check raises one `ConfigError` naming the argument, the variable or the index, so that nothing other than the
completion is judged (a list of strings is not read as an empty text, a string is not read character by character)
and nothing fails deep inside (a semaphore of 0 that never opens, a reference column too short to index).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from charter.errors import ConfigError
from charter.records import Message
from charter.records.base import as_messages

WHO = "reward function"


def check_settings(max_failures: Any, concurrency: Any) -> None:
    """`max_failures` a finite number >= 0 (a count from 1, a share below it); `concurrency` a whole number >= 1."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, numbers.Integral) or concurrency < 1:
        raise ConfigError(f"{WHO}: concurrency must be a whole number of at least 1 (judge calls at once), "
                          f"not {concurrency!r}")  # fmt: skip
    number = isinstance(max_failures, numbers.Real) and not isinstance(max_failures, bool)
    if not number or not math.isfinite(max_failures) or max_failures < 0:
        raise ConfigError(
            f"{WHO}: max_failures must be a finite number of at least 0 (a count from 1, a share below 1), "
            f"not {max_failures!r}"
        )


def check_batch(prompts: Any, completions: Any, references: Any = None, reference_column: str = "reference") -> Any:
    """Check a batch as TRL passes it: `prompts` and `completions` lists of one length, each item a string or a
    list of messages; `references` (the reference column, where the scoring reads it) None or a list of that length
    of strings, messages or None. Returns the references as texts (None where a row has none)."""
    _check_list("prompts", prompts)
    _check_list("completions", completions)
    if len(prompts) != len(completions):
        raise ConfigError(f"{WHO}: {len(prompts)} prompts but {len(completions)} completions")
    for i, prompt in enumerate(prompts):
        _check_conversation(f"prompts[{i}]", prompt)
    for i, completion in enumerate(completions):
        _check_conversation(f"completions[{i}]", completion)
    if references is None:
        return None
    _check_list(reference_column, references)
    if len(references) != len(prompts):
        raise ConfigError(f"{WHO}: {len(prompts)} prompts but {len(references)} values in '{reference_column}'")
    for i, reference in enumerate(references):
        if reference is not None:
            _check_conversation(f"{reference_column}[{i}]", reference)
    return [None if r is None else text_of(r) for r in references]


def prompt_messages(prompts: Sequence[Any]) -> list[list[Message]]:
    """Checked prompts as messages: a string is one user message, a list of messages is taken as it is."""
    return [as_messages(p if isinstance(p, str) else list(p), f"prompts[{i}]") for i, p in enumerate(prompts)]


def text_of(conversation: str | list[Mapping[str, Any]]) -> str:
    """The text of a checked completion: the string, or its messages' contents joined."""
    if isinstance(conversation, str):
        return conversation
    return "".join(str(m.get("content") or "") for m in conversation)


def _check_list(name: str, value: Any) -> None:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{WHO}: {name} must be a list (one item a row), not {_describe(value)}")


def _check_conversation(where: str, value: Any) -> None:
    """A string, or a non-empty list of messages: mappings with a string `role` and a string `content` (which a
    message with `tool_calls` may leave out)."""
    if isinstance(value, str):
        return
    if not isinstance(value, list | tuple):
        hint = " (decode it to a string)" if isinstance(value, bytes | bytearray) else ""
        raise ConfigError(
            f"{WHO}: {where} must be a string or a list of {{role, content}} messages, not {_describe(value)}{hint}"
        )
    if not value:
        raise ConfigError(f"{WHO}: {where} is an empty list of messages")
    for j, message in enumerate(value):
        content = message.get("content") if isinstance(message, Mapping) else None
        tool_call = isinstance(message, Mapping) and content is None and bool(message.get("tool_calls"))
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            problem = "has no string 'role'" if isinstance(message, Mapping) else f"is {_describe(message)}"
        elif not isinstance(content, str) and not tool_call:
            problem = f"has 'content' {_describe(content)}, not a string"
        else:
            continue
        raise ConfigError(f"{WHO}: {where}[{j}] {problem}; a message is {{role, content}} with string values")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.40}"
