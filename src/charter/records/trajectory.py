"""Conversations and agent trajectories: the `Trajectory` record, its checks, and its readers and writer.

A trajectory is messages with roles (system, developer, user, assistant, tool), the assistant's tool calls with
their arguments, the tools' results, and what the environment said about it: its name, the task, and the outcome
of its checks. It is read from the formats that agents and trainers write (`READERS`, one entry a format: OpenAI
chat messages, Anthropic messages, TRL's conversational and tool-calling rows, verifiers' and OpenEnv's rollouts)
and written in the conversational format TRL trains on (`to_trl`).

A bad trajectory is one line naming the row, the message and the key (`rows.jsonl:3: message 2: tool_call_id:
'call_9' matches no earlier tool call`): a tool result whose call id matches no call, tool call arguments that are
not a JSON object, an unknown role, or an empty trajectory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import Field, model_validator

from charter.errors import CharterError, DatasetError
from charter.records.base import (
    Message,
    Record,
    ToolCall,
    as_plain,
    content_text,
    fill_call_ids,
    json_arguments,
    read_message,
    refuse,
    trajectory_problem,
)
from charter.yamlio import CheckedInit

Check = bool | float | None


class Trajectory(Record, CheckedInit):
    """A conversation or an agent's trajectory, with where it ran and how its checks came out."""

    messages: list[Message]
    """The messages in order: system, developer and user turns, the assistant's turns (text and tool calls) and the
    tools' results."""
    environment: str | None = None
    """The environment it ran in (`agentdojo:banking`, a verifiers environment's id), if any."""
    task: str | None = None
    """The task it attempted (an environment's task id), if any."""
    checks: dict[str, Check] = Field(default_factory=dict)
    """The outcome of the environment's checks by name (`utility`, `security`, `reward`); None for a check that
    could not be run."""
    tools: list[dict[str, Any]] | None = None
    """The tools offered, as JSON schemas in OpenAI's function format (written to TRL's `tools` column)."""
    failure: str | None = None
    """Why the rollout failed (an environment step raised), if it did: a failed trajectory is never judged a pass."""

    @model_validator(mode="after")
    def _consistent(self) -> Trajectory:
        problem = trajectory_problem(self.messages)
        if problem:
            raise ValueError(problem)
        return self

    def assistant_steps(self) -> list[int]:
        """The indices of the assistant's turns: the steps a per-step judge judges."""
        return [i for i, m in enumerate(self.messages) if m.role == "assistant"]

    def prefix(self, step: int) -> list[Message]:
        """What came before message `step`: the context that step is judged in (shared by every later step)."""
        if not 0 <= step < len(self.messages):
            raise IndexError(f"step {step} is not a message of this trajectory ({len(self.messages)} messages)")
        return self.messages[:step]

    def upto(self, step: int) -> list[Message]:
        """The messages up to and including `step`."""
        return [*self.prefix(step), self.messages[step]]

    def tool_call(self, call_id: str) -> ToolCall | None:
        """The tool call with id `call_id`, or None."""
        for message in self.messages:
            for call in message.tool_calls or ():
                if call.id == call_id:
                    return call
        return None


def _checked(messages: list[Message], where: str, error: type[CharterError], **fields: Any) -> Trajectory:
    problem = trajectory_problem(messages)
    if problem:
        raise error(f"{where}: {problem}")
    return Trajectory.model_validate({"messages": messages, **fields})


def _message_list(value: Any, where: str, error: type[CharterError], key: str = "messages") -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise error(f"{where}: {key}: expected a list of messages, not {type(value).__name__}")


def read_openai(value: Any, where: str = "trajectory", error: type[CharterError] = DatasetError) -> Trajectory:
    """OpenAI chat messages (dicts or `openai.types.chat` objects): `tool_calls` whose arguments are JSON strings,
    `tool` messages answering them by `tool_call_id`, `developer` messages. A row `{messages, tools}` is read too."""
    tools = None
    if isinstance(value, Mapping):
        tools = value.get("tools")
        value = value.get("messages")
    items = _message_list(value, where, error)
    messages = fill_call_ids([read_message(m, i, where, error) for i, m in enumerate(items)])
    return _checked(messages, where, error, tools=_tools(tools, where, error))


def _tools(value: Any, where: str, error: type[CharterError]) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str):  # a parquet or CSV cell holds the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: tools: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, list) or not all(isinstance(as_plain(t), Mapping) for t in value):
        raise error(f"{where}: tools: expected a list of tool schemas (JSON objects)")
    return [dict(as_plain(t)) for t in value]


def read_tools(value: Any, where: str, error: type[CharterError] = DatasetError) -> list[dict[str, Any]] | None:
    """A `tools` column (a list of tool schemas in OpenAI's function format, or its JSON text); None where unset."""
    return None if value == "" else _tools(value, where, error)


def read_anthropic(value: Any, where: str = "trajectory", error: type[CharterError] = DatasetError) -> Trajectory:
    """Anthropic messages (dicts or `anthropic.types` objects): `{system, messages}` or a list of messages; an
    assistant's `tool_use` blocks become tool calls and a user's `tool_result` blocks tool messages."""
    system = None
    tools = None
    if isinstance(value, Mapping):
        system, tools = value.get("system"), value.get("tools")
        value = value.get("messages")
    items = _message_list(value, where, error)
    messages: list[Message] = []
    if system:
        messages.append(Message(role="system", content=content_text(system, 0, where, error, "system")))
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        item = as_plain(item)
        if not isinstance(item, Mapping):
            raise refuse(error, where, i, "role", f"a message is an object with a role, not {type(item).__name__}")
        role = item.get("role")
        if role not in ("user", "assistant"):
            raise refuse(error, where, i, "role", f"unknown role {role!r} (Anthropic messages are user or assistant)")
        content = item.get("content")
        if isinstance(content, str) or content is None:
            messages.append(Message(role=role, content=content or ""))
            continue
        if not isinstance(content, list):
            raise refuse(error, where, i, "content", f"expected text or content blocks, not {type(content).__name__}")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in map(as_plain, content):
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind == "text":
                texts.append(str(block.get("text", "")))
            elif kind == "tool_use" and role == "assistant":
                call = ToolCall(
                    id=str(block.get("id", "")),
                    name=str(block.get("name", "")),
                    arguments=json_arguments(block.get("input"), i, where, error),
                )
                names[call.id] = call.name
                calls.append(call)
            elif kind == "tool_result" and role == "user":
                if texts:  # text before a result is a user turn of its own
                    messages.append(Message(role="user", content="\n".join(texts)))
                    texts = []
                call_id = str(block.get("tool_use_id", ""))
                result = content_text(block.get("content"), i, where, error)
                if block.get("is_error"):
                    result = f"[tool error] {result}"
                messages.append(Message(role="tool", content=result, tool_call_id=call_id, name=names.get(call_id)))
            elif kind in ("thinking", "redacted_thinking"):
                continue  # the model's private reasoning: not part of what it said or did
            else:
                raise refuse(error, where, i, "content", f"a {role} block of type {kind!r} is not read")
        if texts or calls:
            messages.append(Message(role=role, content="\n".join(texts), tool_calls=calls or None))
    return _checked(messages, where, error, tools=_anthropic_tools(tools, where, error))


def _anthropic_tools(value: Any, where: str, error: type[CharterError]) -> list[dict[str, Any]] | None:
    tools = _tools(value, where, error)
    if tools is None:
        return None
    return [
        t
        if "function" in t
        else {
            "type": "function",
            "function": {
                "name": t.get("name"),
                "description": t.get("description", ""),
                "parameters": t.get("input_schema", {}),
            },
        }
        for t in tools
    ]


def read_trl(value: Any, where: str = "trajectory", error: type[CharterError] = DatasetError) -> Trajectory:
    """A row of a TRL conversational dataset: `messages`, or `prompt` and `completion` (message lists), with an
    optional `tools` column; assistant `tool_calls` carry `{type: function, function: {name, arguments}}` with
    arguments a JSON object (or its text)."""
    if not isinstance(value, Mapping):
        raise error(f"{where}: expected a row with 'messages' or 'prompt' and 'completion', not {type(value).__name__}")
    if "messages" in value:
        items = _message_list(value["messages"], where, error)
    elif "prompt" in value:
        prompt, completion = value["prompt"], value.get("completion", [])
        if isinstance(prompt, str):
            raise error(f"{where}: prompt: a standard (text) row, not a conversational one")
        items = _message_list(prompt, where, error, "prompt") + _message_list(completion, where, error, "completion")
    else:
        raise error(f"{where}: messages: the row has neither 'messages' nor 'prompt'")
    messages = fill_call_ids([read_message(m, i, where, error) for i, m in enumerate(items)])
    return _checked(messages, where, error, tools=_tools(value.get("tools"), where, error))


def read_verifiers(value: Any, where: str = "trajectory", error: type[CharterError] = DatasetError) -> Trajectory:
    """A verifiers rollout: a v1 `Trace` (object or its JSON: the message graph's last branch, the task's type and
    key, the named rewards and metrics, the tools; an unfinished trace's last error as the failure), or a classic
    results row (`prompt` and `completion` message lists, `reward`, `task`)."""
    value = as_plain(value)
    if not isinstance(value, Mapping):
        raise error(f"{where}: expected a verifiers trace or results row, not {type(value).__name__}")
    if "nodes" not in value:
        row = read_trl({k: value[k] for k in ("prompt", "completion") if k in value}, where, error)
        reward = value.get("reward")
        checks = {"reward": _number(reward, where, error, "reward")} if "reward" in value else {}
        checks.update({k: _number(v, where, error, f"metrics.{k}") for k, v in (value.get("metrics") or {}).items()})
        named = value.get("task")
        return row.model_copy(update={"task": str(named) if named is not None else None, "checks": checks})
    nodes = value["nodes"]
    if not isinstance(nodes, list):
        raise error(f"{where}: nodes: expected a list of message nodes, not {type(nodes).__name__}")
    if not nodes:
        raise error(f"{where}: messages: empty trajectory (no messages)")
    parents = {n.get("parent") for n in nodes if isinstance(n, Mapping)}
    leaf = max(i for i in range(len(nodes)) if i not in parents)
    path: list[int] = []
    at: Any = leaf
    while at is not None:
        if not isinstance(at, int) or not 0 <= at < len(nodes) or at in path or not isinstance(nodes[at], Mapping):
            raise error(f"{where}: nodes: node {path[-1] if path else leaf} has a parent that is no node: {at!r}")
        path.append(at)
        at = nodes[at].get("parent")
    items = [nodes[i].get("message") for i in reversed(path)]
    messages = fill_call_ids([read_message(m, i, where, error) for i, m in enumerate(items)])
    given_task = value.get("task")
    task: Mapping[str, Any] = given_task if isinstance(given_task, Mapping) else {}
    checks: dict[str, Check] = {}
    for name, reward in (value.get("rewards") or {}).items():
        checks[name] = None if reward is None else _number(reward.get("score"), where, error, f"rewards.{name}")
    for name, metric in (value.get("metrics") or {}).items():
        checks.setdefault(name, _number(metric, where, error, f"metrics.{name}"))
    errors = value.get("errors") or []
    failure = None
    if errors and not value.get("ok", False):
        last = errors[-1]
        failure = f"{last.get('type', 'error')}: {last.get('message', '')}" if isinstance(last, Mapping) else str(last)
    tools = [_verifiers_tool(t) for t in value.get("tools") or ()] or None
    return _checked(
        messages,
        where,
        error,
        environment=str(task["type"]) if task.get("type") else None,
        task=str(task["key"]) if task.get("key") else None,
        checks=checks,
        tools=tools,
        failure=failure,
    )


def _verifiers_tool(tool: Any) -> dict[str, Any]:
    tool = as_plain(tool)
    if "function" in tool:
        return dict(tool)
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _number(value: Any, where: str, error: type[CharterError], key: str) -> Check:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
        return float(value)
    raise error(f"{where}: {key}: expected a finite number, true/false or null, not {value!r:.40}")


def read_openenv(value: Any, where: str = "trajectory", error: type[CharterError] = DatasetError) -> Trajectory:
    """An OpenEnv episode as its `TrajectoryRubric` keeps it: (action, observation) pairs, as objects or dicts, or
    `{steps, prompt, environment, task}` with a prompt (text or messages) before them. Each `env.step(action)` is a
    tool call: a `CallToolAction` calls its tool with its arguments, any other action calls `step` with its fields;
    the observation is the result (a `CallToolObservation`'s result or error). The last observation's `reward` and
    `done` are the checks."""
    fields: dict[str, Any] = {}
    prompt: list[Message] = []
    if isinstance(value, Mapping):
        if "prompt" in value:
            given = value["prompt"]
            given = [{"role": "user", "content": given}] if isinstance(given, str) else given
            prompt = [read_message(m, i, where, error) for i, m in enumerate(_message_list(given, where, error))]
        fields = {k: str(value[k]) for k in ("environment", "task") if value.get(k) is not None}
        value = value.get("steps")
    steps = _message_list(value, where, error, "steps")
    messages = list(prompt)
    last: Mapping[str, Any] = {}
    for k, step in enumerate(steps):
        if not isinstance(step, (list, tuple)) or len(step) != 2:
            raise error(f"{where}: steps[{k}]: expected an (action, observation) pair")
        action, observation = _openenv_dict(step[0]), _openenv_dict(step[1])
        if action is None or observation is None:
            raise error(f"{where}: steps[{k}]: the action and the observation are objects (pydantic models or dicts)")
        index = len(messages)
        name = action.get("tool_name") if action.get("type") == "call_tool" else "step"
        arguments = (
            action.get("arguments") if name != "step" else {key: v for key, v in action.items() if key != "metadata"}
        )
        call = ToolCall(id=f"step_{k}", name=str(name), arguments=json_arguments(arguments, index, where, error))
        messages.append(Message(role="assistant", content="", tool_calls=[call]))
        messages.append(
            Message(role="tool", content=_observationcontent_text(observation), tool_call_id=call.id, name=call.name)
        )
        last = observation
    checks: dict[str, Check] = {}
    if steps:
        checks = {"reward": _number(last.get("reward"), where, error, "reward"), "done": bool(last.get("done"))}
    return _checked(messages, where, error, checks=checks, **fields)


def _openenv_dict(item: Any) -> dict[str, Any] | None:
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json")
    return dict(item) if isinstance(item, Mapping) else None


def _observationcontent_text(observation: Mapping[str, Any]) -> str:
    """What an observation shows the agent: a tool's result (or its error), else its fields but done, reward and
    metadata."""
    if "tool_name" in observation and ("result" in observation or "error" in observation):
        if observation.get("error"):
            return f"[tool error] {json.dumps(observation['error'], ensure_ascii=False, default=str)}"
        result = observation.get("result")
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    shown = {k: v for k, v in observation.items() if k not in ("done", "reward", "metadata")}
    return json.dumps(shown, ensure_ascii=False, default=str)


Reader = Callable[[Any, str, type[CharterError]], Trajectory]

#: The formats a trajectory is read from: one entry a format.
READERS: dict[str, Reader] = {
    "openai": read_openai,
    "anthropic": read_anthropic,
    "trl": read_trl,
    "verifiers": read_verifiers,
    "openenv": read_openenv,
}


def read_trajectory(
    value: Any, format: str = "openai", where: str = "trajectory", error: type[CharterError] = DatasetError
) -> Trajectory:
    """A trajectory read from `value` in `format` (a key of `READERS`); a bad one raises `error` naming `where`, the
    message and the key."""
    reader = READERS.get(format)
    if reader is None:
        raise error(f"{where}: format: unknown trajectory format {format!r} (use {', '.join(READERS)})")
    return reader(value, where, error)


def read_trajectories(
    rows: Iterable[tuple[int, Any]], format: str, source: str, error: type[CharterError] = DatasetError
) -> list[Trajectory]:
    """Numbered rows (`iter_jsonl`'s `(line, row)`) read as trajectories; a bad row names `source:line`."""
    return [read_trajectory(row, format, f"{source}:{line}", error) for line, row in rows]


# Writing: TRL's conversational format, tool calls kept.


def trl_message(message: Message) -> dict[str, Any]:
    """One message as TRL's conversational (and tool-calling) datasets hold it."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [c.to_trl() for c in message.tool_calls]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
    return out


def to_trl(trajectory: Trajectory, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The trajectory as a TRL conversational row: `{"messages": [...]}` with tool calls kept, and `tools` (these,
    or the trajectory's own) where there are any."""
    row: dict[str, Any] = {"messages": [trl_message(m) for m in trajectory.messages]}
    tools = tools if tools is not None else trajectory.tools
    if tools:
        row["tools"] = tools
    return row
