"""The reward-model reward of `charter serve reward`: a sequence-classification model scores each conversation, as
TRL scores it in `charter train grpo` (its logit, weighted beside the judge)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from charter.errors import ConfigError, TrainingError
from charter.training.models import ensure_pad_token, short_error


class RewardModel:
    """A sequence-classification reward model and its tokenizer, loaded once; scores in bounded batches on CPU, one
    batch at a time (call `scores` from a worker thread: it blocks)."""

    def __init__(self, source: str, batch_size: int = 16) -> None:
        from transformers import AutoTokenizer

        from charter.online.train import distilled_reward

        self.source, self.batch_size = source, batch_size
        folder = Path(source).expanduser()
        path = str(folder) if folder.exists() else source
        try:
            self.model = distilled_reward(source).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except TrainingError as exc:
            raise ConfigError(str(exc)) from None
        except Exception as exc:  # the model loaded, its tokenizer did not
            raise ConfigError(f"reward_model {source}: no tokenizer could be loaded ({short_error(exc)})") from None
        ensure_pad_token(self.tokenizer, self.model)
        self._lock = threading.Lock()

    def text(self, prompt: Any, completion: Any) -> str:
        """The conversation the model reads: prompt + completion as an assistant turn through the chat template
        when the tokenizer has one, else the prompt's text followed by the completion's."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = _messages(prompt, "user") + _messages(completion, "assistant")
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return _plain(prompt) + _plain(completion)

    def scores(self, prompts: list[Any], completions: list[Any]) -> list[float]:
        """One score (the model's logit) per completion."""
        import torch

        texts = [self.text(p, c) for p, c in zip(prompts, completions)]
        out: list[float] = []
        with self._lock, torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    padding_side="right",
                    add_special_tokens=False,
                )
                try:
                    logits = self.model(**batch).logits
                except (RuntimeError, IndexError, ValueError) as exc:  # e.g. a text past the model's length
                    raise ConfigError(f"reward_model could not score the batch ({short_error(exc)})") from None
                out.extend(float(x) for x in logits[:, 0])
        return out


def _messages(value: Any, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else "".join(str(m.get("content", "")) for m in value)
