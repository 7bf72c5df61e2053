"""The records' common ground: the `Record` base, chat messages, and the settings fingerprint."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from charter._version import __version__
from charter.errors import CharterError, DatasetError
from charter.yamlio import CheckedInit

GENERATOR = f"charter {__version__}"
#: Who speaks in a conversation. system, developer and user carry authority over the assistant, in that order; tool
#: messages hold what a tool returned (untrusted: material, never instructions).
Role = Literal["system", "developer", "user", "assistant", "tool"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: The largest |weight| a checklist item, a criterion or a principle takes: a sum of a million of them stays finite.
MAX_WEIGHT = 1e6


def not_a_bool(value: Any) -> Any:
    """A number as given, or a ValueError for `true`/`false`, which pydantic would read as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not {str(value).lower()}")
    return value


#: A number as a user writes one: finite, and not `true`/`false`.
Number = Annotated[float, BeforeValidator(not_a_bool), Field(allow_inf_nan=False)]
#: A weight: a `Number` with |weight| at most `MAX_WEIGHT`.
Weight = Annotated[Number, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]


def fingerprint(settings: Any) -> str:
    """A short stable hash of settings (canonical JSON): equal settings, equal fingerprint."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint_strings(strings: Iterable[str]) -> str:
    """`fingerprint(list(strings))`, streamed: the same value without holding the list (a million prompt ids
    were ~170 MB as a Python list)."""
    digest, strings, separator = hashlib.sha256(b"["), iter(strings), ""
    while chunk := list(itertools.islice(strings, 4096)):
        digest.update((separator + ",".join(json.dumps(s, ensure_ascii=False) for s in chunk)).encode())
        separator = ","
    digest.update(b"]")
    return digest.hexdigest()[:16]


class Record(BaseModel):
    """Base of every record: unknown fields are errors, field docstrings are the schema descriptions, and a number is
    finite (NaN and infinity are refused: an unknown value is None, with its reason beside it)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


class ToolCall(Record, CheckedInit):
    """One tool call of an assistant turn: an action, judged as one (its name and arguments), not as text."""

    id: str
    """The call's id; the tool message that answers it names it in `tool_call_id`."""
    name: str
    """The tool called."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """The arguments, a JSON object (an OpenAI-format JSON string is decoded when read; one that is not a JSON
    object is an error naming the message)."""
    side_effect: bool | None = None
    """Whether the call changes the world (sends, pays, deletes) rather than only reading it; None where the source
    does not say."""

    @model_validator(mode="before")
    @classmethod
    def _from_trl(cls, data: Any) -> Any:
        """A call as TRL's rows (and OpenAI's messages) hold it, `{id, type: function, function: {name,
        arguments}}`, read back: the dataset rows are written so."""
        if isinstance(data, Mapping) and isinstance(data.get("function"), Mapping):
            function = data["function"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments) if arguments else {}
                except json.JSONDecodeError as exc:
                    raise ValueError(f"arguments: not JSON ({exc.msg} at column {exc.colno})") from None
            out = {"id": data.get("id"), "name": function.get("name"), "arguments": arguments}
            if data.get("side_effect") is not None:
                out["side_effect"] = data["side_effect"]
            return out
        return data

    def to_trl(self) -> dict[str, Any]:
        """The call as TRL's conversational rows hold it: `{id, type: function, function: {name, arguments}}`, the
        arguments a JSON object (and `side_effect` where known)."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        if self.side_effect is not None:
            out["side_effect"] = self.side_effect
        return out


#: The fields a message leaves out of its JSON and its dict form when unset: a plain {role, content} message is
#: stored, fingerprinted and cached exactly as before they existed.
TOOL_FIELDS = ("tool_calls", "tool_call_id", "name")


class Message(Record, CheckedInit):
    """One chat message. Built directly, a bad field is a `ConfigFieldError` naming it (`Message: role: Input should
    be 'system', 'developer', 'user', 'assistant' or 'tool'`). The tool fields are left out of its JSON when unset."""

    role: Role
    """Who speaks: system, developer, user, assistant or tool."""
    content: str
    """What is said (an assistant turn that only calls tools has "")."""
    tool_calls: list[ToolCall] | None = None
    """An assistant turn's tool calls, in order."""
    tool_call_id: str | None = None
    """A tool message's answer to: the id of an earlier assistant turn's tool call."""
    name: str | None = None
    """A tool message's tool name."""

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for key in TOOL_FIELDS:
            if data.get(key) is None:
                data.pop(key, None)
        return data


ROLES: tuple[str, ...] = get_args(Role)


def as_messages(
    value: Any, where: str, role: Role = "user", error: type[CharterError] = DatasetError, allow_empty: bool = False
) -> list[Message]:
    """A string (one message with `role`) or a list of `{role, content}` messages, as Message records.

    Raises `error` naming `where` for anything else. An empty value (None, a blank string, no non-blank
    turn of `role`) is an error too, unless `allow_empty`, which returns [] for it.
    """
    if isinstance(value, str):
        messages = [Message(role=role, content=value)] if value.strip() else []
    elif isinstance(value, (list, tuple)) and any(_has_tools(item) for item in value):
        from charter.records.trajectory import read_openai

        messages = read_openai(list(value), where, error).messages
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


def _has_tools(item: Any) -> bool:
    """Whether a message takes part in tool use (a call, a result): read as a trajectory's message is."""
    if isinstance(item, Message):
        return bool(item.tool_calls or item.tool_call_id)
    return isinstance(item, Mapping) and (bool(item.get("tool_calls")) or item.get("role") == "tool")


def _message(item: Any, index: int, where: str, error: type[CharterError]) -> Message:
    if isinstance(item, Message):
        return item
    if hasattr(item, "model_dump"):
        item = item.model_dump()
    if not isinstance(item, dict) or "role" not in item or "content" not in item:
        raise error(f"{where}: message {index} needs 'role' and 'content'")
    if item["role"] not in ROLES:
        raise error(f"{where}: message {index}: role: unknown role '{item['role']}' (use {', '.join(ROLES)})")
    return Message(role=item["role"], content=str(item["content"]))


def as_dicts(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as the `{role, content}` dicts the providers' wire formats (and the call cache's keys) use; the tool
    fields are added only where they are set (in OpenAI's chat format), so a plain message's dict is what it always
    was."""
    return [
        {"role": m.role, "content": m.content} if not (m.tool_calls or m.tool_call_id or m.name) else _wire(m)
        for m in messages
    ]


def _wire(message: Message) -> dict[str, Any]:
    """A message with tool fields in OpenAI's chat format (which OpenAI-compatible servers and chat templates read):
    each call `{id, type: function, function: {name, arguments}}` with its arguments as JSON text."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
            }
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def as_records(messages: Sequence[Message | Mapping[str, str]]) -> list[Message]:
    """A chat request as Message records; `{role, content}` dicts are accepted (as the vendors' SDKs take them)."""
    return [m if isinstance(m, Message) else Message.model_validate(dict(m)) for m in messages]


# Message helpers shared by every stage: rendering, turns, refusals.


def last_text(messages: Sequence[Message] | str | None) -> str:
    """The content of the last message (a response stored as [{assistant}]), or the string itself."""
    if isinstance(messages, str):
        return messages
    return messages[-1].content if messages else ""


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
