"""Providers and model strings: `openai:<model>`, `anthropic:<model>`, `openai-compatible:<model>@<base_url>`,
`local:<name or path>`, `scripted:<name>`, and any provider a package registers.

Each provider is one `Provider` entry: its name, the backend options it accepts, how its backend is made and, for a
provider that calls a URL, how its endpoint is resolved (charter.providers.endpoints). The built-in ones are
registered here; a package adds its own through the `charter.providers` entry-point group, whose entries name a
`Provider` (or a function returning one), as inspect_ai and simonw/llm load their plugins:

    [project.entry-points."charter.providers"]
    mine = "my_package.charter_provider:PROVIDER"
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from charter.api_args import public
from charter.errors import ConfigError, UnknownModel
from charter.providers.base import ChatModel, Limits
from charter.providers.cache import CallCache
from charter.providers.endpoints import Endpoint, normalise_url, resolve_endpoint
from charter.providers.managed import ManagedModel
from charter.providers.usage import UsageMeter

log = logging.getLogger("charter.providers")

ENTRY_POINT_GROUP = "charter.providers"


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    base_url: str | None = None

    def __str__(self) -> str:
        suffix = f"@{self.base_url}" if self.base_url else ""
        return f"{self.provider}:{self.name}{suffix}"


#: Makes a provider's bare backend from the parsed model string, the limits, the key variable and the options.
Factory = Callable[[ModelSpec, Limits, "str | None", dict[str, Any]], ChatModel]
#: Resolves where a remote model is served and its key variable, without reading the key.
EndpointOf = Callable[[ModelSpec, dict[str, Any], "str | None"], Endpoint]


@dataclass(frozen=True)
class Provider:
    """One model provider, registered in one place."""

    name: str
    """The prefix of its model strings (`name:MODEL`)."""
    create: Factory
    """Makes the backend (SDKs imported here, lazily: a missing one says which extra to install)."""
    options: tuple[str, ...] = ()
    """The backend options a role's `options:` may give it."""
    endpoint: EndpointOf | None = None
    """For a provider that calls a URL: its endpoint (the URL and the key variable). None: runs in this process,
    takes no key."""
    url_in_name: bool = False
    """Its model strings carry the base URL: `name:MODEL@http(s)://HOST[:PORT]/PATH`."""
    check_options: Callable[[dict[str, Any]], tuple[str, str] | None] = field(default=lambda options: None)
    """A check of the options' values: (the option, a one-line message) for a bad one, or None."""
    check_name: Callable[[str], str | None] = field(default=lambda name: None)
    """A check of the model name (after `provider:`) with the config: a one-line message for one that cannot be
    meant (a typo of a known name), or None."""


_PROVIDERS: dict[str, Provider] = {}
_plugins_loaded = False


def register_provider(provider: Provider) -> None:
    """Add (or replace) a provider."""
    _PROVIDERS[provider.name] = provider


def providers() -> dict[str, Provider]:
    """Every provider: the built-in ones and those the installed packages register (loaded once)."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                found = entry.load()
                made = found if isinstance(found, Provider) else found()
                if not isinstance(made, Provider):
                    raise TypeError(f"it gives a {type(made).__name__}, not a charter.providers.Provider")
                register_provider(made)
            except Exception as exc:  # a broken plugin must not take the built-in providers down with it
                log.warning("the provider plugin %r could not be loaded: %s", entry.value, exc)
    return _PROVIDERS


def provider(name: str) -> Provider:
    """The provider of that name; `UnknownModel` names the known ones."""
    found = providers().get(name)
    if found is None:
        raise UnknownModel(f"unknown provider '{name}' (known: {', '.join(providers())})")
    return found


def parse_model_string(spec: str) -> ModelSpec:
    """Split a model string into provider, model name and (for a provider whose strings carry it) base URL."""
    name, sep, rest = spec.partition(":")
    known = providers()
    if not sep or not rest:
        raise UnknownModel(f"model '{spec}': expected PROVIDER:MODEL with PROVIDER one of {', '.join(known)}")
    if name not in known:
        raise UnknownModel(f"model '{spec}': unknown provider '{name}' (known: {', '.join(known)})")
    if not known[name].url_in_name:
        return ModelSpec(name, rest)
    model, at, base_url = rest.partition("@")  # the model name has no "@"; a URL's userinfo is refused below
    if not at or not base_url.lower().startswith(("http://", "https://")):
        shown = spec if "@" not in base_url else f"{name}:{model}@..."  # never repeat a password
        raise UnknownModel(f"model '{shown}': expected {name}:MODEL@http(s)://HOST[:PORT]/v1")
    try:
        normalise_url(base_url)
    except UnknownModel as exc:
        raise UnknownModel(f"model '{name}:{model}@...': {exc}") from None
    return ModelSpec(name, model, base_url)


def unknown_option(provider_name: str, options: dict[str, Any]) -> str | None:
    """A one-line message for the first option the provider does not accept, or None."""
    known = provider(provider_name).options
    unknown = sorted(set(options) - set(known))
    if not unknown:
        return None
    if "api_key_env" in unknown:
        return "model option 'api_key_env': it goes beside model: in the role (api_key_env: NAME), not under options"
    accepted = ", ".join(known) if known else "none"
    return f"model option '{unknown[0]}' is not known to the {provider_name} provider (accepted: {accepted})"


def keyless(provider_name: str, api_key_env: str | None) -> str | None:
    """A one-line message when a key variable is named for a model that takes no key, or None."""
    if api_key_env is None or provider(provider_name).endpoint is not None:
        return None
    return f"api_key_env: a {provider_name} model runs in this process and takes no key"


def endpoint_of(spec: ModelSpec, options: dict[str, Any], api_key_env: str | None) -> Endpoint | None:
    """Where a model is served and its key variable (None for a model run in this process); the key is not read."""
    resolve = provider(spec.provider).endpoint
    return resolve(spec, options, api_key_env) if resolve is not None else None


def create_backend(
    spec: str | ModelSpec, limits: Limits | None = None, api_key_env: str | None = None, **options: Any
) -> ChatModel:
    """The bare backend for a model string (no cache, no meter). SDKs are imported lazily.

    `api_key_env` names the environment variable holding the key of a remote model's host (see
    charter.providers.endpoints: the official keys go only to the official APIs)."""
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_string(spec)
    found = provider(parsed.provider)
    message = unknown_option(parsed.provider, options) or keyless(parsed.provider, api_key_env)
    if message:
        raise ConfigError(message)
    bad = found.check_options(options)
    if bad is not None:
        raise ConfigError(f"model option '{bad[0]}': {bad[1]}")
    return found.create(parsed, limits or Limits(), api_key_env, dict(options))


# -- the built-in providers -------------------------------------------------------------------------------------

#: Precisions a local model's `dtype` option may name (torch's names; `torch.` in front is accepted too).
LOCAL_DTYPES = ("auto", "float32", "float", "bfloat16", "float16", "half", "float64", "double")


def _local_dtype(options: dict[str, Any]) -> tuple[str, str] | None:
    dtype = options.get("dtype")
    if dtype is None or str(dtype).removeprefix("torch.") in LOCAL_DTYPES:
        return None
    return "dtype", f"unknown dtype '{dtype}' (accepted: {', '.join(LOCAL_DTYPES)})"


def _url_endpoint(spec: ModelSpec, options: dict[str, Any], api_key_env: str | None) -> Endpoint:
    return resolve_endpoint(spec.provider, spec.base_url or options.get("base_url"), api_key_env)


def _openai(spec: ModelSpec, limits: Limits, api_key_env: str | None, options: dict[str, Any]) -> ChatModel:
    from charter.providers.openai_chat import OpenAIModel

    base_url = spec.base_url or options.pop("base_url", None)  # the model string's (compatible) or the option
    compatible = spec.provider != "openai"
    return OpenAIModel(spec.name, limits, base_url, compatible, api_key_env, **options)


def _anthropic(spec: ModelSpec, limits: Limits, api_key_env: str | None, options: dict[str, Any]) -> ChatModel:
    from charter.providers.anthropic_chat import AnthropicModel

    return AnthropicModel(spec.name, limits=limits, api_key_env=api_key_env, **options)


def _local(spec: ModelSpec, limits: Limits, api_key_env: str | None, options: dict[str, Any]) -> ChatModel:
    from charter.providers.local import LocalModel

    return LocalModel(spec.name, **options)


def _local_name(name: str) -> str | None:
    from charter.providers.local_models import name_problem

    return name_problem(name)


def _scripted(spec: ModelSpec, limits: Limits, api_key_env: str | None, options: dict[str, Any]) -> ChatModel:
    from charter.providers.scripted import ScriptedModel

    # The limits a role sets apply as to a remote model; a scripted model has none of its own by default.
    return ScriptedModel(spec.name, limits=limits if limits.model_fields_set else None, **options)


for _provider in (
    Provider(
        "openai",
        _openai,
        ("base_url", "extra_body", "structured_output", "prompt_cache", "token_logprobs"),
        endpoint=_url_endpoint,
    ),
    Provider(
        "anthropic",
        _anthropic,
        ("base_url", "extra_body", "sampling_params", "structured_output", "prompt_cache"),
        endpoint=_url_endpoint,
    ),
    Provider(
        "openai-compatible",
        _openai,
        ("extra_body", "structured_output", "token_logprobs"),
        endpoint=_url_endpoint,
        url_in_name=True,
    ),
    Provider(
        "local",
        _local,
        ("batch_size", "device", "dtype", "cache_dir", "max_length", "threads", "prefix_cache_mb", "engine"),
        check_options=_local_dtype,
        check_name=_local_name,
    ),
    Provider("scripted", _scripted, ("latency_s", "batch_size")),
):
    register_provider(_provider)


@public
def get_model(
    spec: str | ChatModel,
    *,
    limits: Limits | None = None,
    cache: CallCache | str | None = None,
    meter: UsageMeter | None = None,
    role: str = "default",
    api_key_env: str | None = None,
    **options: Any,
) -> ManagedModel:
    """A model ready for the stages: its backend, with the call cache and the usage meter in front.

    Args:
        spec: A model string (`openai:gpt-4o-mini`, `anthropic:MODEL`, `openai-compatible:MODEL@URL`,
            `local:NAME_OR_PATH`, `scripted:NAME`, or a plugin provider's) or a `ChatModel` to wrap as it is.
        limits: Rate limits, retries and timeouts of a remote model; None uses the defaults of `Limits`.
        cache: The call cache, or the path of its SQLite file; None caches nothing.
        meter: The usage meter that counts tokens and cost and checks the budget; None makes one with no budget.
        role: The role the usage is counted under (`policy`, `judge`, ...).
        api_key_env: The environment variable holding the key of a remote model's host; `openai:` and
            `anthropic:` at their own APIs need none.
        **options: Backend options of the provider (`base_url`, `extra_body`, a local model's `device`, ...).

    Returns:
        The managed model. A model string's backend is made here; a remote SDK client only on the first call.

    Raises:
        UnknownModel: The model string cannot be parsed or names no known provider, or its URL is malformed.
        ConfigError: An option is unknown to the provider or has a bad value, a key variable is named for a model
            that takes none, or a base URL that is not the provider's own API comes with no key variable.
        MissingAPIKey: The variable holding a remote model's key is unset.
        MissingExtra: The provider's SDK (or torch and transformers, for `local:`) is not installed.
        CharterError: A `local:` option has a bad value.
        StorageError: The call cache's folder cannot be created.
    """
    backend = spec if isinstance(spec, ChatModel) else create_backend(spec, limits, api_key_env, **options)
    if isinstance(cache, str):
        cache = CallCache(cache)
    return ManagedModel(backend, cache=cache, meter=meter, role=role)
