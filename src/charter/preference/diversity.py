"""The diversity of a dataset: `charter.diversity(...)` on rows, a `datasets.Dataset`, a JSONL/parquet file or a run
directory, and the figures of a run's dataset, measured once when the run writes it (store meta `diversity`) and
read from there by `charter status --json`, the run report and the dataset card.

Each field is measured on its own: `prompt` (the distinct prompts: a prompt with several pairs counts once),
`chosen`, `rejected`, `response` (an SFT row's last message; in a run, the final revision) and `text`. The rows are
read once, as a stream, into a seeded sample per field (`charter.stats.diversity.Sampler`), so that memory and the
estimators' cost stay bounded however many rows there are; reading is O(n).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from charter.api_args import Kinds, Range, public
from charter.errors import ArgumentError, DatasetError
from charter.preference.manifest import dataset_manifest
from charter.preference.selection import field_text
from charter.providers.embeddings import Prefetch, embedder, reads_nothing
from charter.records import Record, fingerprint
from charter.runs.files import RunFiles
from charter.runs.store import RunStore, open_store
from charter.stats.diversity import (
    METRICS,
    DiversityConfig,
    Embed,
    FieldDiversity,
    Sampler,
    Unread,
    diversity_table,
    figure_notes,
    measure_fields,
)
from charter.tables import iter_jsonl

FIELDS = ("prompt", "chosen", "rejected", "response", "text")
#: rows read from a parquet file at once
BATCH = 4096


class DiversityReport(Record):
    """The diversity of a dataset: every figure of each of its text fields, and how the samples were drawn."""

    source: str
    """What was measured: a file, a run directory, `rows` or `dataset`."""
    measured_at: str
    """When (ISO 8601, UTC)."""
    seed: int
    """Seed of the samples."""
    config: DiversityConfig
    """The sample sizes and the embedding model."""
    fields: dict[str, FieldDiversity] = Field(default_factory=dict)
    """The figures per field (`prompt`, `chosen`, `rejected`, `response`, `text`)."""
    dataset_key: str | None = None
    """For a run: the fingerprint of the dataset manifest measured (the dataset files as then written)."""


# -- rows to texts --------------------------------------------------------------------------------------------


def row_texts(row: Any, where: str) -> dict[str, str]:
    """The text of each field a row has: a `PreferenceRow`/`SFTRow`-like mapping, or a plain string (`text`); a
    malformed row is a one-line error naming `where` (the row) and the column."""
    if isinstance(row, str):
        return {"text": row}
    if isinstance(row, Record):
        row = row.model_dump()
    if not isinstance(row, Mapping):
        raise DatasetError(f"{where}: expected a mapping of columns or a string, got {type(row).__name__}")
    out: dict[str, str] = {}
    column = ""
    try:
        for column in FIELDS:
            if row.get(column) is not None:
                out[column] = field_text(row[column], column)
        column, messages = "messages", row.get("messages")
        if isinstance(messages, list) and messages:
            answered = isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant"
            out.setdefault("prompt", field_text(messages[:-1] if answered else messages, "prompt"))
            if answered:
                out.setdefault("response", field_text(messages, "response"))
    except ValueError as exc:
        raise DatasetError(f"{where}: {column}: {exc}") from None
    return out


def _file_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) for each row of a .jsonl or .parquet file, one at a time (a parquet file a batch of rows at a
    time); where is `FILE:LINE` or `FILE: row N`."""
    if path.suffix == ".jsonl":
        yield from ((f"{path}:{number}", row) for number, row in iter_jsonl(path))
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        wanted = [c for c in (*FIELDS, "messages") if c in source.schema_arrow.names]
        index = 0
        for batch in source.iter_batches(batch_size=BATCH, columns=wanted, use_threads=False):
            for row in batch.to_pylist():
                yield f"{path}: row {index}", row
                index += 1
    else:
        raise DatasetError(f"{path}: expected a .jsonl or .parquet file, or a run directory")


def _sample(
    rows: Iterable[tuple[str, Any]], config: DiversityConfig, seed: int, only: set[str] | None
) -> dict[str, Sampler]:
    """A seeded sample per field of the (where, row) pairs."""
    samplers: dict[str, Sampler] = {}
    for where, row in rows:
        for field, text in row_texts(row, where).items():
            if only is None or field in only:
                if field not in samplers:
                    samplers[field] = Sampler(config.sample, seed, distinct=field == "prompt")
                samplers[field].add(text)
    return samplers


def _run_samplers(run_dir: Path, config: DiversityConfig, seed: int) -> dict[str, Sampler]:
    """A run's preference rows (prompt, chosen, rejected) and SFT rows (response: the final revision)."""
    files = RunFiles(run_dir)
    samplers: dict[str, Sampler] = {}
    for name, only in (("preferences", {"prompt", "chosen", "rejected"}), ("sft", {"response"})):
        path = files.dataset_file(name)  # type: ignore[arg-type]
        if path is not None:
            samplers.update(_sample(_file_rows(path), config, seed, only))
    return samplers


def _report(
    source: str, samplers: dict[str, Sampler], config: DiversityConfig, seed: int, prefetch: Prefetch | None = None
) -> DiversityReport:
    """The figures of the samples; the embeddings from `prefetch` (a run's, which embedded its texts while its
    calls went on) where given, else from the configured model."""
    ordered = {f: samplers[f] for f in FIELDS if f in samplers}
    model = config.embedding_model
    embed: Embed | None = None
    unread: Unread | None = None
    if model is not None:
        embed = prefetch.embed if prefetch is not None else embedder(model)
        unread = prefetch.reads_nothing if prefetch is not None else (lambda texts: reads_nothing(texts, model))
    fields = measure_fields(ordered, config, embed, unread)
    return DiversityReport(
        source=source,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seed=seed,
        config=config.model_copy(update={"seed": seed}),
        fields=fields,
    )


# -- the Python API -------------------------------------------------------------------------------------------

SOURCE_KINDS = "a list of rows or texts, a Dataset, a .jsonl/.parquet file or a run directory"


@public
def diversity(
    source: Annotated[Any, Kinds(list, tuple, "Dataset", str, Path, said=SOURCE_KINDS)],
    fields: list[str] | None = None,
    sample: Annotated[int, Range(ge=2)] = 10_000,
    bleu_sample: Annotated[int, Range(ge=2)] = 1_000,
    embed_sample: Annotated[int, Range(ge=2)] = 1_000,
    embedding_model: str | None = "minilm-l6",
    seed: int = 0,
) -> DiversityReport:
    """Measure how diverse a dataset's texts are, per field: distinct-1/2/3, self-BLEU (with a jackknife interval),
    the Vendi score and mean pairwise cosine of MiniLM embeddings, the compression ratio and the spread of lengths
    in words.

    The rows are read once; each field keeps a seeded uniform sample of `sample` texts (the distinct prompts for
    `prompt`), and self-BLEU and the embeddings use its first `bleu_sample` and `embed_sample`: every estimator's
    cost is bounded, and each figure says how many texts it rests on (`n`).

    Args:
        source: Rows (dicts with `prompt`, `chosen`, `rejected`, `messages` or `text`, or records), plain texts, a
            `datasets.Dataset`, a .jsonl or .parquet file, or a run directory (its data/preferences and data/sft).
        fields: The fields to measure (`prompt`, `chosen`, `rejected`, `response`, `text`); None: every one found.
        sample: Texts per field for distinct-n, the compression ratio and the lengths.
        bleu_sample: Texts per field for self-BLEU.
        embed_sample: Texts per field embedded (Vendi score, mean cosine).
        embedding_model: The sentence-embedding model; None leaves out the embedding figures.
        seed: Seed of the samples.

    Returns:
        The figures per field (`DiversityReport.fields`), with the sample sizes and seed.

    Raises:
        DatasetError: The source is not readable, a row is malformed, or a field asked for is in no row.
        ArgumentError: An argument is of the wrong type or out of range, or `fields` names an unknown field.
    """
    config = DiversityConfig(
        sample=sample, bleu_sample=bleu_sample, embed_sample=embed_sample, embedding_model=embedding_model, seed=seed
    )
    only = None if fields is None else set(fields)
    unknown = sorted((only or set()) - set(FIELDS))
    if unknown:
        raise ArgumentError("fields", f"unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if RunFiles.is_run_dir(path):
            samplers, name = _run_samplers(path, config, seed), str(path)
        elif path.is_file():
            samplers, name = _sample(_file_rows(path), config, seed, only), str(path)
        else:
            raise DatasetError(f"{path}: no such file or run directory")
    else:
        name = "rows" if isinstance(source, (list, tuple)) else "dataset"
        samplers = _sample(((f"{name}: row {i}", row) for i, row in enumerate(source)), config, seed, only)
    samplers = {f: s for f, s in samplers.items() if only is None or f in only}
    missing = sorted((only or set()) - set(samplers))
    if missing:
        raise DatasetError(f"{name}: no row has the field(s) {', '.join(missing)}")
    return _report(name, samplers, config, seed)


# -- a run's figures ------------------------------------------------------------------------------------------


def dataset_key(store: RunStore) -> str | None:
    """The fingerprint of the dataset files as last written (their manifest); None before they are."""
    manifest = dataset_manifest(store)
    return None if manifest is None else fingerprint(manifest.model_dump(mode="json"))


def stored_diversity(store: RunStore) -> DiversityReport | None:
    """The figures stored when the run last wrote its dataset (None where none were)."""
    return store.meta_record("diversity", DiversityReport)


def describes_current(store: RunStore, report: DiversityReport) -> bool:
    """Whether stored figures describe the dataset files as they are now (a rebuild after a calibration, say,
    leaves them describing the earlier files)."""
    return report.dataset_key is not None and report.dataset_key == dataset_key(store)


def measure_run(
    store: RunStore, config: DiversityConfig, seed: int, prefetch: Prefetch | None = None
) -> DiversityReport | None:
    """Measure the run's dataset files as written and store the figures (meta `diversity`), unless the stored ones
    already describe these files with these settings. None before the dataset is written. `prefetch`: the run's
    `Prefetch`, which embedded its texts while its calls went on (None: the configured model, here)."""
    key = dataset_key(store)
    if key is None:
        return None
    config = config.model_copy(update={"seed": seed if config.seed is None else config.seed})
    stored = stored_diversity(store)
    if stored is not None and stored.dataset_key == key and stored.config == config:
        return stored
    report = _report(
        str(store.run_dir), _run_samplers(store.run_dir, config, config.seed or 0), config, config.seed or 0, prefetch
    )
    report = report.model_copy(update={"dataset_key": key})
    store.set_meta(diversity=report)
    return report


def diversity_card(run_dir: str | Path) -> str | None:
    """The stored figures of a run as the dataset card's markdown; None where none were stored."""
    with open_store(run_dir, read_only=True) as store:
        report = stored_diversity(store)
        return None if report is None else "\n".join(diversity_markdown(report, describes_current(store, report)))


def diversity_status(store: RunStore) -> dict[str, Any] | None:
    """The stored figures as plain data, with `current` (`describes_current`)."""
    report = stored_diversity(store)
    if report is None:
        return None
    return {**report.model_dump(mode="json"), "current": describes_current(store, report)}


# -- in words -------------------------------------------------------------------------------------------------


def _kinds(kinds: Counter[str]) -> str:
    return ", ".join(f"{count:,} {kind}{'s' if count != 1 else ''}" for kind, count in kinds.items())


def _on(size: str) -> str:
    """The metrics that run on a sample size (`Metric.sample`), in words."""
    return ", ".join(entry.label for entry in METRICS.values() if entry.sample == size) or "nothing"


def diversity_markdown(report: DiversityReport, current: bool = True) -> list[str]:
    """The figures as a markdown table (one column a field) with the notes and how the samples were drawn."""
    names = list(report.fields)
    if not names:
        return ["No text field to measure (the dataset is empty)."]
    lines = diversity_table({f"`{n}`": field for n, field in report.fields.items()})
    c = report.config
    model = f"embeddings of {c.embedding_model}" if c.embedding_model else "no embeddings"
    kinds = Counter[str]()
    for field in report.fields.values():
        kinds.update(field.token_kinds)
    lines += [
        "",
        f"Seeded samples (seed {report.seed}) of each field: {_on('sample')} and the lengths on up to {c.sample:,} "
        f"texts, {_on('bleu_sample')} on up to {c.bleu_sample:,} (an interval: the leave-one-out jackknife, from 5 "
        f"texts), {model} ({_on('embed_sample')}) on up to {c.embed_sample:,}. `prompt` counts each distinct prompt "
        "once. Tokens: "
        "words where a script puts spaces between them, single characters where it does not (Chinese, Japanese, "
        "Thai), and emoji" + (f" ({_kinds(kinds)})." if kinds else "."),
    ]
    notes = figure_notes({f"`{n}`": field for n, field in report.fields.items()})
    if notes:
        lines += ["", *notes]
    if not current:
        lines += ["", "**Note:** measured on an earlier build of the dataset files (they were rebuilt since)."]
    return lines
