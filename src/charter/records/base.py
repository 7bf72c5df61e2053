"""The records' common ground: the `Record` base, chat messages, and the settings fingerprint."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, get_args

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

    @classmethod
    def __arrow_type__(cls) -> Any:
        """A call in a parquet file: TRL's `{id, type, function: {name, arguments}}` with the arguments as JSON text
        (an object's keys differ from call to call; a column's type cannot), as OpenAI's wire format has them."""
        import pyarrow as pa

        function = pa.struct([("name", pa.string()), ("arguments", pa.string())])
        return pa.struct(
            [("id", pa.string()), ("type", pa.string()), ("function", function), ("side_effect", pa.bool_())]
        )

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

    #: A file of plain conversations keeps its {role, content} columns: the tool fields join only where needed.
    ARROW_LEFT_OUT: ClassVar[tuple[str, ...]] = TOOL_FIELDS

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
        messages = fill_call_ids([read_message(item, i, where, error) for i, item in enumerate(value)])
        if problem := trajectory_problem(messages):
            raise error(f"{where}: {problem}")
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


def uses_tools(row: Mapping[str, Any]) -> bool:
    """Whether a dataset row (its `to_row` form) holds a conversation with tool calls or tool results."""
    return any(
        isinstance(value, list)
        and any(isinstance(m, Mapping) and (m.get("tool_calls") or m.get("tool_call_id")) for m in value)
        for value in row.values()
    )


def parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    """A dataset row as a parquet file holds it: each tool call's arguments as JSON text."""
    out = dict(row)
    for key, value in row.items():
        if isinstance(value, list) and any(isinstance(m, Mapping) and m.get("tool_calls") for m in value):
            out[key] = [
                {**m, "tool_calls": [_text_arguments(c) for c in m["tool_calls"]]}
                if isinstance(m, Mapping) and m.get("tool_calls")
                else m
                for m in value
            ]
    return out


def _text_arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    function = dict(call["function"])
    if not isinstance(function.get("arguments"), str):
        function["arguments"] = json.dumps(function.get("arguments") or {}, ensure_ascii=False)
    return {**call, "function": function}


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


def plain_roles(messages: Sequence[Message]) -> list[Message]:
    """Messages as any chat model takes them without tool calls to match: developer as system, a tool's output as a
    user turn that says so (a spec's example tool output answers no call a provider could check)."""
    return [
        Message(role="system", content=m.content)
        if m.role == "developer"
        else Message(role="user", content=f"Tool output:\n{m.content}")
        if m.role == "tool"
        else m
        for m in messages
    ]


def as_records(messages: Sequence[Message | Mapping[str, str]]) -> list[Message]:
    """A chat request as Message records; `{role, content}` dicts are accepted (as the vendors' SDKs take them)."""
    return [m if isinstance(m, Message) else Message.model_validate(dict(m)) for m in messages]


# Reading messages in OpenAI's chat format: the roles, contents and tool calls checked, one line for a bad one.


def trajectory_problem(messages: Sequence[Message]) -> str | None:
    """The first thing wrong with a trajectory's messages, as 'message I: KEY: what' (None where nothing is): no
    messages, or a tool message that answers no earlier tool call (roles and arguments are checked as read)."""
    if not messages:
        return "messages: empty trajectory (no messages)"
    calls: set[str] = set()
    for i, message in enumerate(messages):
        for call in message.tool_calls or ():
            calls.add(call.id)
        if message.role == "tool":
            if message.tool_call_id is None:
                return f"message {i}: tool_call_id: a tool message needs the id of the call it answers"
            if message.tool_call_id not in calls:
                return f"message {i}: tool_call_id: {message.tool_call_id!r} matches no earlier tool call"
        elif message.tool_call_id is not None:
            return f"message {i}: tool_call_id: only a tool message answers a call, not a {message.role} message"
        if message.tool_calls and message.role != "assistant":
            return f"message {i}: tool_calls: only an assistant message calls tools, not a {message.role} message"
    return None


def refuse(error: type[CharterError], where: str, index: int | None, key: str, what: str) -> CharterError:
    """The one-line error of a bad message: WHERE: message INDEX: KEY: what."""
    at = f"message {index}: " if index is not None else ""
    return error(f"{where}: {at}{key}: {what}")


def _role(item: Mapping[str, Any], index: int, where: str, error: type[CharterError]) -> Any:
    role = item.get("role")
    if role not in ROLES:
        raise refuse(error, where, index, "role", f"unknown role {role!r} (use {', '.join(ROLES)})")
    return role


def json_arguments(value: Any, index: int, where: str, error: type[CharterError]) -> dict[str, Any]:
    """Tool call arguments: a JSON object, or a string holding one."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise refuse(error, where, index, "arguments", f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise refuse(error, where, index, "arguments", f"not a JSON object but {type(value).__name__}")
    return value


def content_text(content: Any, index: int, where: str, error: type[CharterError], key: str = "content") -> str:
    """A message's text: a string, or the text of its content parts (`{type: text, text}` blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            part = as_plain(part)
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, Mapping) and isinstance(part.get("content"), (str, list)):
                texts.append(content_text(part["content"], index, where, error, key))
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise refuse(error, where, index, key, f"a content part of type {kind!r} holds no text")
        return "\n".join(texts)
    raise refuse(error, where, index, key, f"expected text or a list of text parts, not {type(content).__name__}")


def as_plain(item: Any) -> Any:
    """An SDK object (pydantic model) as the dict it stands for; anything else as it is."""
    if hasattr(item, "model_dump"):
        return item.model_dump(exclude_none=True)
    return item


def _openai_call(call: Any, index: int, where: str, error: type[CharterError]) -> ToolCall:
    call = as_plain(call)
    if not isinstance(call, Mapping):
        raise refuse(error, where, index, "tool_calls", f"a tool call is an object, not {type(call).__name__}")
    function = call.get("function", call)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise refuse(error, where, index, "tool_calls", "a tool call needs a function name")
    call_id = call.get("id")
    return ToolCall(
        id=str(call_id) if call_id is not None else "",
        name=function["name"],
        arguments=json_arguments(function.get("arguments"), index, where, error),
        side_effect=call.get("side_effect"),
    )


def read_message(item: Any, index: int, where: str, error: type[CharterError]) -> Message:
    """One message in OpenAI's chat format (a dict or an SDK object) as a Message: its role, content and tool calls
    checked, a bad one `error` naming `where`, the message and the key."""
    item = as_plain(item)
    if not isinstance(item, Mapping):
        raise refuse(error, where, index, "role", f"a message is an object with a role, not {type(item).__name__}")
    role = _role(item, index, where, error)
    calls = item.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise refuse(error, where, index, "tool_calls", f"expected a list, not {type(calls).__name__}")
    tool_calls = [_openai_call(c, index, where, error) for c in calls or ()] or None
    call_id = item.get("tool_call_id")
    name = item.get("name")
    return Message(
        role=role,
        content=content_text(item.get("content"), index, where, error),
        tool_calls=tool_calls,
        tool_call_id=str(call_id) if call_id is not None else None,
        name=str(name) if name is not None and role == "tool" else None,
    )


def fill_call_ids(messages: list[Message]) -> list[Message]:
    """Give tool calls without an id (TRL's rows, some rollouts) `call_N`, and a tool message without a
    `tool_call_id` the id of the earliest unanswered call of its name (or the earliest unanswered call)."""
    if not any(m.tool_calls for m in messages):
        return messages
    out: list[Message] = []
    unanswered: list[ToolCall] = []
    count = 0
    for message in messages:
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                if not call.id:
                    call = call.model_copy(update={"id": f"call_{count}"})
                count += 1
                calls.append(call)
            unanswered.extend(calls)
            if any(a is not b for a, b in zip(calls, message.tool_calls)):
                message = message.model_copy(update={"tool_calls": calls})
        elif message.role == "tool":
            if message.tool_call_id is None and unanswered:
                match = next((c for c in unanswered if c.name == message.name), unanswered[0])
                message = message.model_copy(update={"tool_call_id": match.id})
            answered = next((c for c in unanswered if c.id == message.tool_call_id), None)
            if answered is not None and message.name is None:
                message = message.model_copy(update={"name": answered.name})
            unanswered = [c for c in unanswered if c.id != message.tool_call_id]
        out.append(message)
    return out


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
