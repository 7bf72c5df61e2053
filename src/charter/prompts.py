"""Prompts: where they come from (`PromptsConfig`, the run config's `prompts:` section) and how they are read
from a file, a Hugging Face dataset, the bundled set or the config itself.

The bundled set (`bundled_prompts_path()`, `charter/data/prompts.jsonl`, used by the quickstart) holds one prompt a
line: `id`, `category`, and either `prompt` (a string) or `messages` (a list of `{role, content}` ending with a user
turn). Red-team categories name a harm area (weapons, self-harm, cyber, ...); ordinary requests have `helpful-*`
categories, and `helpful-borderline` ones sound alarming but are benign, to catch over-refusal. The file is ordered
so that any prefix mixes red-team and helpful prompts across categories."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from charter.errors import ConfigError
from charter.records import Message, Prompt, as_dicts
from charter.records.base import as_messages
from charter.records.trajectory import read_tools
from charter.tables import iter_csv, iter_jsonl
from charter.yamlio import ConfigModel

CHARS_PER_TOKEN = 4


def bundled_prompts_path() -> Path:
    """The path of the bundled prompt set (`prompts.jsonl`)."""
    return Path(str(resources.files("charter").joinpath("data", "prompts.jsonl")))


class PromptsConfig(ConfigModel):
    """Where prompts come from. Exactly one of `path`, `hf_dataset`, `inline`, or `bundled: true`."""

    path: str | None = None
    """A JSONL, CSV or parquet file (relative paths resolve against the config file)."""
    bundled: bool = False
    """Use charter's bundled prompt set (red-team and helpfulness requests); the default if no source is given."""
    hf_dataset: str | None = None
    """A Hugging Face dataset name, loaded with `datasets.load_dataset`."""
    hf_config: str | None = None
    """The dataset's config name, if it has several."""
    split: str = "train"
    """The dataset split."""
    column: str = "prompt"
    """Column holding the prompt: a string, or a list of chat messages (`messages` is also tried)."""
    category_column: str = "category"
    """Column holding a prompt's category, the topic synthesis balances by (`source`, say, to give each source of
    seed prompts its own quota)."""
    inline: list[str | list[Message]] | None = None
    """Prompts written in the config: strings or message lists."""
    limit: int | None = Field(default=None, gt=0)
    """Use at most this many prompts (after shuffling)."""
    shuffle: bool = False
    """Shuffle before applying the limit."""
    seed: int = 0
    """Shuffle seed."""
    max_prompt_tokens: int | None = Field(default=8192, gt=0)
    """Longest prompt allowed, estimated at 4 characters per token; longer ones are handled by `too_long`
    (null: no cap)."""
    too_long: Literal["truncate", "skip"] = "truncate"
    """What to do with a prompt over `max_prompt_tokens`: keep its start, or skip it. Counted in the report."""
    on_change: Literal["keep", "extend", "replace"] = "keep"
    """When the source holds other prompts than the run's prompt set (resuming after editing the file): `keep`
    the run's set (and say so), `extend` it with the new prompts, or `replace` it by the source's (items of the
    prompts that left stay in the store, out of the dataset). With `keep`, a source that cannot be read on a resume
    (a Hub dataset offline) only warns; a `path` that does not exist is an error whatever this says."""

    @model_validator(mode="after")
    def _one_source(self) -> PromptsConfig:
        given = [n for n in ("path", "hf_dataset", "inline") if getattr(self, n)] + (
            ["bundled"] if self.bundled else []
        )
        if len(given) > 1:
            raise ValueError(f"give one prompt source, not {' and '.join(given)}")
        if not given:
            self.bundled = True
        return self


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

        yield from enumerate(pq.read_table(path).to_pylist(), 1)
    else:
        raise ConfigError(f"{path}: unsupported prompt file type '{suffix}' (use .jsonl, .csv or .parquet)")


def _read_csv(path: Path) -> Iterator[tuple[int, dict]]:
    return iter_csv(path, ConfigError)  # strict: a stray quote is an error naming its line, not merged rows


def _read_hf(config: PromptsConfig) -> Iterator[tuple[int, dict]]:
    try:
        import datasets
    except ImportError:
        from charter.errors import MissingExtra

        raise MissingExtra("datasets", "hub") from None
    assert config.hf_dataset is not None  # the source is a Hub dataset
    data = datasets.load_dataset(config.hf_dataset, config.hf_config, split=config.split)
    for index, row in enumerate(data, 1):
        yield index, dict(row)


def _truncate(messages: list[Message], max_chars: int) -> list[Message]:
    """Keep the start of the last message so the whole prompt fits `max_chars`."""
    others = sum(len(m.content) for m in messages[:-1])
    keep = max(max_chars - others, 0)
    return messages[:-1] + [messages[-1].model_copy(update={"content": messages[-1].content[:keep]})]


EXTRA_COLUMNS = ("category", "reference", "verifier")


def _extras(row: dict, where: str, category_column: str = "category") -> dict[str, str]:
    """The optional `category` (from `category_column`), `reference` and `verifier` columns of a row, as text."""
    out = {}
    for column in EXTRA_COLUMNS:
        read = category_column if column == "category" else column
        value = row.get(read)
        if value is None or value == "":
            continue
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: '{read}' must be text or a number, not {type(value).__name__}")
        out[column] = str(value)
    return out


def _source(config: PromptsConfig) -> tuple[str, Iterator[tuple[int, dict]]]:
    if config.inline is not None:
        return "inline", ((i, {config.column: v}) for i, v in enumerate(config.inline, 1))
    if config.bundled:
        return "bundled", _read_file(bundled_prompts_path())
    if config.hf_dataset:
        return f"hf:{config.hf_dataset}", _read_hf(config)
    return str(config.path), _read_file(Path(str(config.path)))


class SeenIds:
    """The prompt ids met so far (`prompt_id`'s 16 hex digits), as 8-byte integers: a sorted array and a small set
    of the latest, merged into it now and then. A million take ~8 MB where a set of the strings took ~125 MB."""

    LATEST = 65536

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self.merged = np.empty(0, dtype=np.uint64)
        self.latest: set[int] = set()

    def add(self, pid: str) -> bool:
        """Note `pid`; True when it was not met before."""
        value = int(pid, 16)
        if value in self.latest:
            return False
        key = self._np.uint64(value)  # a plain int above 2**63 would make numpy convert the whole array
        at = int(self.merged.searchsorted(key))
        if at < len(self.merged) and self.merged[at] == key:
            return False
        self.latest.add(value)
        if len(self.latest) >= self.LATEST:
            latest = self._np.fromiter(self.latest, dtype=self._np.uint64, count=len(self.latest))
            self.merged = self._np.sort(self._np.concatenate([self.merged, latest]))
            self.latest = set()
        return True


def _prompts(config: PromptsConfig, counts: dict[str, int]) -> Iterator[Prompt]:
    """The source's prompts, normalised and checked, one at a time (empty, too-long and duplicate ones counted
    into `counts` and left out). Holds only the ids seen, for the duplicates, 8 bytes each."""
    source, rows = _source(config)
    seen = SeenIds()
    for line_no, row in rows:
        counts["prompts_total"] += 1
        value = row.get(config.column)
        if value is None and config.column == "prompt":
            value = row.get("messages")
        where = f"{source}:{line_no}"
        if value is None and config.column not in row and "messages" not in row:
            raise ConfigError(f"{where}: no '{config.column}' column (columns: {', '.join(sorted(row))})")
        messages = as_messages(value, where, error=ConfigError, allow_empty=True)
        if not messages:
            counts["prompts_empty"] += 1
            continue
        if config.max_prompt_tokens:
            max_chars = config.max_prompt_tokens * CHARS_PER_TOKEN
            if sum(len(m.content) for m in messages) > max_chars:
                counts["prompts_too_long"] += 1
                if config.too_long == "skip":
                    counts["prompts_skipped_too_long"] += 1
                    continue
                counts["prompts_truncated"] += 1
                messages = _truncate(messages, max_chars)
        pid = prompt_id(messages)
        if not seen.add(pid):
            counts["prompts_duplicate"] += 1
            continue
        given = row.get("checklist")
        extras = _extras(row, where, config.category_column)
        tools = read_tools(row.get("tools"), where, ConfigError)
        yield Prompt(
            prompt_id=pid, messages=messages, source=source, checklist=given or None, tools=tools or None, **extras
        )


def _new_counts() -> dict[str, int]:
    return {
        "prompts_total": 0,
        "prompts_empty": 0,
        "prompts_too_long": 0,
        "prompts_truncated": 0,
        "prompts_skipped_too_long": 0,
        "prompts_duplicate": 0,
    }


def _checked(prompts: Iterator[Prompt], check: Callable[[Prompt], None] | None, first: int | None) -> Iterator[Prompt]:
    """The prompts, `check` called on the `first` of them (all when None): those a limited run uses."""
    for n, prompt in enumerate(prompts):
        if check is not None and (first is None or n < first):
            check(prompt)
        yield prompt


class StreamedPrompts:
    """A checked prompt source that is read again each time it is iterated, so that a million prompts are never in
    memory at once (only their ids, for duplicates). `len()` is the number of prompts in use."""

    def __init__(self, config: PromptsConfig, used: int) -> None:
        self.config, self.used = config, used

    def __iter__(self) -> Iterator[Prompt]:
        return itertools.islice(_prompts(self.config, _new_counts()), self.config.limit or None)

    def __len__(self) -> int:
        return self.used

    def __bool__(self) -> bool:
        return self.used > 0


def load_prompts(
    config: PromptsConfig, stream: bool = False, check: Callable[[Prompt], None] | None = None
) -> PromptSet:
    """Read, normalise, shuffle and limit prompts; empty and too-long prompts are counted. `check` is called on
    every prompt the run will use (it raises to refuse one), in the same pass.

    `stream`: check and count the whole source in one pass without keeping it, and give `rows` that read it again
    when iterated (a shuffle needs the whole set, so a shuffled source is held in memory all the same)."""
    counts = _new_counts()
    if stream and not config.shuffle:
        kept = sum(1 for _ in _checked(_prompts(config, counts), check, config.limit or None))  # one pass
        used = min(kept, config.limit) if config.limit else kept
        return PromptSet(rows=StreamedPrompts(config, used), counts={**counts, "prompts_used": used})  # type: ignore[arg-type]
    collected = list(_prompts(config, counts))
    if config.shuffle:
        random.Random(config.seed).shuffle(collected)
    rows = collected[: config.limit] if config.limit else collected
    if check is not None:
        for prompt in rows:
            check(prompt)
    return PromptSet(rows=rows, counts={**counts, "prompts_used": len(rows)})
