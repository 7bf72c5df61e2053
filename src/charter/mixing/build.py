"""`charter.mix_from_plan`: the training set a mixture manifest describes, and its folder with a dataset card.

Each source gives its share of the rows (the manifest's weights, normalised), drawn without replacement and
shuffled with a seed. Every row keeps its own columns, in TRL's conversational format, and says where it came
from: `mix_source` (the source's name in the manifest) and `mix_fingerprint` (the manifest's fingerprint). The
folder holds the rows as parquet, the manifest as used (`mixture.yaml`) and a card (`README.md`) that records it:
each source with its weight, its rows and why it was chosen.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import yaml

from charter.api_args import Kinds, Range, public
from charter.errors import ArgumentError, DatasetError
from charter.hub.export import TRL_COLUMNS, import_datasets
from charter.hub.push import refuse_secrets
from charter.mixing.mix import message_dicts, rows_of
from charter.mixing.plan import MixtureManifest, PlannedSource, load_manifest, read_manifest, write_manifest
from charter.records import GENERATOR, PreferenceRow
from charter.yamlio import config_from

if TYPE_CHECKING:
    import datasets

PLAN_KINDS = "a MixtureManifest, a dict of its fields or a manifest file's path"
TEMPLATE = Path(__file__).parent / "templates" / "mixture_card.md"
DATA_FILE = "data/train-00000-of-00001.parquet"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _manifest(plan: Any) -> tuple[MixtureManifest, Callable[[int], str]]:
    """The manifest, and where its i-th source's path is (`FILE:LINE:COL: sources[i].path`, or `plan: ...` for a
    manifest given in Python)."""
    if isinstance(plan, MixtureManifest | dict):
        manifest = plan if isinstance(plan, MixtureManifest) else config_from(MixtureManifest, plan, "plan")
        return manifest, lambda i: f"plan: sources[{i}].path"
    manifest, positions = read_manifest(plan)

    def where(i: int) -> str:
        line, column = positions.get(("sources", i, "path"), positions.get(("sources", i), (1, 1)))
        return f"{plan}:{line}:{column}: sources[{i}].path"

    return manifest, where


def check_source(name: str, path: str, where: str) -> str:
    """The source's path, if it names a file or folder that exists or a Hub id; else one line naming it."""
    found = Path(path).expanduser()
    if found.exists():
        if found.is_file() and found.suffix not in (".jsonl", ".parquet"):
            raise DatasetError(f"{where}: {path}: expected a .jsonl or .parquet file, a folder or a Hub id")
        return str(found)
    if HUB_ID.match(path) and not found.suffix:
        return path
    raise DatasetError(
        f"{where}: source {name!r}: {path} does not exist (relative paths are read from the current directory)"
    )


def source_rows(source: PlannedSource, where: str, split: str, mix_fingerprint: str) -> list[dict[str, Any]]:
    """A source's rows: its own columns, prompt/chosen/rejected as messages, `mix_source` and `mix_fingerprint`."""
    found = rows_of(check_source(source.name, source.path, where), split, f"source {source.name!r}")
    if not found:
        raise DatasetError(f"{where}: source {source.name!r} ({source.path}) holds no rows")
    rows = []
    for i, row in enumerate(found):
        at = f"source {source.name!r} ({source.path}) row {i}"
        missing = [c for c in TRL_COLUMNS if row.get(c) is None]
        if missing:
            raise DatasetError(f"{at}: missing column(s) {', '.join(missing)}")
        out = dict(row)
        out["prompt"] = message_dicts(row["prompt"], "user", f"{at}: prompt")
        out["chosen"] = message_dicts(row["chosen"], "assistant", f"{at}: chosen")
        out["rejected"] = message_dicts(row["rejected"], "assistant", f"{at}: rejected")
        out["mix_source"], out["mix_fingerprint"] = source.name, mix_fingerprint
        rows.append(out)
    return rows


def _allocate(size: int, weights: dict[str, float]) -> dict[str, int]:
    """`size` rows split by weight, largest remainders first (ties in manifest order)."""
    exact = {name: size * w for name, w in weights.items()}
    counts = {name: math.floor(x) for name, x in exact.items()}
    left = size - sum(counts.values())
    for name in sorted(exact, key=lambda n: -(exact[n] - counts[n]))[:left]:
        counts[name] += 1
    return counts


def draw_counts(available: dict[str, int], weights: dict[str, float], size: int | None) -> dict[str, int]:
    """Rows to draw from each source: `size` split by weight, or without `size` as many as the sources allow.

    Raises:
        DatasetError: A source holds too few rows for its share of `size`, or a share comes to no row at all.
    """
    if size is None:
        size = math.floor(min(available[n] / w for n, w in weights.items()) + 1e-9)
        while size > 0 and any(c > available[n] for n, c in _allocate(size, weights).items()):
            size -= 1
    counts = _allocate(size, weights)
    for name, count in counts.items():
        if count > available[name]:
            raise DatasetError(
                f"cannot build {size} rows: source {name!r} needs {count} at weight {weights[name]:.4g} and has "
                f"{available[name]}"
            )
        if count == 0:
            raise DatasetError(
                f"{size} rows give source {name!r} (weight {weights[name]:.4g}) no row: ask for at least "
                f"{math.ceil(1 / weights[name])} rows"
            )
    return counts


def _uniform_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return [{c: row.get(c) for c in columns} for row in rows]


def _dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    import pyarrow as pa
    from datasets.table import InMemoryTable

    from charter.hub.export import loose_table

    try:
        table = loose_table(_uniform_columns(rows), PreferenceRow)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DatasetError(
            f"the sources' rows do not fit one table (a column of another type in each?): {exc}"
        ) from None
    return import_datasets().Dataset(InMemoryTable(table))


@public
def mix_from_plan(
    plan: Annotated[Any, Kinds(MixtureManifest, dict, str, Path, said=PLAN_KINDS)],
    size: Annotated[int | None, Range(ge=1)] = None,
    seed: int = 0,
    split: str = "train",
    out: str | Path | None = None,
) -> datasets.Dataset:
    """The training set a mixture manifest describes: each source's share of the rows, drawn and shuffled.

    Args:
        plan: The manifest: a `MixtureManifest` (as `mix_plan` returns), a dict of its fields, or its YAML file.
        size: Rows in the result; None for as many as the sources allow at their weights.
        seed: Seed of the draw and the shuffle.
        split: The split to take from a source that has several (an export folder, a Hub dataset).
        out: Write the folder there: `data/train-00000-of-00001.parquet`, `mixture.yaml` and `README.md`, the
            dataset card recording the manifest. An existing folder is replaced only if it holds a mixture.

    Returns:
        The rows: each source's columns, prompt/chosen/rejected as messages, with `mix_source` and
        `mix_fingerprint`.

    Raises:
        ConfigError: The manifest is not valid (named by file:line:column and key), or was edited after planning.
        DatasetError: A source does not exist or lacks prompt/chosen/rejected; the sources hold too few rows for
            `size`; `out` exists and holds something else.
        SecretFound: With `out`, a secret (a key in the environment, or anything shaped like one) is in the rows or
            the card; nothing is written.
        HubError: A source that is a Hub dataset id cannot be downloaded.
    """
    manifest, where = _manifest(plan)
    if out is not None:
        _check_out(Path(out))
    mix_fingerprint = manifest.fingerprint or manifest.content_fingerprint()
    pools = {s.name: source_rows(s, where(i), split, mix_fingerprint) for i, s in enumerate(manifest.sources)}
    weights = manifest.weights()
    counts = draw_counts({n: len(r) for n, r in pools.items()}, weights, size)
    rng = np.random.default_rng(seed)
    rows = [pools[n][i] for n in pools for i in sorted(rng.choice(len(pools[n]), counts[n], replace=False))]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    dataset = _dataset(rows)
    if out is not None:
        write_mixture(Path(out), dataset, manifest, counts, seed, size)
    return dataset


def _check_out(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / "mixture.yaml").exists())):
        raise DatasetError(f"{folder}: exists and is not a mixture folder; choose another --out")


def write_mixture(
    folder: Path,
    dataset: datasets.Dataset,
    manifest: MixtureManifest,
    counts: dict[str, int],
    seed: int,
    size: int | None = None,
) -> list[str]:
    """Write the mixture's folder: the rows, the manifest as used and the card. The folder is written beside its
    place and scanned for secrets (`charter.hub.push`) before it replaces an earlier mixture there: a folder
    ready to upload never holds a key. Returns the files written.

    Raises:
        SecretFound: A secret (a key in the environment, or anything shaped like one) is in the rows or the card;
            nothing is written.
    """
    from charter.hub.export import write_dataset

    _check_out(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".charter-mix-", dir=folder.parent) as tmp:
        staging = Path(tmp) / "mixture"
        write_dataset(dataset, staging / DATA_FILE)
        write_manifest(manifest, staging / "mixture.yaml")
        mixture_card(manifest, counts, seed, size).save(staging / "README.md")
        fix = "remove it from the sources and build again"
        refuse_secrets(staging, refusing=f"refusing to write {folder}", fix=fix)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(staging), str(folder))
    return [DATA_FILE, "README.md", "mixture.yaml"]


def mixture_card(manifest: MixtureManifest, counts: dict[str, int], seed: int, size: int | None = None) -> Any:
    """The dataset card of a mixture: its sources, weights, rows and why each was chosen, and the manifest."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from charter.hub.card import cell, size_category

    n_rows = sum(counts.values())
    fingerprint = manifest.fingerprint or manifest.content_fingerprint()
    data = DatasetCardData(
        language=["en"],
        pretty_name=f"charter mixture {fingerprint}",
        tags=["dpo", "preference", "charter", "data-mixture"],
        size_categories=[size_category(n_rows)],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}],
    )
    weights = manifest.weights()
    sources = [
        {"name": s.name, "path": cell(s.path), "weight": f"{weights[s.name]:.4f}", "rows": counts[s.name],
         "why": cell(s.summary)}
        for s in manifest.sources
    ]  # fmt: skip
    targets = [
        {
            "name": cell(t.name),
            "weight": f"{t.weight:g}",
            "ranked": t.ranked,
            "chosen": cell(", ".join(t.chosen) or None),
        }
        for t in manifest.targets
    ]
    manifest_yaml = yaml.safe_dump(
        {"charter_mixture": 1, **manifest.model_dump(mode="json", exclude_defaults=True)},
        sort_keys=False,
        allow_unicode=True,
        width=120,
    )
    card = DatasetCard.from_template(
        data,
        template_path=str(TEMPLATE),
        fingerprint=fingerprint,
        strategy=manifest.strategy,
        top_n=manifest.top_n,
        weighting=manifest.weighting,
        baseline=manifest.baseline,
        sources=sources,
        targets=targets,
        left_out=[{"name": s.name, "reason": cell(s.reason)} for s in manifest.left_out],
        scores=manifest.scores,
        notes=manifest.notes,
        n_rows=n_rows,
        seed=seed,
        size=size,
        generator=GENERATOR,
        manifest_yaml=manifest_yaml.strip(),
    )
    return DatasetCard(re.sub(r"\n{3,}", "\n\n", str(card)))  # the template's optional parts leave blank runs


def build_from_file(manifest_path: Path, out: Path, size: int | None, seed: int, split: str) -> dict[str, int]:
    """`charter mix build`: the folder of a manifest file; returns the rows drawn per source."""
    if size is not None and size < 1:
        raise ArgumentError("size", f"must be at least 1 (got {size})")
    dataset = mix_from_plan(manifest_path, size=size, seed=seed, split=split, out=out)
    drawn = {s.name: 0 for s in load_manifest(out / "mixture.yaml").sources}
    for name in dataset["mix_source"]:
        drawn[name] += 1
    return drawn
