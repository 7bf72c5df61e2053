"""The reward-model reward of `charter serve reward`: a sequence-classification model scores each conversation, as
TRL scores it in `charter train grpo` (its logit, weighted beside the judge)."""

from __future__ import annotations

import threading
from typing import Any

from charter.errors import ConfigError, TrainingError
from charter.training.models import short_error


class RewardModel:
    """A sequence-classification reward model and its tokenizer (`RewardScorer`), loaded once; scores in bounded
    batches on CPU, one batch at a time (call `scores` from a worker thread: it blocks)."""

    def __init__(self, source: str, batch_size: int = 16) -> None:
        from charter.reward_model.scorer import RewardScorer

        self.source, self.batch_size = source, batch_size
        try:
            self.scorer = RewardScorer.load(source, device="cpu", batch_size=batch_size)
        except TrainingError as exc:
            raise ConfigError(str(exc)) from None
        self._lock = threading.Lock()

    def text(self, prompt: Any, completion: Any) -> str:
        """The conversation the model reads: prompt + completion as an assistant turn through the chat template
        when the tokenizer has one, else the prompt's text followed by the completion's."""
        return self.scorer.text(_messages(prompt, "user") + _messages(completion, "assistant"))

    def scores(self, prompts: list[Any], completions: list[Any]) -> list[float]:
        """One score (the model's logit) per completion."""
        conversations = [_messages(p, "user") + _messages(c, "assistant") for p, c in zip(prompts, completions)]
        with self._lock:
            try:
                return self.scorer.score(conversations)
            except (RuntimeError, IndexError, ValueError) as exc:  # e.g. a text past the model's length
                raise ConfigError(f"reward_model could not score the batch ({short_error(exc)})") from None


def _messages(value: Any, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)
