"""`charter.load_preferences`: a published dataset (Hub repo id, export folder or run directory) back as the
splits TRL trains on, conversational columns and provenance kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from charter.api_args import Range, public
from charter.errors import DatasetError, HubError, missing_extra
from charter.redaction import redact
from charter.runs.files import RunFiles

if TYPE_CHECKING:
    import datasets

TRL_COLUMNS = ("prompt", "chosen", "rejected")


def import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise missing_extra("datasets", "hub") from None
    return datasets


def _from_run_dir(run_dir: Path, test_size: float, seed: int) -> Any:
    """The splits `charter push` would publish, straight from a run directory."""
    from charter.hub.card import read_run
    from charter.hub.export import split_by_prompt, to_table
    from charter.records import PreferenceRow

    datasets = import_datasets()
    from datasets.table import InMemoryTable

    run = read_run(run_dir)
    splits = split_by_prompt(run.preferences, test_size, seed)
    return datasets.DatasetDict(
        {
            name: datasets.Dataset(InMemoryTable(to_table([r.to_row() for r in part], PreferenceRow)))
            for name, part in splits.items()
        }
    )


def _download(repo_id: str, revision: str | None, token: str | None) -> Path:
    """The card and the preference files of a Hub dataset repo, through the huggingface_hub cache."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise missing_extra("huggingface_hub", "hub") from None
    try:
        path = snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            token=token,
            allow_patterns=["README.md", "data/preferences/*"],
        )
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"cannot download {repo_id}: {first_line}"
        raise HubError(redact(message, [token])) from None
    return Path(path)


@public
def load_preferences(
    source: str | Path,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    test_size: Annotated[float, Range(ge=0, lt=1)] = 0.1,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Load the `preferences` configuration of a published dataset as the splits TRL trains on.

    Rows keep TRL's conversational `prompt`/`chosen`/`rejected` columns and every provenance column.

    Args:
        source: A Hub dataset id (`org/name`), a folder written by `charter push --dry-run`, or a run directory
            (split as `charter push` would split it).
        revision: The Hub revision (branch, tag or commit) to download; None takes `main`.
        token: The Hugging Face token for a private repository; None uses HF_TOKEN or the huggingface_hub login.
        cache_dir: The `datasets` cache folder; None uses its default.
        test_size: For a run directory: share of the prompts whose rows go to the `test` split.
        seed: For a run directory: seed of the split.

    Returns:
        The `train` split, and `test` when there is one.

    Raises:
        DatasetError: `source` is neither a folder nor a Hub dataset id, the folder holds no dataset written by
            `charter push`, or the preferences lack a TRL column; a run directory has no preference rows.
        HubError: The Hub dataset cannot be downloaded.
        RunStoreError: A run directory's store cannot be read.
        ConfigError: A run directory's `agreement:` or `judge.audit` config section is not valid.
        MissingExtra: `datasets` or huggingface_hub (the `hub` extra) is not installed.
    """
    path = Path(source)
    if path.is_dir() and RunFiles.is_run_dir(path):
        return _from_run_dir(path, test_size, seed)
    if not path.is_dir():
        if str(source).count("/") != 1 or path.exists():
            raise DatasetError(f"{source}: neither a folder nor a Hub dataset id (org/name)")
        path = _download(str(source), revision, token)
    if not (path / "README.md").exists():
        raise DatasetError(f"{path}: no README.md with `configs:`; not a dataset written by charter push")
    data = import_datasets().load_dataset(str(path), "preferences", cache_dir=str(cache_dir) if cache_dir else None)
    missing = [c for c in TRL_COLUMNS if c not in data[next(iter(data))].column_names]
    if missing:
        raise DatasetError(f"{source}: the preferences lack column(s) {', '.join(missing)}")
    return data
