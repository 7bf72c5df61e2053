"""Token counts for the cost forecast: the model's own tokenizer where one is at hand offline (tiktoken for
`openai:` models where it is installed and has its encoding, a `local:` model's tokenizer where its folder is on
disk), else a stated heuristic (`forecast.counter`: characters or words a token). Nothing here reaches the network."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from charter.pipeline.config import ForecastConfig
from charter.providers import parse_model_string

log = logging.getLogger("charter.forecast")

#: Tokens a chat message adds besides its text (its role and separators) where the tokenizer is OpenAI's (its
#: chat format: 3 a message) or another (a chat template's markers, or charter's usage estimate: 4).
TIKTOKEN_PER_MESSAGE = 3
OTHER_PER_MESSAGE = 4


@dataclass
class TokenCounter:
    """Counts a text's tokens one way, and says which (`name`, shown in the forecast)."""

    name: str
    count_text: Callable[[str], int]
    per_message: int = OTHER_PER_MESSAGE
    """Tokens each message adds besides its text."""
    error: float = 0.0
    """How far its count may be from the provider's, either way, as a share (0: the model's own tokenizer)."""
    _seen: dict[str, int] = field(default_factory=dict, repr=False)

    def count(self, text: str) -> int:
        """The text's tokens (0 for an empty text); a text counted before is not counted again."""
        if not text:
            return 0
        found = self._seen.get(text)
        if found is None:
            found = self._seen[text] = self.count_text(text)
            if len(self._seen) > 100_000:  # a long run's texts are each met a few times, close together
                self._seen.clear()
        return found


def chars_counter(chars_per_token: float, error: float = 0.0) -> TokenCounter:
    """The characters heuristic: `chars_per_token` characters a token, 4 tokens a message."""
    return TokenCounter(
        f"heuristic: {chars_per_token:g} characters a token",
        lambda text: max(1, round(len(text) / chars_per_token)),
        error=error,
    )


def words_counter(tokens_per_word: float, error: float = 0.0) -> TokenCounter:
    """The words heuristic: `tokens_per_word` tokens a whitespace-separated word, and its role a message."""
    return TokenCounter(
        f"heuristic: {tokens_per_word:g} tokens a word",
        lambda text: round(len(text.split()) * tokens_per_word),
        per_message=max(1, round(tokens_per_word)),
        error=error,
    )


def heuristic(forecast: ForecastConfig) -> TokenCounter:
    """The heuristic `forecast.counter` names (`chars` for `auto`)."""
    if forecast.counter == "words":
        return words_counter(forecast.tokens_per_word, forecast.heuristic_error)
    return chars_counter(forecast.chars_per_token, forecast.heuristic_error)


def _tiktoken(name: str) -> TokenCounter | None:
    """tiktoken's encoding of an OpenAI model, where tiktoken is installed and has the encoding without a
    download (its files cached, or a model it does not know: None)."""
    try:
        import tiktoken  # pyright: ignore[reportMissingImports]
    except ImportError:
        return None
    try:
        encoding = tiktoken.encoding_for_model(name)
    except Exception as error:  # an unknown model (KeyError), or the encoding's file not cached and no network
        log.info("tiktoken cannot count for %s (%s); the forecast uses the heuristic", name, error)
        return None
    return TokenCounter(
        f"tiktoken {encoding.name}",
        lambda text: len(encoding.encode(text, disallowed_special=())),
        per_message=TIKTOKEN_PER_MESSAGE,
    )


def _local_folder(name: str) -> Path | None:
    """A `local:` model's folder where it is on disk with its tokenizer (the embedded model once converted)."""
    from charter.providers.local_models import EMBEDDED_ALIASES, EMBEDDED_NAME, models_dir

    folder = models_dir() / EMBEDDED_NAME if name.lower() in EMBEDDED_ALIASES else Path(name).expanduser()
    return folder if (folder / "tokenizer.json").is_file() else None


def _local_tokenizer(name: str) -> TokenCounter | None:
    """The tokenizer of a `local:` model whose folder is on disk (None: not there yet, or unreadable)."""
    folder = _local_folder(name)
    if folder is None:
        return None
    try:
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    except Exception as error:  # transformers missing (the local extra), or a broken tokenizer file
        log.info("cannot read the tokenizer of local:%s (%s); the forecast uses the heuristic", name, error)
        return None
    return TokenCounter(
        f"tokenizer of local:{name}", lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    )


def counter_for(model: str, forecast: ForecastConfig) -> TokenCounter:
    """How the forecast counts a model's tokens: its tokenizer where `auto` finds one offline, else the heuristic."""
    if forecast.counter != "auto":
        return heuristic(forecast)
    spec = parse_model_string(model)
    found = None
    if spec.provider == "openai":
        found = _tiktoken(spec.name)
    elif spec.provider == "local":
        found = _local_tokenizer(spec.name)
    return found or heuristic(forecast)
