"""Load constitutions from files or the bundled library."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from charter.api_args import public
from charter.constitutions.schema import Constitution
from charter.errors import ConfigError, ConstitutionError
from charter.yamlio import load_yaml, model_from_data

LIBRARY = "charter.constitutions.library"


def builtin_names() -> list[str]:
    """Names of the bundled constitutions."""
    files = resources.files(LIBRARY).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def builtin_path(name: str) -> Path:
    """The file of a bundled constitution."""
    return Path(str(resources.files(LIBRARY).joinpath(f"{name}.yaml")))


@public
def load_constitution(source: str | Path | Constitution) -> Constitution:
    """Load a constitution from a YAML file or the bundled library.

    Args:
        source: A constitution YAML file, the name of a bundled constitution (see `builtin_names()`; a file of
            that name takes precedence), or a `Constitution`, returned as it is.

    Returns:
        The validated constitution.

    Raises:
        ConstitutionError: `source` is neither a file nor a bundled name, or the file is unreadable, not valid YAML
            or not a valid constitution (one line per error, naming file:line:column and the key).
    """
    if isinstance(source, Constitution):
        return source
    path = Path(source)
    if not path.exists() and str(source) in builtin_names():
        path = builtin_path(str(source))
    elif not path.exists():
        known = ", ".join(builtin_names())
        raise ConstitutionError(f"{source}: no such file or bundled constitution (bundled: {known})")
    try:
        data, positions = load_yaml(path)
        return model_from_data(Constitution, data, str(path), positions)
    except ConfigError as exc:
        raise ConstitutionError(exc.lines) from None
