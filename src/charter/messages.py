"""Message helpers shared by every stage: one normaliser of "a string or a message list", rendering."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from charter.errors import CharterError, DatasetError
from charter.records import Message, Role

ROLES = ("system", "user", "assistant")


def as_messages(
    value: Any, where: str, role: Role = "user", error: type[CharterError] = DatasetError, allow_empty: bool = False
) -> list[Message]:
    """A string (one message with `role`) or a list of `{role, content}` messages, as Message records.

    Raises `error` naming `where` for anything else. An empty value (None, a blank string, no non-blank
    turn of `role`) is an error too, unless `allow_empty`, which returns [] for it.
    """
    if isinstance(value, str):
        messages = [Message(role=role, content=value)] if value.strip() else []
    elif isinstance(value, (list, tuple)):
        messages = [_message(item, i, where, error) for i, item in enumerate(value)]
    elif value is None:
        messages = []
    else:
        raise error(f"{where}: expected a string or a list of {{role, content}} messages, not {type(value).__name__}")
    if not any(m.role == role and m.content.strip() for m in messages):
        if allow_empty:
            return []
        raise error(f"{where}: empty (no {role} message with text)")
    return messages


def _message(item: Any, index: int, where: str, error: type[CharterError]) -> Message:
    if isinstance(item, Message):
        return item
    if hasattr(item, "model_dump"):
        item = item.model_dump()
    if not isinstance(item, dict) or "role" not in item or "content" not in item:
        raise error(f"{where}: message {index} needs 'role' and 'content'")
    if item["role"] not in ROLES:
        raise error(f"{where}: message {index} has unknown role '{item['role']}' (use {', '.join(ROLES)})")
    return Message(role=item["role"], content=str(item["content"]))


def last_text(messages: Sequence[Message] | str | None) -> str:
    """The content of the last message (a response stored as [{assistant}]), or the string itself."""
    if isinstance(messages, str):
        return messages
    return messages[-1].content if messages else ""


def render_conversation(messages: Sequence[Message]) -> str:
    """The conversation as Human/Assistant turns (system messages left out)."""
    names = {"user": "Human", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m.role]}: {m.content}" for m in messages if m.role in names)


def user(content: str) -> Message:
    """A user turn."""
    return Message(role="user", content=content)


def assistant(content: str) -> Message:
    """An assistant turn."""
    return Message(role="assistant", content=content)


def with_system(messages: Sequence[Message], system_prompt: str | None) -> list[Message]:
    """The request a policy sees: `system_prompt` first unless the conversation has its own system turn."""
    if system_prompt and not any(m.role == "system" for m in messages):
        return [Message(role="system", content=system_prompt), *messages]
    return list(messages)


_REFUSAL = re.compile(
    r"^\W*(?:i\s*(?:can(?:no|')t|cannot|won'?t|will not|am (?:not able|unable)|'m (?:sorry|not able|unable))|sorry|"
    r"as an ai|i apologi[sz]e|i must decline|unfortunately,? i (?:can(?:no|')t|cannot))",
    re.I,
)


def is_refusal(text: str) -> bool:
    """Whether a response opens with a refusal ("I can't help with that", "Sorry, ...", "As an AI ...")."""
    return _REFUSAL.search(text or "") is not None
