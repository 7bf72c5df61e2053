"""Where a model's price comes from: the config's `prices` (always first), else the `genai-prices` library's
bundled data (no network: its bundled snapshot only; its `UpdatePrices` fetcher is never started), else none.

`prices` keys name a model by its id (`openai:gpt-4o-mini`), its bare name (`gpt-4o-mini`) or the model string
exactly as a role writes it (`openai-compatible:m@http://host/v1`); a key that names no model of the run is a
config error (`unmatched_price_key`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from charter.yamlio import ConfigModel

#: Which source priced a model: the run config, the genai-prices library, or nothing (zero cost).
PriceSource = Literal["config", "genai-prices", "unpriced"]
#: How a cost cap sees a role: priced (by the config or genai-prices), declared free in `prices` (every price 0), run
#: in this process (`local:`, `scripted:`: no provider bills it), or not at all (`unpriced`: its spending is invisible).
CapSource = Literal["config", "genai-prices", "free", "in-process", "unpriced"]

#: charter providers whose models genai-prices knows, and its provider id for them.
_GENAI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic"}
_SAMPLE = 1000  # tokens priced per lookup: the base tier (tiered prices change past 200k tokens a call)


class Price(ConfigModel):
    """USD per million tokens. A price whose every field is 0 declares the model free (a cost cap then sees it)."""

    input: float = Field(default=0.0, ge=0)
    """Per million prompt tokens."""
    output: float = Field(default=0.0, ge=0)
    """Per million completion tokens."""
    cached_input: float | None = Field(default=None, ge=0)
    """Per million prompt tokens read from the provider's prompt cache (default: `input`, no discount)."""
    cache_write: float | None = Field(default=None, ge=0)
    """Per million prompt tokens written to the provider's prompt cache (Anthropic: 1.25x input; default:
    `input`)."""

    def cost(self, prompt_tokens: int, completion_tokens: int, cache_read: float = 0, cache_write: float = 0) -> float:
        """USD for one call: uncached input, cache reads, cache writes and output, each at its own price.
        `prompt_tokens` counts every input token, the cached and the written ones included."""
        uncached = max(0, prompt_tokens - cache_read - cache_write)
        read_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        return (
            uncached * self.input
            + cache_read * read_price
            + cache_write * write_price
            + completion_tokens * self.output
        ) / 1e6

    @property
    def is_free(self) -> bool:
        """Every price is 0: the role is declared free (a cost cap sees it, at no cost)."""
        return not (self.input or self.output or self.cached_input or self.cache_write)

    def saved(self, cache_read: int, cache_write: int) -> float:
        """USD the prompt cache saved against pricing every input token at `input` (negative: writes cost more
        than the reads saved)."""
        return self.cost(cache_read + cache_write, 0) - self.cost(cache_read + cache_write, 0, cache_read, cache_write)

    batch: float = Field(default=0.5, ge=0)
    """The share of these prices a call through the provider's batch API costs (OpenAI's Batch API and
    Anthropic's Message Batches: half)."""


class CapSight(BaseModel):
    """How a cost cap (`budget.max_cost_usd`) sees one model role."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    role: str
    """Where the role is in the config (`judge`, `judge.models.1`, `eval.judge`)."""
    model: str
    """Its model id."""
    seen_as: CapSource
    """What prices it for the cap: `config`, `genai-prices`, `free` (every price 0 in `prices`), `in-process` (no
    provider bills it), or `unpriced` (the cap cannot see it; a config with a cost cap refuses this)."""


def model_id_of(model: str) -> str:
    """`provider:name` of a model string (`openai-compatible:m@http://host/v1` -> `openai-compatible:m`)."""
    provider, colon, rest = model.partition(":")
    return f"{provider}{colon}{rest.partition('@')[0]}" if colon else model


def normalise_keys(prices: Mapping[str, Price]) -> dict[str, Price]:
    """The prices under model ids where a key is written as a full model string (with `@URL`)."""
    return {(model_id_of(key) if "@" in key else key): price for key, price in prices.items()}


def unmatched_price_key(prices: Iterable[str], models: Iterable[str]) -> str | None:
    """A one-line message for the first `prices` key that names none of `models` (model strings as the roles
    write them), or None when every key prices one of them."""
    models = list(dict.fromkeys(models))
    names: set[str] = set()
    for model in models:
        model_id = model_id_of(model)
        names |= {model, model_id, model_id.split(":", 1)[-1]}
    for key in prices:
        if key not in names and model_id_of(key) not in names:
            used = ", ".join(model_id_of(m) for m in models) or "none"
            return f"prices key '{key}' names no model of this run; the roles use: {used}"
    return None


def resolve_price(prices: Mapping[str, Price], model_id: str) -> tuple[Price, PriceSource]:
    """The price of a model id and its source: the config's under the id or the bare name, else genai-prices'."""
    name = model_id.split(":", 1)[-1]
    configured = prices.get(model_id) or prices.get(name)
    if configured is not None:
        return configured, "config"
    library = library_price(model_id)
    if library is not None:
        return library, "genai-prices"
    return Price(), "unpriced"


@lru_cache(maxsize=256)
def library_price(model_id: str) -> Price | None:
    """The model's price from genai-prices' bundled data (None: not an openai/anthropic model it knows)."""
    provider, _, name = model_id.partition(":")
    provider_id = _GENAI_PROVIDERS.get(provider)
    if provider_id is None or not name:
        return None
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # an optional dependency: without it a model the config does not price is unpriced
        return None

    def per_million(**tokens: int) -> tuple[float, float]:
        found = calc_price(Usage(**tokens), name, provider_id=provider_id)
        return float(found.input_price) * 1e6 / _SAMPLE, float(found.output_price) * 1e6 / _SAMPLE

    try:
        input_price, _ = per_million(input_tokens=_SAMPLE)
        cached, _ = per_million(input_tokens=_SAMPLE, cache_read_tokens=_SAMPLE)
        written, _ = per_million(input_tokens=_SAMPLE, cache_write_tokens=_SAMPLE)
        _, output = per_million(output_tokens=_SAMPLE)
    except LookupError:
        return None
    return Price(input=input_price, output=output, cached_input=cached, cache_write=written)
