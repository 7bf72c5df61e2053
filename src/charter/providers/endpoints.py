"""Where a remote model's requests go, and which key goes with them.

A key goes only to the host it was made for. `openai:` sends OPENAI_API_KEY only to api.openai.com and
`anthropic:` sends ANTHROPIC_API_KEY only to api.anthropic.com; any other host gets the key in the variable a
role names with `api_key_env`, or, for `openai-compatible:` servers (vLLM, llama.cpp, TGI), a placeholder when no
variable is named: such servers usually want none.

The endpoint, normalised, is part of what a call is: it is in the call cache's key and in the settings fingerprint
of every item the model made, so pointing a role at another server asks that server.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

from charter.errors import ConfigError, MissingAPIKey, UnknownModel
from charter.redaction import register_secret

#: The official API of each provider whose SDK reads a key from the environment, normalised.
OFFICIAL = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
#: The variable each official API's key is read from.
KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
#: The variable each SDK reads a base URL from when none is given (honoured, and then it is not the official API).
BASE_URL_VARIABLES = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
#: What a compatible server gets when no key is named: vLLM and llama.cpp accept anything.
PLACEHOLDER_KEY = "EMPTY"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str) -> str:
    """A base URL in one spelling: scheme and host lower-cased, the default port and a trailing slash dropped.

    `HTTP://Host:80/v1/` and `http://host/v1` are the same endpoint. Raises `UnknownModel` for a URL that is not
    http(s), has no host, or carries credentials (they would be logged and published with the model string)."""
    parts = urllib.parse.urlsplit(url.strip())
    if "@" in parts.netloc:  # before anything that repeats the URL: it would repeat the password
        raise UnknownModel(
            "a base URL must not carry a user name or password (they would be logged and published "
            "with the model string); name the variable holding the key with api_key_env"
        )
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise UnknownModel(f"{url!r}: the port is not a number") from None
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UnknownModel(f"{url!r}: expected http(s)://HOST[:PORT]/PATH")
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def check_variable_name(name: str) -> str | None:
    """A one-line message when `name` cannot be an environment variable's name, or None. The message never repeats
    the value: a key pasted where its variable's name belongs must not reach a log."""
    if _VARIABLE_NAME.fullmatch(name):
        return None
    return (
        "api_key_env names the environment variable that holds the key (e.g. VLLM_API_KEY), not the key itself; "
        "the value given is not a variable name"
    )


@dataclass(frozen=True)
class Endpoint:
    """Where one remote model is served and the variable its key is read from."""

    provider: str
    url: str
    """The base URL, normalised."""
    official: bool
    """The provider's own API (whose usual key variable is read when no other is named)."""
    key_variable: str | None
    """The environment variable the key is read from; None: no key is sent (a placeholder, for keyless servers)."""
    url_source: str = "default"
    """Where the URL came from: `default`, `model string`, `option`, or the SDK's variable (`$OPENAI_BASE_URL`)."""

    def key(self) -> str:
        """The key to send: the named variable's value (registered for redaction), or the placeholder."""
        if self.key_variable is None:
            return PLACEHOLDER_KEY
        value = os.environ.get(self.key_variable, "")
        if not value:
            named = self.key_variable != KEY_VARIABLES.get(self.provider) or not self.official
            raise MissingAPIKey(self.key_variable, self.provider, self.url if named else None)
        register_secret(value)
        return value


def resolve_endpoint(provider: str, url: str | None, api_key_env: str | None = None) -> Endpoint:
    """The endpoint of a remote model: `url` from its model string or `base_url` option (None: the SDK's variable,
    else the official API) and the variable its key comes from.

    Raises `ConfigError` when `openai:` or `anthropic:` points at another host without naming a key variable: their
    usual keys are never sent anywhere but their own APIs."""
    source = "model string" if provider == "openai-compatible" else "option"
    if url is None and provider in BASE_URL_VARIABLES and os.environ.get(BASE_URL_VARIABLES[provider]):
        url, source = os.environ[BASE_URL_VARIABLES[provider]], f"${BASE_URL_VARIABLES[provider]}"
    if url is None:
        url, source = OFFICIAL[provider], "default"
    normalised = normalise_url(url)
    official = OFFICIAL.get(provider) == normalised
    if api_key_env is not None:
        message = check_variable_name(api_key_env)
        if message:
            raise ConfigError(message)
        return Endpoint(provider, normalised, official, api_key_env, source)
    if official:
        return Endpoint(provider, normalised, True, KEY_VARIABLES[provider], source)
    if provider == "openai-compatible":
        return Endpoint(provider, normalised, False, None, source)
    raise ConfigError(
        f"{provider}: the base URL {normalised} (from {source}) is not {OFFICIAL[provider]}, so "
        f"{KEY_VARIABLES[provider]} is not sent there; name the variable holding that host's key with api_key_env "
        "(or use openai-compatible:MODEL@URL for a server that wants no key)"
    )


def served_id(model_id: str, endpoint: Endpoint | None) -> str:
    """A model as calls and fingerprints name it: its id, and the URL when it is not its provider's own API."""
    return model_id if endpoint is None or endpoint.official else f"{model_id}@{endpoint.url}"
