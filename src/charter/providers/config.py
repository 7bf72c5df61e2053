"""A model role in a config (`policy:`, `critic:`, `judge:` ...): the model, its sampling, limits and options."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from charter.errors import CharterError
from charter.providers.base import Limits, SamplingParams
from charter.providers.batch import BATCH_PROVIDERS, BatchSettings
from charter.providers.registry import OPTIONS, bad_local_dtype, parse_model_string, unknown_option
from charter.yamlio import ConfigModel, LocatedValueError

DEFAULT_MODEL = "local:smollm2-135m-instruct"


class RoleConfig(ConfigModel):
    """One model role. A plain string in YAML is taken as `model`."""

    model: str = DEFAULT_MODEL
    """Model string: openai:M, anthropic:M, openai-compatible:M@URL, local:NAME_OR_PATH, scripted:NAME."""
    params: SamplingParams = SamplingParams()
    """Sampling parameters for this role."""
    limits: Limits = Limits()
    """Concurrency, rate limits, retries and timeout for this role's model."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend options: `batch_size`, `device`, `dtype`, `max_length` (local); `extra_body` (openai);
    `base_url`, `extra_body`, `sampling_params` (anthropic); `latency_s`, `batch_size` (scripted)."""
    batch: bool | None = None
    """Send this role's calls through the provider's batch API at its batch price (openai and anthropic):
    each stage step goes out as one batch round; results can take up to the provider's window (24 h).
    Default: the run's `batch.enabled`."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known_options(self) -> "RoleConfig":
        try:
            provider = parse_model_string(self.model).provider
        except CharterError as exc:
            raise LocatedValueError(str(exc), ("model",)) from None
        if self.batch and provider not in BATCH_PROVIDERS:
            raise LocatedValueError(f"only the {' and '.join(BATCH_PROVIDERS)} providers have a batch API, not "
                                    f"{provider}", ("batch",))
        message = unknown_option(provider, self.options)
        if message:
            bad = sorted(set(self.options) - set(OPTIONS.get(provider, ())))[0]
            raise LocatedValueError(message, ("options", bad))
        message = bad_local_dtype(self.options) if provider == "local" else None
        if message:  # found here, with the file and line, not when the model first loads mid-run
            raise LocatedValueError(message, ("options", "dtype"))
        return self


class RunBatchConfig(BatchSettings):
    """Provider batch APIs for a whole run (a role's own `batch:` wins)."""

    enabled: bool = False
    """Send every openai and anthropic role's calls through its provider's batch API (half price, slower)."""

    def for_role(self, role: RoleConfig) -> bool:
        """Whether this role's calls go through a batch API."""
        provider = parse_model_string(role.model).provider
        return provider in BATCH_PROVIDERS and (role.batch if role.batch is not None else self.enabled)
