"""`croissant.json`: the export folder described for machines, in Croissant 1.1 JSON-LD.

The file says what the card says, in vocabularies a program reads: the files with their sha256 (`cr:FileObject`),
each configuration and split as a `cr:RecordSet` whose `cr:Field`s are the parquet columns (types from the files'
own arrow schema, descriptions from the row records' field docs), how the rows were made as PROV-O activities
with the model of each role as their agents, and the Croissant Responsible AI vocabulary (`rai:`) for collection,
annotation, agreement with people, biases and limitations. Every figure is one the run stored or the published
rows count; what was not measured is said to be not measured.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from charter.errors import DatasetError
from charter.hub.croissant_rai import provenance, rai_properties, variables_measured
from charter.hub.rundata import RunData
from charter.records import PreferenceRow

FILE_NAME = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
RAI = "http://mlcommons.org/croissant/RAI/"
PROV = "http://www.w3.org/ns/prov#"

#: Croissant 1.1's standard @context (as mlcroissant writes it), with the RAI and PROV-O prefixes.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "name": {"@container": "@language"},
    "parentField": "cr:parentField",
    "path": "cr:path",
    "prov": PROV,
    "rai": RAI,
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

ENCODINGS = {".parquet": "application/x-parquet", ".yaml": "application/yaml", ".md": "text/markdown"}

#: Which activity made the rows of each configuration (ids of `croissant_rai.provenance`'s activities).
MADE_BY = {"preferences": "activity/judge", "sft": "activity/critique", "human_labels": "activity/spot-checks"}


@dataclass(frozen=True)
class DataFile:
    """One parquet file of the export: a configuration's split, its row type and the records written to it."""

    config: str
    split: str
    path: str
    row_type: Any
    records: Sequence[Any]


@dataclass(frozen=True)
class Published:
    """What the export folder holds, for the Croissant file: its files, its data files, and the preference rows
    (all splits)."""

    folder: Path
    files: Sequence[str]
    data: Sequence[DataFile]
    preferences: list[PreferenceRow]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_object(folder: Path, path: str, description: str) -> dict[str, Any]:
    """A file of the folder: its relative path (resolved against croissant.json's folder), format and sha256."""
    return {
        "@type": "cr:FileObject",
        "@id": path,
        "name": path,
        "description": description,
        "contentUrl": path,
        "encodingFormat": ENCODINGS.get(Path(path).suffix, "application/octet-stream"),
        "sha256": sha256(folder / path),
    }


def file_description(path: str, run: RunData) -> str:
    if path == "constitution.yaml":
        info = run.manifest.settings.constitution
        return (
            f"The constitution {info.name} (version {info.version}) exactly as used. The file's sha256 is this "
            f"object's; the rows' constitution_hash ({info.hash}) is the sha256 of its parsed content."
        )
    if path == "run_config.yaml":
        return "The run's resolved configuration; values of secret-looking keys are replaced by [stripped]."
    if path == "README.md":
        return "The dataset card: how the data was made and how far its judge can be trusted, for people."
    config, split = Path(path).parent.name, Path(path).name.split("-")[0]
    return f"The rows of the `{config}` configuration, `{split}` split."


def arrow_data_type(arrow: Any, column: str) -> str:
    """The schema.org data type of a scalar arrow type."""
    import pyarrow as pa

    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "sc:Text"
    if pa.types.is_boolean(arrow):
        return "sc:Boolean"
    if pa.types.is_integer(arrow):
        return "sc:Integer"
    if pa.types.is_floating(arrow):
        return "sc:Float"
    if pa.types.is_timestamp(arrow) or pa.types.is_date(arrow):
        return "sc:DateTime"
    raise DatasetError(f"column {column}: no Croissant data type for arrow type {arrow}")


def nested_model(annotation: Any) -> Any:
    """The record type inside an annotation (`list[Message]` -> Message), or None."""
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := nested_model(arg)) is not None:
            return found
    return None


def field_entry(arrow_field: Any, parent: str, file_id: str, model: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """A `cr:Field` for one arrow column (or, with `path`, one member of a struct column): lists are `isArray`,
    structs have `subField`s read with a JSON path into their column."""
    import pyarrow as pa

    name, arrow = arrow_field.name, arrow_field.type
    info = model.model_fields.get(name) if model is not None else None
    entry: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{parent}/{name}",
        "name": name,
        "description": (info.description if info is not None else None) or f"`{name}`.",
    }
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        entry["isArray"] = True
        arrow = arrow.value_type
    if pa.types.is_struct(arrow):
        inner = nested_model(info.annotation) if info is not None else None
        entry["subField"] = [
            field_entry(arrow.field(i), f"{parent}/{name}", file_id, inner, (*path, name))
            for i in range(arrow.num_fields)
        ]
        return entry
    entry["dataType"] = arrow_data_type(arrow, name)
    column, members = (path[0], [*path[1:], name]) if path else (name, [])
    source: dict[str, Any] = {"fileObject": {"@id": file_id}, "extract": {"column": column}}
    if members:
        transforms = [{"jsonPath": member} for member in members]
        source["transform"] = transforms[0] if len(transforms) == 1 else transforms
    entry["source"] = source
    return entry


def record_set(folder: Path, data: DataFile) -> dict[str, Any]:
    """One configuration's split as a record set: a field per column of its parquet file."""
    import pyarrow.parquet as pq

    config, split, path = data.config, data.split, data.path
    set_id = f"{config}_{split}"
    schema = pq.read_schema(folder / path)
    entry: dict[str, Any] = {
        "@type": "cr:RecordSet",
        "@id": set_id,
        "name": set_id,
        "description": f"The `{config}` configuration, `{split}` split ({path}).",
        "field": [field_entry(schema.field(i), set_id, path, data.row_type) for i in range(len(schema))],
        "prov:wasGeneratedBy": {"@id": MADE_BY.get(config, "activity/judge")},
    }
    if config == "preferences" and "pair_id" in schema.names:
        entry["key"] = {"@id": f"{set_id}/pair_id"}
    return entry


def cite_as(run: RunData, name: str, url: str) -> str:
    settings = run.manifest.settings
    key = "".join(c if c.isalnum() else "_" for c in f"{settings.constitution.name}_{run.run_id}")
    return (
        f"@misc{{{key},\n  title = {{{name}}},\n  howpublished = {{\\url{{{url}}}}},\n"
        f"  note = {{charter run {run.run_id}, constitution {settings.constitution.name} sha256 "
        f"{settings.constitution.hash}}},\n  year = {{{settings.created_at[:4]}}}\n}}"
    )


def dataset_url(repo_id: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/datasets/{repo_id}"


def croissant_document(
    run: RunData,
    published: Published,
    repo_id: str,
    name: str,
    keywords: list[str],
    license: str,
    gates: Sequence[tuple[str, Any]],
) -> dict[str, Any]:
    """The Croissant JSON-LD of an export folder (its data files and card already written)."""
    settings = run.manifest.settings
    url = dataset_url(repo_id)
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": name,
        "description": (
            f"Synthetic preference data made with charter from the constitution {settings.constitution.name} "
            f"(version {settings.constitution.version}) by Constitutional AI and RLAIF: a policy model answered "
            "prompts, a critic model critiqued and revised the answers, and a judge model chose the better "
            "response of each pair. How it was made, by which models, and how far the judge agrees with people "
            "are in the prov: and rai: properties below."
        ),
        "url": url,
        "license": license,
        "citeAs": cite_as(run, name, url),
        "keywords": keywords,
        "inLanguage": "en",
        "dateCreated": settings.created_at,
        "dateModified": run.manifest.written_at,
        "datePublished": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "distribution": [
            file_object(published.folder, path, file_description(path, run))
            for path in published.files
            if path != FILE_NAME
        ],
        "recordSet": [record_set(published.folder, data) for data in published.data],
    }
    rows = [record for data in published.data for record in data.records]
    document.update(provenance(run, published.preferences))
    document.update(rai_properties(run, published.preferences, rows, gates))
    document["variableMeasured"] = variables_measured(run, published.preferences, rows)
    return document


def write_croissant(published: Published, document: dict[str, Any]) -> str:
    """Write `document` (`croissant_document`) as croissant.json into the export folder; returns its name there."""
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    (published.folder / FILE_NAME).write_text(text, encoding="utf-8")
    return FILE_NAME
