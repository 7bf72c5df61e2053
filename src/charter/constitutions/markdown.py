"""Import a prose spec written in Markdown (OpenAI's Model Spec, or any document with headings) as a constitution.

How a document maps onto the schema (`read_markdown_spec`):

- Each heading (outside code blocks) is a section. Its id is the heading's `{#id ...}` anchor where it has one, else
  a slug of its title. Its text, up to the next heading, is the principle's `description`, verbatim, less the example
  blocks (kept as the principle's `examples`); `source` records the file, the heading and its line.
- Levels: an anchor's `authority=` (or `level=`) attribute names the section's level. The order of the levels is the
  one stated (`levels` given, or `levels: [...]` in a YAML front matter), else the Model Spec's chain of command
  (`root, system, developer, user, guideline`) where every level named is one of those. Where no section names a
  level, a stated order maps heading depth onto levels (`#` the first, `##` the second, ...); with no order the
  constitution is flat. In a document with levels, a section without one (an overview, a heading that only groups
  others) is skipped, with that reason.
- `hard=true` makes a section a hard constraint; `default=a|b` a default that instructions at levels a and b may
  override. In the Model Spec's chain of command, user and guideline sections are defaults that developer and user
  instructions may override (the spec's "Follow all applicable instructions" says so).
- Questions are written from the text without paraphrase: "Which response better follows this section of the spec:
  <title>?", the section's text following it verbatim (`Source.questions` records it).
- An example block (a fenced block with `<system>`, `<developer>`, `<user>`, `<assistant>` or `<tool>` messages and
  a `<comparison>` of replies labelled `<!-- GOOD: why -->`, `<!-- BAD -->` or `<!-- OK -->`) gives a
  `SpecExample` of its section per comparison, and each GOOD reply against each BAD reply a labelled pair
  (`SpecPair`). A comparison with no BAD reply is a demonstration: an example, no pair.

A bad spec stops the import with one line naming the file, the line and what is wrong: a duplicate id, a level the
order does not name, a level named twice, an unclosed code block, a comparison with no GOOD reply or with a reply
that has no label.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from charter.api_args import public
from charter.constitutions.importers import read_hf_cai
from charter.constitutions.schema import LEVEL_TWICE, Constitution, SpecExample, load_constitution
from charter.errors import ArgumentError, ConstitutionError
from charter.tables import read_text_file
from charter.yamlio import validation_message

#: The Model Spec's levels of authority, highest first (its chain of command).
MODEL_SPEC_LEVELS = ("root", "system", "developer", "user", "guideline")
#: In the Model Spec, sections at these levels are defaults that instructions at the levels given may override.
MODEL_SPEC_DEFAULTS = {"user": ["developer", "user"], "guideline": ["developer", "user"]}
#: The id of the text before a spec's first heading, where there is some: reported skipped, never a principle.
PREAMBLE = "(preamble)"
#: The attributes a heading's `{#id ...}` anchor may carry.
ATTRIBUTES = ("authority", "level", "hard", "default", "tags")

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*(?:\{#([^\s}]+)([^}]*)\})?\s*$")
_FENCE = re.compile(r"^\s*(~~~+|```+)")
_TAG = re.compile(r"<(/?)(system|developer|user|assistant|tool|comparison)\b([^>]*)>")
_LABEL = re.compile(r"^\s*<!--\s*(GOOD|BAD|OK)\b(.*?)-->\s*", re.S)
_EXAMPLE_TITLE = re.compile(r"^\*\*Example\*\*:?\s*(.*)$")


@dataclass
class SpecPair:
    """One labelled pair of a spec: a GOOD reply against a BAD one of the same example, with the conversation."""

    id: str
    """`<section>-<12 hex digits>`: the section and a hash of the conversation and the two replies, so the same
    example keeps its id when the spec around it changes."""
    prompt: list[dict[str, str]]
    """The conversation before the replies, `{role, content}` with the spec's roles."""
    chosen: str
    """The GOOD reply."""
    rejected: str
    """The BAD reply."""
    section: str
    """The id of the section the example is in."""
    level: str | None
    """The section's level (None in a flat spec, or for a skipped section)."""
    why_chosen: str | None
    """The spec's reason for the GOOD label."""
    why_rejected: str | None
    """The spec's reason for the BAD label."""
    label_source: str
    """`spec:<file>:<line>`, where the comparison starts."""


@dataclass
class SpecImport:
    """The result of importing a constitution from another format (a Markdown spec, a CAI recipe, a YAML file)."""

    constitution: Constitution
    """The imported constitution."""
    pairs: list[SpecPair] | None = field(default_factory=list)
    """The labelled pairs of every example, skipped sections' included; None for a format that has none."""
    skipped: list[tuple[str, int | None, str]] = field(default_factory=list)
    """What the import left out, each with its reason: (section id or entry, its line where known, reason)."""
    sections: int = 0
    """How many sections (headings) the spec has (0 for a format without sections)."""

    def skip_reasons(self) -> Counter[str]:
        """How many sections were skipped for each reason."""
        return Counter(reason for _, _, reason in self.skipped)


@dataclass
class _Section:
    line: int
    depth: int
    title: str
    id: str
    attrs: dict[str, str]
    body: list[str] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class QuestionWriter:
    """Writes a section's questions with a model, where the user asks for that rather than the verbatim ones."""

    model: str
    """The model that writes them, recorded in each principle's `source.questions_by`."""
    write: Callable[[str, str], dict[str, str]]
    """(section title, section text) -> plain text for `critique_request`, `revision_request`, `comparison` and
    `rating` (no template variables: braces are escaped); the section's text still follows each question."""


#: The keys a `QuestionWriter` writes.
WRITTEN_QUESTIONS = ("critique_request", "revision_request", "comparison", "rating")


@public
def import_constitution(
    path: str | Path,
    source_format: str = "markdown",
    name: str | None = None,
    levels: list[str] | None = None,
) -> Constitution:
    """Import a constitution from another format, one of `IMPORTERS`: a Markdown prose spec (`markdown`, see
    `read_markdown_spec`), a Hugging Face CAI recipe JSON file (`hf-cai`, see `import_hf_cai`) or a constitution YAML
    file (`yaml`).

    Args:
        path: The file to import.
        source_format: A name in `IMPORTERS`: `markdown`, `hf-cai` or `yaml`.
        name: The constitution's name; None uses the spec's front matter, or the file's name without its extension.
        levels: For `markdown`, the order of the levels, highest first; None takes it from the document.

    Returns:
        The imported constitution.

    Raises:
        ArgumentError: The format is not one of `IMPORTERS`.
        ConstitutionError: The file is missing or not valid in its format (one line naming file:line and what is
            wrong).
    """
    if source_format not in IMPORTERS:
        raise ArgumentError("source_format", f"{source_format!r}: use one of {', '.join(IMPORTERS)}")
    return read_constitution(path, source_format, name, levels).constitution


def read_constitution(
    path: str | Path,
    source_format: str = "markdown",
    name: str | None = None,
    levels: list[str] | None = None,
    questions: QuestionWriter | None = None,
) -> SpecImport:
    """Import a file in one of the `IMPORTERS`' formats, with what the import left out (and a spec's labelled pairs).

    Raises:
        ConstitutionError: An unknown format, levels or a question writer for a format that has no sections, or a
            file that is not valid in its format.
    """
    if source_format not in IMPORTERS:
        raise ConstitutionError(f"--from {source_format}: unknown format (known: {', '.join(IMPORTERS)})")
    return IMPORTERS[source_format](Path(path), name, levels, questions)


def read_markdown_spec(
    path: str | Path, name: str | None = None, levels: list[str] | None = None, questions: QuestionWriter | None = None
) -> SpecImport:
    """Import a Markdown spec (the mapping is in the module docstring), with its labelled pairs and the sections it
    skipped; `questions` writes each principle's questions with a model instead of the verbatim ones."""
    path = Path(path)
    text = read_text_file(path, ConstitutionError, "Markdown spec")
    lines = text.splitlines()
    front, start = _front_matter(lines, path)
    order = _stated_order(levels, front, _key_line(lines[:start], "levels"), path)
    sections = _sections(lines, start, path)
    _unique_ids(sections, path)
    order = _level_order(sections, order, path)
    principles, skipped, pairs, positions = [], [], [], {}
    by_attribute = any(_level_of(s) for s in sections)
    for section in sections:
        if section.id == PREAMBLE or not (by_attribute or order):
            level = None
        else:
            level = _level_of(section) if by_attribute else _depth_level(section, order, path)
        if level is not None and level not in order:
            raise _error(
                path, section.line, f"{section.id}: unknown level '{level}' (the order names: {', '.join(order)})"
            )
        pairs += _pairs(section, level, path)
        reason = _skip_reason(section, level, order)
        if reason:
            skipped.append((section.id, section.line, reason))
            continue
        for key in ("", "id", "level", "hard", "default", "overridable_by", "examples"):
            positions[("principles", len(principles), key) if key else ("principles", len(principles))] = (
                section.line,
                1,
            )
        principles.append(_principle(section, level, order, path, questions))
    if not principles:
        raise ConstitutionError(f"{path}: no section could be a principle ({len(skipped)} skipped)")
    count = sum(section.id != PREAMBLE for section in sections)
    fields = {
        "name": name or front.get("name") or path.stem,
        "version": str(front.get("version", "1")),
        "description": front.get("description") or f"Imported from the Markdown spec {path.name}.",
        "principles": principles,
        "levels": list(order),
        "spec": spec_origin(path, front, count, len(skipped)),
    }
    try:
        constitution = Constitution.model_validate(fields)
    except ValidationError as exc:
        raise ConstitutionError(validation_message(exc, str(path), positions)) from None
    return SpecImport(constitution, pairs, skipped, count)


def spec_origin(path: Path, front: dict[str, Any], sections: int, skipped: int) -> dict[str, Any]:
    """The spec a constitution comes from (`SpecOrigin`): its file, version, hash and what the import skipped. The
    version is the front matter's `date` or `version` where it states one, else the file's hash."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stated = front.get("date") or front.get("version")
    version = str(stated) if stated is not None else f"sha256:{digest[:12]}"
    return {"file": path.name, "version": version, "sha256": digest, "sections": sections, "skipped": skipped}


def _read_hf_cai(
    path: Path, name: str | None, levels: list[str] | None, questions: QuestionWriter | None
) -> SpecImport:
    _no_sections("hf-cai", levels, questions)
    result = read_hf_cai(path, name)
    return SpecImport(result.constitution, None, [(f"system_chat[{i}]", None, why) for i, why in result.skipped])


def _read_yaml(path: Path, name: str | None, levels: list[str] | None, questions: QuestionWriter | None) -> SpecImport:
    _no_sections("yaml", levels, questions)
    if not path.is_file():
        raise ConstitutionError(f"{path}: file not found")
    constitution = load_constitution(path)
    return SpecImport(constitution.model_copy(update={"name": name}) if name else constitution, None)


def _no_sections(source_format: str, levels: list[str] | None, questions: QuestionWriter | None) -> None:
    if levels is not None or questions is not None:
        what = "--levels" if levels is not None else "--questions-by"
        raise ConstitutionError(f"{what} is for --from markdown: a {source_format} file has no sections")


#: The formats a constitution is imported from: name -> reader of (path, name, levels, question writer).
IMPORTERS: dict[str, Callable[[Path, str | None, list[str] | None, QuestionWriter | None], SpecImport]] = {
    "markdown": read_markdown_spec,
    "hf-cai": _read_hf_cai,
    "yaml": _read_yaml,
}


def _error(path: Path, line: int, what: str) -> ConstitutionError:
    return ConstitutionError(f"{path}:{line}:1: {what}")


def _front_matter(lines: list[str], path: Path) -> tuple[dict[str, Any], int]:
    """The YAML front matter (between `---` lines at the top) and the index of the first line after it."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1:end])) or {}
            except yaml.YAMLError as exc:
                raise _error(path, 1, f"front matter: invalid YAML: {exc}".splitlines()[0]) from None
            if not isinstance(data, dict):
                raise _error(path, 1, "front matter: expected a mapping (name, version, description, levels)")
            return data, end + 1
    raise _error(path, 1, "front matter: no closing '---'")


def _key_line(front: list[str], key: str) -> int:
    """The line of `key` in the front matter's lines (1 where it is not there: the caller gave it)."""
    return next((i + 1 for i, line in enumerate(front) if line.startswith(f"{key}:")), 1)


def _stated_order(levels: list[str] | None, front: dict[str, Any], line: int, path: Path) -> list[str]:
    """The order of levels the caller or the front matter (its `levels` at `line`) states; empty where none."""
    if levels is not None:
        order, line = [str(level).strip() for level in levels], 1
    elif "levels" in front:
        if not isinstance(front["levels"], list):
            raise _error(path, line, "levels: expected a list of level names, highest first")
        order = [str(level) for level in front["levels"]]
    else:
        return []
    seen: set[str] = set()
    for level in order:
        if level in seen:
            raise _error(path, line, f"levels: {LEVEL_TWICE.format(level)}")
        seen.add(level)
    return order


def _sections(lines: list[str], start: int, path: Path) -> list[_Section]:
    """The spec's sections, each with its body and its example blocks."""
    sections: list[_Section] = [_Section(start + 1, 0, "(before the first heading)", PREAMBLE, {})]
    index = start
    title: str | None = None
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence:
            end = _fence_end(lines, index, fence.group(1), path)
            block = lines[index + 1 : end]
            if _is_example(block):
                sections[-1].examples.extend(_examples(block, index + 2, title, path))
                _drop_title(sections[-1].body, title)
            else:
                sections[-1].body.extend(lines[index : end + 1])
            index, title = end + 1, None
            continue
        heading = _HEADING.match(line)
        if heading:
            depth, text, anchor, attrs = heading.groups()
            attributes = _attributes(attrs or "", index + 1, path)
            sections.append(_Section(index + 1, len(depth), text, anchor or _slug(text), attributes))
        else:
            titled = _EXAMPLE_TITLE.match(line)
            if titled:
                title = titled.group(1).strip() or None
            elif line.strip():
                title = None
            sections[-1].body.append(line)
        index += 1
    return sections if _has_content(sections[0]) else sections[1:]


def _has_content(section: _Section) -> bool:
    return bool(section.examples) or any(line.strip() for line in section.body)


def _drop_title(body: list[str], title: str | None) -> None:
    """Take an example's `**Example**: title` line (and the blank lines after it) off the end of a section's text."""
    if title is None:
        return
    last = max((i for i, line in enumerate(body) if line.strip()), default=-1)
    if last >= 0 and _EXAMPLE_TITLE.match(body[last]):
        del body[last:]
        while body and not body[-1].strip():
            body.pop()


def _fence_end(lines: list[str], index: int, marker: str, path: Path) -> int:
    for end in range(index + 1, len(lines)):
        if lines[end].strip().startswith(marker) and not lines[end].strip()[len(marker) :].strip():
            return end
    raise _error(path, index + 1, f"unclosed example block: no closing {marker}")


def _is_example(block: list[str]) -> bool:
    """Whether a fenced block is an example of replies (one without a `<comparison>` stays in the text)."""
    return any("<comparison>" in line for line in block)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-") or "section"


def _attributes(text: str, line: int, path: Path) -> dict[str, str]:
    """A heading anchor's `key=value` attributes, each key one of `ATTRIBUTES`."""
    attributes = {}
    for item in text.split():
        key, _, value = item.partition("=")
        if key not in ATTRIBUTES or not value:
            raise _error(
                path, line, f"anchor attribute '{item}': expected key=value, key one of {', '.join(ATTRIBUTES)}"
            )
        if key == "hard" and value not in ("true", "false"):
            raise _error(path, line, f"anchor attribute '{item}': hard is true or false")
        attributes[key] = value
    return attributes


def _unique_ids(sections: list[_Section], path: Path) -> None:
    first: dict[str, int] = {}
    for section in sections:
        if section.id in first:
            raise _error(path, section.line, f"duplicate id '{section.id}' (first at line {first[section.id]})")
        first[section.id] = section.line


def _level_of(section: _Section) -> str | None:
    return section.attrs.get("authority") or section.attrs.get("level")


def _level_order(sections: list[_Section], order: list[str], path: Path) -> list[str]:
    """The order of levels: the stated one, else the Model Spec's where the sections name only its levels."""
    named = [(s, _level_of(s)) for s in sections if _level_of(s)]
    if order or not named:
        return order
    for section, level in named:
        if level not in MODEL_SPEC_LEVELS:
            raise _error(
                path,
                section.line,
                f"{section.id}: unknown level '{level}': state the order (levels: [...] in the front matter, or "
                f"--levels), or use the chain of command's {', '.join(MODEL_SPEC_LEVELS)}",
            )
    return list(MODEL_SPEC_LEVELS)


def _depth_level(section: _Section, order: list[str], path: Path) -> str:
    if section.depth > len(order):
        raise _error(
            path,
            section.line,
            f"{section.id}: a level-{section.depth} heading has no level: the order names {len(order)} "
            f"({', '.join(order)}), one per heading depth",
        )
    return order[section.depth - 1]


def _skip_reason(section: _Section, level: str | None, order: list[str]) -> str | None:
    if section.id == PREAMBLE:
        return "text before the first heading: no heading names it"
    if order and level is None:
        return "no level: an overview or grouping section in a spec whose rules carry levels"
    if not "\n".join(section.body).strip():
        return "no text of its own under the heading"
    return None


def _principle(
    section: _Section, level: str | None, order: list[str], path: Path, questions: QuestionWriter | None
) -> dict[str, Any]:
    title = section.title.replace("{", "{{").replace("}", "}}")
    said = "\n\nThe section says:\n{principle}"
    description = "\n".join(section.body).strip("\n")
    principle: dict[str, Any] = {
        "id": section.id,
        "description": description,
        "critique_request": f"Identify specific ways in which the assistant's last response does not follow this "
        f"section of the spec: {title}.{said}",
        "revision_request": f"Rewrite the assistant's response so that it follows this section of the spec: "
        f"{title}.{said}",
        "comparison": f"Which response better follows this section of the spec: {title}?{said}",
        "rating": f"How well does the response follow this section of the spec: {section.title}?",
        "tags": ["spec", *[t for t in section.attrs.get("tags", "").split(",") if t]],
        "source": {"file": path.name, "line": section.line, "heading": section.title},
        "examples": section.examples,
    }
    if questions is not None:
        written = _written_questions(questions, section, description, path)
        for key in ("critique_request", "revision_request", "comparison"):
            principle[key] = written[key].replace("{", "{{").replace("}", "}}") + said
        principle["rating"] = written["rating"]
        principle["source"] |= {"questions": "model", "questions_by": questions.model}
    if level is not None:
        principle["level"] = level
    if section.attrs.get("hard") == "true":
        principle["hard"] = True
    overriders = _overriders(section, level, order)
    if overriders:
        principle["default"], principle["overridable_by"] = True, overriders
    return principle


def _written_questions(questions: QuestionWriter, section: _Section, text: str, path: Path) -> dict[str, str]:
    written = questions.write(section.title, text)
    missing = [key for key in WRITTEN_QUESTIONS if not str(written.get(key) or "").strip()]
    if missing:
        raise _error(path, section.line, f"{section.id}: {questions.model} wrote no {', '.join(missing)}")
    return {key: " ".join(str(written[key]).split()) for key in WRITTEN_QUESTIONS}


def _overriders(section: _Section, level: str | None, order: list[str]) -> list[str]:
    stated = section.attrs.get("default")
    if stated:
        return [level for level in re.split(r"[|,]", stated) if level]
    if order == list(MODEL_SPEC_LEVELS) and level in MODEL_SPEC_DEFAULTS:
        return MODEL_SPEC_DEFAULTS[level]
    return []


def _examples(block: list[str], first_line: int, title: str | None, path: Path) -> list[dict[str, Any]]:
    """The spec examples of a fenced block's lines (the first at `first_line`): one per `<comparison>`, each with the
    conversation before it, where an earlier comparison stands by its first GOOD reply."""
    text = "\n".join(block)
    conversation: list[dict[str, str]] = []
    examples: list[dict[str, Any]] = []
    position = 0
    while True:
        match = _TAG.search(text, position)
        if match is None:
            break
        closing, role = match.group(1), match.group(2)
        line = first_line + text.count("\n", 0, match.start())
        if closing:
            raise _error(path, line, f"example block: </{role}> closes nothing")
        if role == "comparison":
            end = text.find("</comparison>", match.end())
            if end < 0:
                raise _error(path, line, "example block: <comparison> is never closed")
            replies = _replies(text[match.end() : end], line, path)
            examples.append({"title": title, "conversation": list(conversation), "replies": replies, "line": line})
            conversation.append({"role": "assistant", "content": _first_good(replies)})
            position = end + len("</comparison>")
            continue
        content, position = _element(text, match, role, line, path)
        conversation.append({"role": role, "content": content})
    return examples


def _element(text: str, match: re.Match[str], role: str, line: int, path: Path) -> tuple[str, int]:
    end = text.find(f"</{role}>", match.end())
    if end < 0:
        raise _error(path, line, f"example block: <{role}> is never closed")
    return text[match.end() : end].strip("\n"), end + len(f"</{role}>")


def _replies(text: str, line: int, path: Path) -> list[dict[str, Any]]:
    replies = []
    position = 0
    while True:
        match = _TAG.search(text, position)
        if match is None:
            break
        at = line + text.count("\n", 0, match.start())
        if match.group(2) != "assistant" or match.group(1):
            raise _error(path, at, f"comparison: expected <assistant> replies, found {match.group(0)}")
        content, position = _element(text, match, "assistant", at, path)
        label = _LABEL.match(content)
        if label is None:
            raise _error(path, at, "comparison: a reply without a GOOD, BAD or OK label (<!-- GOOD: why -->)")
        why = label.group(2).strip().removeprefix(":").strip()
        replies.append({"label": label.group(1).lower(), "content": content[label.end() :], "why": why or None})
    if not replies:
        raise _error(path, line, "comparison: no replies")
    if not any(reply["label"] == "good" for reply in replies):
        raise _error(path, line, "comparison: no GOOD reply")
    return replies


def _first_good(replies: list[dict[str, Any]]) -> str:
    return next(reply["content"] for reply in replies if reply["label"] == "good")


def _pairs(section: _Section, level: str | None, path: Path) -> list[SpecPair]:
    return _labelled_pairs(section.id, level, section.examples, path.name)


def example_pairs(constitution: Constitution) -> list[SpecPair]:
    """The labelled pairs of a constitution's principles' own examples (each GOOD reply against each BAD one), with
    the ids and columns the import writes (`write_spec_pairs`)."""
    pairs = []
    for principle in constitution.principles:
        file = principle.source.file if principle.source else constitution.name
        examples = [_example_dict(example) for example in principle.examples]
        pairs += _labelled_pairs(principle.id, principle.level, examples, file)
    return pairs


def _example_dict(example: SpecExample) -> dict[str, Any]:
    return {
        "conversation": [{"role": m.role, "content": m.content} for m in example.conversation],
        "replies": [r.model_dump() for r in example.replies],
        "line": example.line,
    }


def _labelled_pairs(section: str, level: str | None, examples: list[dict[str, Any]], file: str) -> list[SpecPair]:
    pairs = []
    for example in examples:
        goods = [r for r in example["replies"] if r["label"] == "good"]
        bads = [r for r in example["replies"] if r["label"] == "bad"]
        for good in goods:
            for bad in bads:
                digest = hashlib.sha256(orjson.dumps([example["conversation"], good["content"], bad["content"]]))
                pairs.append(
                    SpecPair(
                        id=f"{section}-{digest.hexdigest()[:12]}",
                        prompt=[dict(m) for m in example["conversation"]],
                        chosen=good["content"],
                        rejected=bad["content"],
                        section=section,
                        level=level,
                        why_chosen=good["why"],
                        why_rejected=bad["why"],
                        label_source=f"spec:{file}:{example['line']}",
                    )
                )
    return pairs


def write_spec_pairs(path: str | Path, pairs: list[SpecPair]) -> Path:
    """Write a spec's labelled pairs as JSONL, one `SpecPair` a line (the human-pair columns `id`, `prompt`, `chosen`,
    `rejected`, `label_source`, and the section, level and reasons)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(asdict(pair)) + b"\n" for pair in pairs))
    return path
