"""Message helpers shared by every stage: rendering, turns, refusals; the one normaliser of "a string or a message
list", `as_messages`, lives beside `Message` (`charter.records.base`), where `Pair` reads its prompt with it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from charter.records import Message
from charter.records.base import as_messages as as_messages


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
