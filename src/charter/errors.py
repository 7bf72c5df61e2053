"""Typed errors, under two roots (as pydantic-ai keeps `UserError` apart from `AgentRunError`):

- a `UserError` is a mistake in what was given: a config, an argument, an input file, the environment (a missing
  key or extra), a file that cannot be written. Fix it and run again.
- a `RunFailure` is what went wrong while a run ran: a provider that failed a call (`ProviderError`) or a judge reply
  that cannot be read (`JudgeParseError`) fails its one item, which the run records with its reason and goes on
  from; a stop (`BudgetExceeded`, `TooManyFailures`, `Interrupted`, `FatalProviderError`) ends the run, keeping
  what is done.

Both are `CharterError`s, so `except CharterError` catches every error charter raises; the CLI prints its one line
and exits with its code.

Exit codes: 0 done; 1 an internal error (a bug: the traceback is kept); 2 a user error (config, input, a
provider error every later call would share, such as a bad key, a file that cannot be written); 3 the run
finished or stopped with more failed items than `max_failures` allows; 4 stopped at the budget; 130 interrupted
(Ctrl-C); 143 terminated (SIGTERM: Slurm, Kubernetes, systemd, `timeout`). Anything that is not a
`CharterError` is an internal error and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class CharterError(Exception):
    """Every error charter raises: a `UserError` or a `RunFailure`. One line, exit code 2 unless the class says
    otherwise, no traceback."""

    exit_code = 2

    def __str__(self) -> str:  # keep it one line whatever the cause
        return " ".join(super().__str__().split())


class UserError(CharterError):
    """A mistake in what was given (a config, an argument, an input, the environment): one line that says what to
    fix, exit code 2. Nothing was recorded as a failure; the same command runs once it is fixed."""


class RunFailure(CharterError):
    """A failure of the run, not of what it was given: a failed call or an unreadable judge reply (the item fails,
    recorded with its reason, and the run goes on), or a stop that keeps what is done (the budget, too many
    failures, a signal, a provider error every later call would share)."""


class ArgumentError(UserError):
    """A function argument has a value that cannot be used. `argument` names it in the library's terms;
    the CLI shows it as the matching option (`n` -> `--n`, `repo_id` -> `--repo-id`)."""

    def __init__(self, argument: str, message: str, option: str | None = None) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument, self.detail = argument, message
        self.option = option or f"--{argument.replace('_', '-')}"

    def as_option(self) -> str:
        """The message in the CLI's terms."""
        return f"{self.option}: {self.detail}"


class ConfigError(UserError):
    """A config or YAML file is malformed; the message names file:line:column and key. Several errors found at
    once (every error of one validation) are one line each: `lines`, which the CLI prints one per line."""

    def __init__(self, message: str | list[str]) -> None:
        lines = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(lines))
        self.lines = [" ".join(line.split()) for line in lines]


class ConfigFieldError(ConfigError, ValueError):
    """A config model built directly with a bad field (`charter.Budget(max_cost_usd="x")`): the class and the field,
    one line per error. Also a ValueError, as pydantic's ValidationError is: code that caught that catches this, and a
    config built inside a pydantic validator still fails that validation at its own location."""


class ConstitutionError(ConfigError):
    """A constitution is malformed."""


class MissingExtra(UserError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'charter[{extra}]'")


class MissingAPIKey(UserError):
    """The environment variable holding an API key is unset."""

    def __init__(self, variable: str, provider: str, host: str | None = None, role: str | None = None) -> None:
        whose = f"the key for {host} (the role's api_key_env)" if host else f"the {provider} provider's API key"
        self.variable, self.provider, self.host = variable, provider, host
        super().__init__(f"{variable} is not set: it holds {whose}" + (f", for {role}" if role else ""))


class UnknownModel(UserError):
    """A model string cannot be parsed or names an unknown provider."""


class ProviderError(RunFailure):
    """A provider failed a request for good: its retries are spent, or the error is not worth retrying (a
    rejected prompt). It fails the one item that made the call; `kind` classifies it for the failure record."""

    def __init__(
        self, message: str, kind: str = "provider", status: int | None = None, attempts: int = 1, raw: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind, self.status, self.attempts, self.raw = kind, status, attempts, raw


class FatalProviderError(ProviderError):
    """A provider error every later call would share (authentication, permission, an unknown model or URL):
    it stops the run instead of failing items one by one."""


class JudgeParseError(RunFailure):
    """The judge's answer named neither option, or held no score on the scale: the item's judgment fails with
    the raw text (never a default value). `kind` is the failure's recorded kind: `unparseable` (nothing readable), or
    `out_of_scale` (a score the judge wrote, outside 1..scale)."""

    def __init__(self, message: str, raw: str | None = None, attempts: int = 1, kind: str = "unparseable") -> None:
        super().__init__(message)
        self.raw, self.attempts, self.kind = raw, attempts, kind


class LogprobsUnsupported(UserError):
    """The backend cannot return next-token probabilities; the judge adds the modes that read the reply's text
    instead (`charter.judge.modes.text_reading_advice`)."""


class BudgetExceeded(RunFailure):
    """The run's budget cap was reached; everything done so far is kept. Exit code 4."""

    exit_code = 4


class Interrupted(RunFailure):
    """A run stopped on Ctrl-C (exit 130) or SIGTERM (exit 143): its calls in flight finished into the cache (or
    were cancelled after the grace period), its stages are marked interrupted, and the same command resumes it."""

    def __init__(self, how: str = "interrupted", exit_code: int = 130) -> None:
        super().__init__(f"{how}; resume with the same command (everything finished so far is kept)")
        self.how, self.exit_code = how, exit_code


class TooManyFailures(RunFailure):
    """More items failed than `max_failures` allows; what is done is kept and the failures are listed. Exit 3."""

    exit_code = 3


class QuotaShortfall(TooManyFailures):
    """Prompt synthesis kept fewer prompts than `min_kept` of its target asks: the prompts and the report (with the
    shortfall per bucket and the filter waterfall) are written. Exit code 3, as for too many failed items."""


class DatasetError(UserError):
    """A dataset is missing columns, empty or otherwise unusable."""


class NoSignal(DatasetError):
    """Nothing in the data beats chance (no candidate principle agrees with people more often than not): no
    result is written; `report` says what was tried."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class GateFailed(UserError):
    """The judge-agreement gate failed; publishing is refused."""


class SecretFound(UserError):
    """A secret (API key or token) was found where data is about to leave the machine."""


class HubError(UserError):
    """The Hugging Face Hub refused or failed an upload or download (the token never appears in the message)."""


class StorageError(UserError):
    """A SQLite file charter keeps (a run store, the call cache) cannot be opened, upgraded or written."""


class RunStoreError(StorageError):
    """The run directory or its store is missing or inconsistent."""


class FileSystemError(StorageError):
    """A file or folder cannot be created, written or read: the path, what was wanted and why, in one line."""


def file_error(exc: OSError, action: str, path: str | Path | None = None) -> FileSystemError:
    """The one-line error for an OSError met while trying to `action` (e.g. "write the dataset")."""
    where = exc.filename if exc.filename is not None else path
    why = exc.strerror or str(exc)
    if isinstance(exc, NotADirectoryError):
        why = "a part of the path is a file, not a folder"
    return FileSystemError(f"{where}: cannot {action}: {why}")


@contextlib.contextmanager
def wanted(action: str, path: str | Path) -> Iterator[None]:
    """Turn an OSError inside into a one-line `FileSystemError` naming the path and what was wanted."""
    try:
        yield
    except OSError as exc:
        raise file_error(exc, action, path) from None


def probe_writable(folder: str | Path, action: str) -> None:
    """Check that `folder` (or, where it does not exist yet, its nearest existing parent) takes a new file, by
    making and removing one: permissions, a read-only file system, a file in the way. Raises `FileSystemError`."""
    target = Path(folder)
    probe_in = target
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise FileSystemError(f"{target}: cannot {action}: {probe_in} is a file, not a folder")
    try:
        fd = os.open(probe_in / f".charter-probe-{os.getpid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise FileSystemError(f"{target}: cannot {action}: {probe_in}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe_in / f".charter-probe-{os.getpid()}")


def missing_extra(package: str, extra: str) -> MissingExtra:
    """Build the error for a lazily imported optional dependency."""
    return MissingExtra(package, extra)


class TrainingError(UserError):
    """A model, tokenizer or trainer setting cannot be used for training or scoring."""
