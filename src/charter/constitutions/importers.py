"""Import constitutions from other formats, and write any constitution back out as clean YAML.

The Hugging Face CAI recipe ("Constitutional AI with Open LLMs"; its datasets were generated with
huggingface/llm-swarm's `examples/hh` and `examples/constitutional-ai`) stores a constitution as JSON::

    {"constitutions": [{"critic": "...", "revision": "..."}, ...],
     "system_chat": [[{"role": "user", "content": ...}, ...], ...]}

How it maps onto our schema (`import_hf_cai`):

- Entry *i* (1-based) of `constitutions` becomes principle `hf-cai-01`, `hf-cai-02`, ... (zero-padded
  to at least two digits), so ids are stable for a given file. A file that is just the list of
  entries (the older `constitution.json` shape) is accepted too.
- `critique_request` and `revision_request` are the `critic` and `revision` texts. Our requests are
  `str.format` templates, so literal braces are doubled: the critic still sees the original text.
- `description` is the critic text as written.
- The recipe has no judge question, so `comparison` is derived from the revision text, which names
  the property wanted in the imperative: "Which of these assistant responses better meets the
  standard of this instruction, so that it would need less rewriting: "<revision>"". It quotes the
  instruction verbatim rather than rephrasing it, so no meaning is lost or invented.
- Each `system_chat` conversation has the recipe's shape: an optional system message, a user/assistant
  exchange ending with the assistant's answer, then a critique request (user), the critique
  (assistant), a revision request (user) and the revision (assistant). It becomes a few-shot example
  when its critique request is one of the file's `critic` texts (compared ignoring case and
  whitespace), which gives the example's principle. Entries that do not fit are skipped and
  reported with a reason (`HFImport.skipped`): an example whose request is not in the file would be
  shown with some other principle's request, which would teach the wrong thing.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from charter.api_args import public
from charter.constitutions.schema import UNSET_PRINCIPLE_KEYS, Constitution
from charter.errors import ConstitutionError
from charter.tables import read_text_file
from charter.yamlio import validation_message

#: Strings longer than this (in characters) are written as folded block scalars.
LONG_STRING = 80


@dataclass
class HFImport:
    """The result of importing a Hugging Face CAI recipe file."""

    constitution: Constitution
    """The imported constitution."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """`system_chat` entries that did not fit the few-shot shape: (0-based index, reason)."""


@public
def import_hf_cai(path: str | Path, name: str | None = None) -> Constitution:
    """Import a Hugging Face CAI recipe JSON file as a `Constitution` (the mapping is in the module docstring).

    Each `critic`/`revision` entry becomes a principle `hf-cai-NN`; each `system_chat` conversation that fits the
    few-shot shape becomes an example, and the others are left out (`read_hf_cai` reports them).

    Args:
        path: The recipe's JSON file: an object with a `constitutions` list (and optionally `system_chat`), or
            the bare list of `{critic, revision}` entries.
        name: The constitution's name; None uses the file's name without its extension.

    Returns:
        The imported constitution.

    Raises:
        ConstitutionError: The file is missing or not valid JSON, lacks the `constitutions` list or has a malformed
            entry, or the result is not a valid constitution.
    """
    return read_hf_cai(path, name).constitution


def read_hf_cai(path: str | Path, name: str | None = None) -> HFImport:
    """Import a Hugging Face CAI recipe JSON file, also reporting the skipped `system_chat` entries."""
    path = Path(path)
    data = _read_json(path)
    entries, chats = _split_top_level(data, path)
    principles = [_principle(entry, i, len(entries), path) for i, entry in enumerate(entries)]
    by_critic = {_normalise(entry["critic"]): p["id"] for entry, p in zip(entries, principles)}
    examples, skipped = [], []
    for index, chat in enumerate(chats):
        example = _example(chat, by_critic)
        if isinstance(example, str):
            skipped.append((index, example))
        else:
            examples.append(example)
    fields = {
        "name": name or path.stem,
        "version": "1",
        "description": f"Imported from the Hugging Face CAI recipe file {path.name}.",
        "principles": principles,
        "examples": examples,
    }
    try:
        return HFImport(Constitution.model_validate(fields), skipped)
    except ValidationError as exc:
        raise ConstitutionError(validation_message(exc, str(path), {})) from None


def _read_json(path: Path) -> Any:
    text = read_text_file(path, ConstitutionError, "JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConstitutionError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def _split_top_level(data: Any, path: Path) -> tuple[list[dict], list[Any]]:
    if isinstance(data, list):
        entries, chats = data, []
    elif isinstance(data, dict):
        if "constitutions" not in data:
            raise ConstitutionError(f"{path}: missing key 'constitutions'")
        chats = data.get("system_chat")
        entries, chats = data["constitutions"], [] if chats is None else chats
    else:
        raise ConstitutionError(f"{path}: expected an object with a 'constitutions' list")
    if not isinstance(entries, list) or not entries:
        raise ConstitutionError(f"{path}: constitutions: expected a non-empty list of {{critic, revision}} objects")
    if not isinstance(chats, list):
        raise ConstitutionError(f"{path}: system_chat: expected a list of conversations")
    for i, entry in enumerate(entries):
        _check_entry(entry, i, path)
    return entries, chats


def _check_entry(entry: Any, index: int, path: Path) -> None:
    if not isinstance(entry, dict):
        raise ConstitutionError(f"{path}: constitutions[{index}]: expected an object with 'critic' and 'revision'")
    for key in ("critic", "revision"):
        if key not in entry:
            raise ConstitutionError(f"{path}: constitutions[{index}]: missing key '{key}'")
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ConstitutionError(f"{path}: constitutions[{index}].{key}: expected a non-empty string")


def _principle(entry: dict, index: int, count: int, path: Path) -> dict:
    critic, revision = entry["critic"].strip(), entry["revision"].strip()
    width = max(2, len(str(count)))
    return {
        "id": f"hf-cai-{index + 1:0{width}d}",
        "description": critic,
        "critique_request": _escape(critic),
        "revision_request": _escape(revision),
        "comparison": _escape(comparison_from_revision(revision)),
        "weight": 1.0,
        "tags": ["imported", "hf-cai"],
    }


def comparison_from_revision(revision: str) -> str:
    """The judge question for an imported principle: which response already meets the revision's standard."""
    return (
        "Which of these assistant responses better meets the standard of this instruction, "
        f'so that it would need less rewriting: "{revision.strip()}"'
    )


def _escape(text: str) -> str:
    """Make literal text safe as a `str.format` template."""
    return text.replace("{", "{{").replace("}", "}}")


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _example(chat: Any, by_critic: dict[str, str]) -> dict | str:
    """A few-shot example from one `system_chat` conversation, or the reason it does not fit."""
    if not isinstance(chat, list) or not all(_is_message(m) for m in chat):
        return "not a list of {role, content} messages"
    head = [m for m in chat[:1] if m["role"] == "system"]
    turns = chat[len(head) :]
    roles = [m["role"] for m in turns]
    expected = ["user", "assistant"] * (len(turns) // 2)
    if len(turns) < 6 or roles != expected:
        return (
            "expected alternating user/assistant turns: an exchange, then critique request, critique, "
            "revision request and revision"
        )
    request, critique, _, revision = turns[-4:]
    principle = by_critic.get(_normalise(request["content"]))
    if principle is None:
        return "its critique request is not one of the file's 'critic' texts"
    conversation = [{"role": m["role"], "content": m["content"]} for m in head + turns[:-4]]
    return {
        "conversation": conversation,
        "principle": principle,
        "critique": critique["content"].strip(),
        "revision": revision["content"].strip(),
    }


def _is_message(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") in ("system", "user", "assistant")
        and isinstance(message.get("content"), str)
    )


class _BlockDumper(yaml.SafeDumper):
    """Block style for long strings (`|` for multi-line text, `>` for long single lines), list items
    indented under their key, and short lists of words (tags) on one line."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else (">" if len(value) > LONG_STRING else None)
    if value.endswith("\n\n") or (style and not value.strip()):
        # a block scalar keeping several final newlines ("|+") would swallow the blank line that
        # separates principles, and ends the document early ("...")
        style = '"'
    if style and any(line[:1] in (" ", "\t") for line in value.split("\n")):
        style = '"'  # PyYAML folds a line that starts with a space, which then loads back with a line break
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.SequenceNode:
    words = all(isinstance(v, str) and v and " " not in v and len(v) < 30 for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=words and len(value) <= 8)


_BlockDumper.add_representer(str, _represent_str)
_BlockDumper.add_representer(list, _represent_list)


def _dump(data: object) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=96)


def constitution_yaml(constitution: Constitution, header: str | None = None) -> str:
    """A constitution as clean YAML: keys in schema order, block style for long strings, a blank
    line between principles.

    PyYAML falls back to quoting any string that a block scalar cannot hold exactly (trailing
    spaces, for instance), so the text always loads back to the same constitution and hash.
    """
    data = constitution.model_dump(mode="json", exclude_none=True)
    if not data.get("levels"):
        data.pop("levels", None)
    for principle in data["principles"]:  # criteria only where a principle has some, a gate only where set
        for criterion in principle.get("criteria", []):
            if criterion.get("gate") is False:
                criterion.pop("gate")
        for key, unset in UNSET_PRINCIPLE_KEYS.items():
            if key in principle and principle[key] == unset:
                principle.pop(key)
    lists = {key: data.pop(key) for key in ("principles", "examples")}
    parts = [_dump(data)]
    for key, items in lists.items():
        # each item dumped alone and indented as a whole, so nothing inside a block scalar is touched
        blocks = [textwrap.indent(_dump([item]), "  ") for item in items]
        parts.append(f"{key}:\n" + "\n".join(blocks) if items else _dump({key: []}))
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) if header else ""
    return comment + "\n".join(parts)


def dump_constitution_yaml(constitution: Constitution, path: str | Path, header: str | None = None) -> Path:
    """Write a constitution as clean YAML (see `constitution_yaml`); `header` becomes a leading comment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(constitution_yaml(constitution, header), encoding="utf-8")
    return path
