"""Typed errors. A `CharterError` is a user error: the CLI prints its one line and exits with its code.

Exit codes: 0 done; 1 an internal error (a bug: the traceback is kept); 2 a user error (config, input, a
provider error every later call would share, such as a bad key); 3 the run finished or stopped with more
failed items than `max_failures` allows; 4 stopped at the budget; 130 interrupted (Ctrl-C). Anything that is
not a `CharterError` is an internal error and keeps its traceback.
"""

from __future__ import annotations


class CharterError(Exception):
    """A user error with a one-line message. Exit code 2, no traceback."""

    exit_code = 2

    def __str__(self) -> str:  # keep it one line whatever the cause
        return " ".join(super().__str__().split())


class ArgumentError(CharterError):
    """A function argument has a value that cannot be used. `argument` names it in the library's terms;
    the CLI shows it as the matching option (`n` -> `--n`, `repo_id` -> `--repo-id`)."""

    def __init__(self, argument: str, message: str, option: str | None = None) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument, self.detail = argument, message
        self.option = option or f"--{argument.replace('_', '-')}"

    def as_option(self) -> str:
        """The message in the CLI's terms."""
        return f"{self.option}: {self.detail}"


class ConfigError(CharterError):
    """A config or YAML file is malformed; the message names file:line:column and key."""


class ConstitutionError(ConfigError):
    """A constitution is malformed."""


class MissingExtra(CharterError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'charter[{extra}]'")


class MissingAPIKey(CharterError):
    """The environment variable holding an API key is unset."""

    def __init__(self, variable: str, provider: str) -> None:
        super().__init__(f"{variable} is not set: the {provider} provider reads its API key from it")


class UnknownModel(CharterError):
    """A model string cannot be parsed or names an unknown provider."""


class ProviderError(CharterError):
    """A provider failed a request for good: its retries are spent, or the error is not worth retrying (a
    rejected prompt). It fails the one item that made the call; `kind` classifies it for the failure record."""

    def __init__(self, message: str, kind: str = "provider", status: int | None = None, attempts: int = 1,
                 raw: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.status, self.attempts, self.raw = kind, status, attempts, raw


class FatalProviderError(ProviderError):
    """A provider error every later call would share (authentication, permission, an unknown model or URL):
    it stops the run instead of failing items one by one."""


class LogprobsUnsupported(CharterError):
    """The backend cannot return next-token probabilities; use judge mode `cot` or `verdict`."""


class BudgetExceeded(CharterError):
    """The run's budget cap was reached; everything done so far is kept. Exit code 4."""

    exit_code = 4


class TooManyFailures(CharterError):
    """More items failed than `max_failures` allows; what is done is kept and the failures are listed. Exit 3."""

    exit_code = 3


class DatasetError(CharterError):
    """A dataset is missing columns, empty or otherwise unusable."""


class GateFailed(CharterError):
    """The judge-agreement gate failed; publishing is refused."""


class SecretFound(CharterError):
    """A secret (API key or token) was found where data is about to leave the machine."""


class HubError(CharterError):
    """The Hugging Face Hub refused or failed an upload or download (the token never appears in the message)."""


class RunStoreError(CharterError):
    """The run directory or its store is missing or inconsistent."""


def missing_extra(package: str, extra: str) -> MissingExtra:
    """Build the error for a lazily imported optional dependency."""
    return MissingExtra(package, extra)


class TrainingError(CharterError):
    """A model, tokenizer or trainer setting cannot be used for training or scoring."""
