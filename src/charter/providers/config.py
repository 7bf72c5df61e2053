"""A model role in a config (`policy:`, `critic:`, `judge:` ...): the model, its sampling, limits and options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from charter.errors import ArgumentError, CharterError, ConfigError, UnknownModel
from charter.providers.base import ChatModel, Limits, SamplingParams
from charter.providers.batch import BATCH_PROVIDERS, BatchSettings
from charter.providers.endpoints import Endpoint, check_variable_name
from charter.providers.prices import (
    CapSight,
    CapSource,
    Price,
    model_id_of,
    normalise_keys,
    resolve_price,
    unmatched_price_key,
)
from charter.providers.registry import (
    create_backend,
    endpoint_of,
    keyless,
    parse_model_string,
    provider,
    unknown_option,
)
from charter.providers.usage import Budget
from charter.yamlio import ConfigModel, LocatedValueError

DEFAULT_MODEL = "local:smollm2-135m-instruct"


class RoleConfig(ConfigModel):
    """One model role. A plain string in YAML is taken as `model`."""

    model: str = DEFAULT_MODEL
    """Model string: openai:M, anthropic:M, openai-compatible:M@URL, local:NAME_OR_PATH, scripted:NAME."""
    api_key_env: str | None = None
    """The environment variable holding this role's key (e.g. VLLM_API_KEY, TOGETHER_API_KEY). OPENAI_API_KEY and
    ANTHROPIC_API_KEY are sent only to api.openai.com and api.anthropic.com: an `openai:` or `anthropic:` model at
    another `base_url` needs this, and an `openai-compatible:` server gets no key without it."""
    params: SamplingParams = SamplingParams()
    """Sampling parameters for this role."""
    limits: Limits = Limits()
    """Concurrency, rate limits, retries and timeout for this role's model."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend options: `batch_size`, `device`, `dtype`, `cache_dir`, `max_length`, `threads`, `prefix_cache_mb`,
    `engine` (local, see the local provider's reference page); `base_url`, `extra_body`, `structured_output`,
    `prompt_cache`, `token_logprobs` (openai); `extra_body`, `structured_output`, `token_logprobs`
    (openai-compatible); `base_url`, `extra_body`,
    `sampling_params`, `structured_output`, `prompt_cache` (anthropic); `latency_s`, `batch_size` (scripted)."""
    batch: bool | None = None
    """Send this role's calls through the provider's batch API at its batch price (openai and anthropic):
    each stage step goes out as one batch round; results can take up to the provider's window (24 h).
    Default: the run's `batch.enabled`."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known_options(self) -> RoleConfig:
        try:
            spec = parse_model_string(self.model)
        except CharterError as exc:
            raise LocatedValueError(str(exc), ("model",)) from None
        name = spec.provider
        problem = provider(name).check_name(spec.name)
        if problem is not None:  # a mistyped name is found with the config (--dry-run), not after a load
            raise LocatedValueError(problem, ("model",))
        if self.batch and name not in BATCH_PROVIDERS:
            raise LocatedValueError(
                f"only the {' and '.join(BATCH_PROVIDERS)} providers have a batch API, not {name}", ("batch",)
            )
        message = unknown_option(name, self.options)
        if message:
            bad = sorted(set(self.options) - set(provider(name).options))[0]
            raise LocatedValueError(message, ("options", bad))
        bad_value = provider(name).check_options(self.options)
        if bad_value is not None:  # found here, with the file and line, not when the model first loads mid-run
            raise LocatedValueError(bad_value[1], ("options", bad_value[0]))
        if self.api_key_env is not None:
            message = keyless(name, self.api_key_env) or check_variable_name(self.api_key_env)
            if message:
                raise LocatedValueError(message.removeprefix("api_key_env: "), ("api_key_env",))
        if provider(name).endpoint is not None and self.options.get("base_url") is not None:
            try:  # a base URL in the file is checked here, with its line (one from $OPENAI_BASE_URL at the start)
                self.endpoint()
            except CharterError as exc:
                raise LocatedValueError(str(exc), ("options", "base_url")) from None
        return self

    def backend(self) -> ChatModel:
        """This role's bare backend (no cache, no meter), with its limits, key variable and options."""
        return create_backend(self.model, self.limits, self.api_key_env, **self.options)

    def check_backend(self) -> None:
        """Build the backend once where that is cheap, a remote or a scripted model, and drop it: a missing API key
        (or one that would go to another host) or an unknown script name fails here, before any call. A local model
        is loaded where it is first used."""
        if self.endpoint() is not None or parse_model_string(self.model).provider == "scripted":
            self.backend()

    def endpoint(self) -> Endpoint | None:
        """Where this role's model is served (None for a model run in this process), without reading its key."""
        return endpoint_of(parse_model_string(self.model), self.options, self.api_key_env)


def role_argument(value: str | RoleConfig, argument: str) -> RoleConfig:
    """A function's model argument (a model string or a role) as a role checked as a config's is, its backend built
    once where that is cheap (`RoleConfig.check_backend`). Raises `ArgumentError` naming `argument` for a model that
    cannot be meant (an unknown provider, a mistyped name, an unknown script), `MissingAPIKey` for an unset key."""
    try:
        role = value if isinstance(value, RoleConfig) else RoleConfig.model_validate({"model": value})
        role.check_backend()
    except ValidationError as exc:
        raise ArgumentError(argument, exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    except (UnknownModel, ConfigError) as exc:
        raise ArgumentError(argument, str(exc)) from None
    return role


class RunBatchConfig(BatchSettings):
    """Provider batch APIs for a whole run (a role's own `batch:` wins)."""

    enabled: bool = False
    """Send every openai and anthropic role's calls through its provider's batch API (half price, slower)."""

    def for_role(self, role: RoleConfig) -> bool:
        """Whether this role's calls go through a batch API."""
        provider = parse_model_string(role.model).provider
        return provider in BATCH_PROVIDERS and (role.batch if role.batch is not None else self.enabled)


def config_roles(node: Any) -> list[RoleConfig]:
    """Every model role in a config (policy, critic, judge and panel members, synth's writers, ...)."""
    return [role for _, role in named_roles(node)]


def named_roles(node: Any, at: tuple = ()) -> list[tuple[tuple, RoleConfig]]:
    """Every model role in a config with where it is (`("judge", "models", 1)` for a panel's second member)."""
    if isinstance(node, RoleConfig):
        members = getattr(node, "members", [node])  # a judge section: its panel's members, or itself
        return [(at, node)] if members == [node] else [((*at, "models", i), m) for i, m in enumerate(members)]
    if isinstance(node, BaseModel):
        return [found for name in type(node).model_fields for found in named_roles(getattr(node, name), (*at, name))]
    if isinstance(node, list | tuple):
        return [found for i, item in enumerate(node) for found in named_roles(item, (*at, i))]
    if isinstance(node, dict):
        return [found for key, item in node.items() for found in named_roles(item, (*at, key))]
    return []


def role_names(config: BaseModel) -> list[tuple[str, RoleConfig]]:
    """Every model role of a config, named by where it is (`judge`, `judge.models.1`, `eval.judge`)."""
    return [(".".join(str(part) for part in at), role) for at, role in named_roles(config)]


def cap_sight(prices: Mapping[str, Price], roles: Iterable[tuple[str, RoleConfig]]) -> list[CapSight]:
    """How a cost cap sees each named model role: what prices it, or why it is free, or that it is blind to it
    (`unpriced`)."""
    prices = normalise_keys(prices)
    out = []
    for name, role in roles:
        model = model_id_of(role.model)
        price, source = resolve_price(prices, model)
        if source == "unpriced" and provider(parse_model_string(role.model).provider).endpoint is None:
            seen_as: CapSource = "in-process"
        elif source == "config" and price.is_free:
            seen_as = "free"
        else:
            seen_as = source
        out.append(CapSight(role=name, model=model, seen_as=seen_as))
    return out


def blind_cap(
    budget: Budget | None, prices: Mapping[str, Price], roles: Iterable[tuple[str, RoleConfig]]
) -> str | None:
    """One line when a cost cap is set and a role's model has no price (the cap could not see what it spends), else
    None. A role is seen once `prices` gives it a price (0 for a free one), or its model runs in this process
    (`local:`, `scripted:`)."""
    if budget is None or budget.max_cost_usd is None:
        return None
    blind = [sight for sight in cap_sight(prices, roles) if sight.seen_as == "unpriced"]
    if not blind:
        return None
    names = ", ".join(f"{sight.role} ({sight.model})" for sight in blind)
    return (
        f"a cost cap cannot see what {names} spend{'s' if len(blind) == 1 else ''}: no price; give one in "
        f"`prices: {{{blind[0].model}: {{input: ..., output: ...}}}}` (USD per million tokens), or declare the model "
        "free with `{input: 0, output: 0}`"
    )


def check_cap_prices(budget: Budget, prices: Mapping[str, Any], config: BaseModel) -> None:
    """Raise a located error (`budget.max_cost_usd`) when a cost cap cannot see a role of the config (`blind_cap`)."""
    message = blind_cap(budget, prices, role_names(config))
    if message is not None:
        raise LocatedValueError(message, ("budget", "max_cost_usd"))


def check_price_keys(prices: Mapping[str, Any], config: BaseModel) -> None:
    """Raise a located error (`prices.KEY`) for a `prices` key that names no model of the config's roles."""
    models = [role.model for role in config_roles(config)]
    for key in prices:
        message = unmatched_price_key([key], models)
        if message is not None:
            raise LocatedValueError(message, ("prices", key))
