"""Scoring with a trained reward model: pair accuracy, reward distributions, a histogram."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from charter.errors import TrainingError
from charter.training.models import ensure_pad_token, short_error

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class RewardScorer:
    """A sequence-classification reward model and its tokenizer; `score` gives one reward per conversation."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 512, batch_size: int = 16) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    @classmethod
    def load(
        cls, source: str | Path, max_length: int = 512, device: str | None = None, batch_size: int = 16
    ) -> RewardScorer:
        """Load a reward model: a folder (as `train_reward_model` writes) or a Hub id of any sequence-classification
        model with one output; a one-line `TrainingError` for one that is none."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(source).expanduser()
        where = str(folder) if folder.exists() else str(source)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(where, dtype=torch.float32, num_labels=1)
        except (OSError, ValueError) as exc:
            raise TrainingError(
                f"reward_model {source}: not a sequence-classification reward model ({short_error(exc)})"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(where)
        except Exception as exc:  # the model loaded, its tokenizer did not
            raise TrainingError(f"reward_model {source}: no tokenizer could be loaded ({short_error(exc)})") from None
        ensure_pad_token(tokenizer, model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device).eval(), tokenizer, max_length, batch_size)

    def text(self, conversation: list[dict[str, str]]) -> str:
        """What the model reads: the conversation through the tokenizer's chat template, or its contents one after
        the other where the tokenizer has none."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(conversation, tokenize=False)
        return "".join(str(m.get("content", "")) for m in conversation)

    def score(self, conversations: Sequence[list[dict[str, str]]]) -> list[float]:
        """Rewards for full conversations (prompt messages + the assistant response)."""
        import torch

        texts = [self.text(c) for c in conversations]
        out: list[float] = []
        device = next(self.model.parameters()).device
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=False,
                    return_tensors="pt",
                ).to(device)
                with torch.no_grad():
                    logits = self.model(**batch).logits
                out.extend(logits[:, 0].float().cpu().tolist())
        finally:
            self.tokenizer.padding_side = side
        return out

    def score_pairs(self, rows: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
        """(chosen rewards, rejected rewards) for preference rows with message-list columns."""
        chosen = self.score([r["prompt"] + r["chosen"] for r in rows])
        rejected = self.score([r["prompt"] + r["rejected"] for r in rows])
        return chosen, rejected


def accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float | None:
    """Share of pairs where the chosen response gets the higher reward (ties count half)."""
    if not chosen:
        return None
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected))
    return wins / len(chosen)


class Distribution(TypedDict):
    """Summary of a set of values; with none, only `n` (0)."""

    n: int
    mean: NotRequired[float]
    std: NotRequired[float]
    min: NotRequired[float]
    max: NotRequired[float]
    quantiles: NotRequired[dict[str, float]]
    """Quantile (as text, e.g. "0.5") -> value."""


def distribution(values: Sequence[float]) -> Distribution:
    """Mean, std, min, max and quantiles."""
    import numpy as np

    if not values:
        return Distribution(n=0)
    arr = np.asarray(values, dtype=float)
    return Distribution(
        n=int(arr.size),
        mean=float(arr.mean()),
        std=float(arr.std()),
        min=float(arr.min()),
        max=float(arr.max()),
        quantiles={str(q): float(np.quantile(arr, q)) for q in QUANTILES},
    )


def histogram(chosen: Sequence[float], rejected: Sequence[float], path: Path, title: str) -> Path | None:
    """A PNG of both reward distributions; None when matplotlib (the `agreement` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = 30 if len(chosen) > 60 else 12
    ax.hist(list(chosen), bins=bins, alpha=0.6, label="chosen", color="#2a9d8f")
    ax.hist(list(rejected), bins=bins, alpha=0.6, label="rejected", color="#e76f51")
    ax.set_xlabel("reward")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
