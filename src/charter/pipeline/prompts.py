"""Load prompts from a file, a Hugging Face dataset, the bundled set or the config itself."""

from __future__ import annotations

import csv
import io
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from charter.errors import ConfigError
from charter.messages import as_messages
from charter.pipeline.config import PromptsConfig
from charter.records import Message, Prompt, as_dicts
from charter.tables import decode_utf8, iter_jsonl

CHARS_PER_TOKEN = 4


@dataclass
class PromptSet:
    """Prompts ready for the stages, and what was left out on the way."""

    rows: list[Prompt] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def prompt_id(messages: list[Message]) -> str:
    """A stable id from the prompt's content."""
    blob = json.dumps(as_dicts(messages), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_file(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.exists():
        raise ConfigError(f"{path}: prompt file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        yield from iter_jsonl(path, ConfigError)
    elif suffix == ".csv":
        yield from _read_csv(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield index, row
    else:
        raise ConfigError(f"{path}: unsupported prompt file type '{suffix}' (use .jsonl, .csv or .parquet)")


def _read_csv(path: Path) -> Iterator[tuple[int, dict]]:
    text = decode_utf8(path.read_bytes(), path, ConfigError)
    for line_no, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), 2):
        yield line_no, row


def _read_hf(config: PromptsConfig) -> Iterator[tuple[int, dict]]:
    try:
        import datasets
    except ImportError:
        from charter.errors import MissingExtra

        raise MissingExtra("datasets", "hub") from None
    data = datasets.load_dataset(config.hf_dataset, config.hf_config, split=config.split)
    for index, row in enumerate(data, 1):
        yield index, dict(row)


def _truncate(messages: list[Message], max_chars: int) -> list[Message]:
    """Keep the start of the last message so the whole prompt fits `max_chars`."""
    others = sum(len(m.content) for m in messages[:-1])
    keep = max(max_chars - others, 0)
    return messages[:-1] + [Message(role=messages[-1].role, content=messages[-1].content[:keep])]


def load_prompts(config: PromptsConfig) -> PromptSet:
    """Read, normalise, shuffle and limit prompts; empty and too-long prompts are counted."""
    if config.inline is not None:
        source, rows = "inline", ((i, {config.column: v}) for i, v in enumerate(config.inline, 1))
    elif config.bundled:
        from charter.data import bundled_prompts_path

        path = bundled_prompts_path()
        source, rows = "bundled", _read_file(path)
    elif config.hf_dataset:
        source, rows = f"hf:{config.hf_dataset}", _read_hf(config)
    else:
        source, rows = str(config.path), _read_file(Path(str(config.path)))
    out = PromptSet(counts={"prompts_total": 0, "prompts_empty": 0, "prompts_too_long": 0,
                            "prompts_truncated": 0, "prompts_skipped_too_long": 0, "prompts_duplicate": 0})
    seen: set[str] = set()
    collected: list[Prompt] = []
    for line_no, row in rows:
        out.counts["prompts_total"] += 1
        value = row.get(config.column)
        if value is None and config.column == "prompt":
            value = row.get("messages")
        where = f"{source}:{line_no}"
        if value is None and config.column not in row and "messages" not in row:
            raise ConfigError(f"{where}: no '{config.column}' column (columns: {', '.join(sorted(row))})")
        messages = as_messages(value, where, error=ConfigError, allow_empty=True)
        if not messages:
            out.counts["prompts_empty"] += 1
            continue
        if config.max_prompt_tokens:
            max_chars = config.max_prompt_tokens * CHARS_PER_TOKEN
            if sum(len(m.content) for m in messages) > max_chars:
                out.counts["prompts_too_long"] += 1
                if config.too_long == "skip":
                    out.counts["prompts_skipped_too_long"] += 1
                    continue
                out.counts["prompts_truncated"] += 1
                messages = _truncate(messages, max_chars)
        pid = prompt_id(messages)
        if pid in seen:
            out.counts["prompts_duplicate"] += 1
            continue
        seen.add(pid)
        collected.append(Prompt(prompt_id=pid, messages=messages, source=source))
    if config.shuffle:
        random.Random(config.seed).shuffle(collected)
    out.rows = collected[: config.limit] if config.limit else collected
    out.counts["prompts_used"] = len(out.rows)
    return out


def sync_prompt_set(store: Any, config: PromptsConfig, loaded: PromptSet | None) -> list[str]:
    """Bring the run's prompt set in line with its source as `on_change` says; returns notes for the user.

    The first start stores the loaded set. On a resume the source is compared with the set in use: `keep`
    says what differs, `extend` adds the new prompts, `replace` adds them and takes the missing ones out of use
    (their items stay in the store).
    """
    if not store.count("prompts"):
        assert loaded is not None
        store.put_prompts(loaded.rows)
        store.set_meta(prompt_counts=loaded.counts)
        return []
    if loaded is None:
        return []
    in_use = {p.prompt_id for p in store.prompts()}
    source = {p.prompt_id for p in loaded.rows}
    new, gone = [p for p in loaded.rows if p.prompt_id not in in_use], in_use - source
    if not new and not gone:
        return []
    if config.on_change == "keep":
        return [f"prompts: the source has {len(new)} prompt(s) the run does not and lacks {len(gone)} of its "
                f"{len(in_use)}; the run keeps its prompt set (prompts.on_change: extend adds the new ones, "
                "replace follows the source)"]
    store.put_prompts(new)
    notes = [f"prompts: added {len(new)} new prompt(s) from the source"]
    if config.on_change == "replace":
        removed = store.keep_prompts(source)
        notes.append(f"prompts: {removed} prompt(s) no longer in the source left the set (their items stay in the "
                     "store, out of the dataset)")
    store.set_meta(prompt_counts=loaded.counts)
    return notes
