"""Model strings: `openai:<model>`, `anthropic:<model>`, `openai-compatible:<model>@<base_url>`,
`local:<name or path>`, `scripted:<name>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from charter.errors import ConfigError, UnknownModel
from charter.providers.base import ChatModel, Limits
from charter.providers.cache import CallCache
from charter.providers.endpoints import REMOTE, normalise_url
from charter.providers.managed import ManagedModel
from charter.providers.usage import UsageMeter

PROVIDERS = ("openai", "anthropic", "openai-compatible", "local", "scripted")

#: The backend options each provider accepts (a role's `options:`).
OPTIONS: dict[str, tuple[str, ...]] = {
    "openai": ("base_url", "extra_body"),
    "openai-compatible": ("extra_body",),
    "anthropic": ("base_url", "extra_body", "sampling_params"),
    "local": ("batch_size", "device", "dtype", "cache_dir", "max_length", "threads", "prefix_cache_mb", "engine"),
    "scripted": ("latency_s", "batch_size"),
}


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    base_url: str | None = None

    def __str__(self) -> str:
        suffix = f"@{self.base_url}" if self.base_url else ""
        return f"{self.provider}:{self.name}{suffix}"


def parse_model_string(spec: str) -> ModelSpec:
    """Split a model string into provider, model name and (openai-compatible) base URL."""
    provider, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise UnknownModel(f"model '{spec}': expected PROVIDER:MODEL with PROVIDER one of {', '.join(PROVIDERS)}")
    if provider not in PROVIDERS:
        raise UnknownModel(f"model '{spec}': unknown provider '{provider}' (known: {', '.join(PROVIDERS)})")
    if provider == "openai-compatible":
        name, at, base_url = rest.partition("@")  # the model name has no "@"; a URL's userinfo is refused below
        if not at or not base_url.lower().startswith(("http://", "https://")):
            shown = spec if "@" not in base_url else f"openai-compatible:{name}@..."  # never repeat a password
            raise UnknownModel(f"model '{shown}': expected openai-compatible:MODEL@http(s)://HOST[:PORT]/v1")
        try:
            normalise_url(base_url)
        except UnknownModel as exc:
            raise UnknownModel(f"model 'openai-compatible:{name}@...': {exc}") from None
        return ModelSpec(provider, name, base_url)
    return ModelSpec(provider, rest)


#: Precisions a local model's `dtype` option may name (torch's names; `torch.` in front is accepted too).
LOCAL_DTYPES = ("auto", "float32", "float", "bfloat16", "float16", "half", "float64", "double")


def bad_local_dtype(options: dict[str, Any]) -> str | None:
    """A one-line message when a local model's `dtype` option names no precision, or None."""
    dtype = options.get("dtype")
    if dtype is None or str(dtype).removeprefix("torch.") in LOCAL_DTYPES:
        return None
    return f"unknown dtype '{dtype}' (accepted: {', '.join(LOCAL_DTYPES)})"


def unknown_option(provider: str, options: dict[str, Any]) -> str | None:
    """A one-line message for the first option `provider` does not accept, or None."""
    known = OPTIONS.get(provider, ())
    unknown = sorted(set(options) - set(known))
    if not unknown:
        return None
    if "api_key_env" in unknown:
        return "model option 'api_key_env': it goes beside model: in the role (api_key_env: NAME), not under options"
    accepted = ", ".join(known) if known else "none"
    return f"model option '{unknown[0]}' is not known to the {provider} provider (accepted: {accepted})"


def keyless(provider: str, api_key_env: str | None) -> str | None:
    """A one-line message when a key variable is named for a model that takes no key, or None."""
    if api_key_env is None or provider in REMOTE:
        return None
    return f"api_key_env: a {provider} model runs in this process and takes no key"


def create_backend(
    spec: str | ModelSpec, limits: Limits | None = None, api_key_env: str | None = None, **options: Any
) -> ChatModel:
    """The bare backend for a model string (no cache, no meter). SDKs are imported lazily.

    `api_key_env` names the environment variable holding the key of a remote model's host (see
    charter.providers.endpoints: the official keys go only to the official APIs)."""
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_string(spec)
    message = unknown_option(parsed.provider, options) or keyless(parsed.provider, api_key_env)
    if message:
        raise ConfigError(message)
    limits = limits or Limits()
    if parsed.provider == "scripted":
        from charter.providers.scripted import ScriptedModel

        return ScriptedModel(parsed.name, **options)
    if parsed.provider == "local":
        from charter.providers.local import LocalModel

        return LocalModel(parsed.name, **options)
    if parsed.provider == "anthropic":
        from charter.providers.anthropic_chat import AnthropicModel

        return AnthropicModel(parsed.name, limits=limits, api_key_env=api_key_env, **options)
    from charter.providers.openai_chat import OpenAIModel

    options = dict(options)
    base_url = parsed.base_url or options.pop("base_url", None)  # the model string's (compatible) or the option
    return OpenAIModel(
        parsed.name,
        limits=limits,
        base_url=base_url,
        compatible=parsed.provider != "openai",
        api_key_env=api_key_env,
        **options,
    )


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
    """A model ready for the stages: backend, then cache and usage meter in front. `api_key_env` names the variable
    holding the key of a remote model's host (`openai:` and `anthropic:` at their own APIs need none)."""
    backend = spec if isinstance(spec, ChatModel) else create_backend(spec, limits, api_key_env, **options)
    if isinstance(cache, str):
        cache = CallCache(cache)
    return ManagedModel(backend, cache=cache, meter=meter, role=role)
