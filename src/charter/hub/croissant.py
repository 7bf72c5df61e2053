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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from charter.errors import DatasetError
from charter.hub.card import (
    AgreementFigure,
    RunData,
    agreement_figures,
    cell,
    first_sentences,
    judge_models,
    limitations,
    percent,
    published_counts,
)
from charter.preference.stats import chosen_longer_rate, failure_sentence, lost_parts
from charter.records import GENERATOR, PreferenceRow
from charter.runs.counts import filter_steps

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

#: Which activity made the rows of each configuration (ids of `provenance`'s activities).
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


# -- the Croissant RAI account: how the rows were made, and how far to trust them -----------------------------

CHARTER_AGENT = "agent/charter"


# -- PROV-O: the activities that made the rows, and their agents -------------------------------------------------


def model_agents(run: RunData, preferences: list[PreferenceRow]) -> dict[str, dict[str, Any]]:
    """A `prov:SoftwareAgent` per model that played a role (a model in several roles is one agent)."""
    models = run.manifest.settings.models
    names = [models.get("policy"), models.get("critic"), *judge_models(preferences), synth_writer(run)]
    unique = [name for name in dict.fromkeys(names) if name]
    return {
        name: {"@id": f"agent/model-{i}", "@type": "prov:SoftwareAgent", "name": name}
        for i, name in enumerate(unique, 1)
    }


def synth_writer(run: RunData) -> str | None:
    """The model that wrote the prompts, when the run synthesized them."""
    if "synth" not in (run.run_config.get("stages") or []):
        return None
    writer = (run.run_config.get("synth") or {}).get("writer") or {}
    return writer.get("model") if isinstance(writer, dict) else None


def association(agent: dict[str, Any], role: str) -> dict[str, Any]:
    """`prov:qualifiedAssociation`: the agent, and the role it played in the activity."""
    return {
        "@type": "prov:Association",
        "prov:agent": {"@id": agent["@id"]},
        "prov:hadRole": {"@type": "prov:Role", "prov:label": role},
    }


def activity(
    key: str,
    label: str,
    description: str,
    roles: list[tuple[str, dict[str, Any]]],
    informed_by: list[str],
    used_constitution: bool = False,
) -> dict[str, Any]:
    """One stage as a `prov:Activity`: its agents (by role), the constitution if it used it, the stages it read."""
    node: dict[str, Any] = {
        "@type": "prov:Activity",
        "@id": f"activity/{key}",
        "prov:label": label,
        "description": description,
        "prov:wasAssociatedWith": list({agent["@id"]: agent for _, agent in roles}.values()),
        "prov:qualifiedAssociation": [association(agent, role) for role, agent in roles],
    }
    if used_constitution:
        node["prov:used"] = {"@id": "constitution.yaml"}
    if informed_by:
        node["prov:wasInformedBy"] = [{"@id": f"activity/{k}"} for k in informed_by]
    return node


def critique_text(run: RunData) -> str | None:
    critique = run.manifest.settings.critique
    if critique is None:
        return None
    principles = (
        f"with the fixed principles {', '.join(critique.principles)}"
        if critique.principles
        else "one principle per round sampled by weight (seeded)"
    )
    examples = "shown" if critique.few_shot else "not shown"
    return (
        f"The policy model answered each prompt; the critic model critiqued and revised the answer against the "
        f"constitution in {critique.rounds} critique-revision round(s), {principles}; the constitution's worked "
        f"examples were {examples} to the critic."
    )


def samples_text(run: RunData) -> str | None:
    pairs = run.manifest.settings.pairs
    if "samples" not in pairs.kinds:
        return None
    kept = "only the best against the worst sample kept" if pairs.strategy == "best_vs_worst" else "every pair kept"
    return f"The policy model wrote {pairs.k} samples per prompt at temperature {pairs.temperature:g}; {kept}."


def judge_text(run: RunData) -> str:
    settings = run.manifest.settings
    judge = settings.judge
    principles = (
        f"the fixed principles {', '.join(judge.principles)}"
        if judge.principles
        else f"{judge.principles_per_pair} principle(s) per pair, sampled by weight (seeded)"
    )
    orders = "both orders (p_chosen averages the two)" if judge.orders == "both" else "one order"
    return (
        f"The judge compared each pair ({' and '.join(settings.pairs.kinds)} pairs) in mode {judge.mode}, in "
        f"{orders}, against {principles}; its probability that the chosen response is better is p_chosen. "
        + (
            f"Votes were combined by {judge.combine}: {judge.combination.description}. "
            if judge.combination.recorded
            else ""
        )
        + f"Judge settings fingerprint {settings.fingerprints.judge}."
    )


def filter_text(run: RunData) -> str:
    filters = yaml.safe_dump(
        run.manifest.settings.filters.model_dump(mode="json"), default_flow_style=True, width=10**6
    )
    steps = "; ".join(
        f"{s['step']}: {s['remaining']} rows"
        if s["dropped"] is None
        else f"{s['step']}: dropped {s['dropped']}, {s['remaining']} left"
        for s in filter_steps(run.manifest.counts)
    )
    return f"Dataset filters {filters.strip()}" + (f" ({steps})." if steps else ".")


def annotators(run: RunData) -> list[str]:
    return list(dict.fromkeys(label.annotator for label in run.human_labels))


def activities(run: RunData, preferences: list[PreferenceRow]) -> list[dict[str, Any]]:
    """The run's stages in order, each informed by the stages it read."""
    agents = model_agents(run, preferences)
    models = run.manifest.settings.models
    made: list[dict[str, Any]] = []
    writer = synth_writer(run)
    if writer:
        text = "The writer model grew the prompt set from seed prompts (Self-Instruct style and red-team)."
        made.append(activity("synth", "Prompt synthesis", text, [("writer", agents[writer])], []))
    before = ["synth"] if writer else []
    responses = []
    for key, label, text, roles in (
        ("critique", "Critique and revision (SL-CAI)", critique_text(run), ["policy", "critic"]),
        ("samples", "Policy samples", samples_text(run), ["policy"]),
    ):
        if text is not None:
            agents_in = [(r, agents[models[r]]) for r in roles if models.get(r)]
            made.append(activity(key, label, text, agents_in, before, used_constitution=key == "critique"))
            responses.append(key)
    judges = [("judge", agents[m]) for m in judge_models(preferences)]
    made.append(activity("judge", "AI judge (RL-CAI / RLAIF)", judge_text(run), judges, responses or before, True))
    charter = {"@id": CHARTER_AGENT, "@type": "prov:SoftwareAgent", "name": GENERATOR}
    made.append(activity("dataset", "Filters", filter_text(run), [("filter", charter)], ["judge"]))
    if run.human_labels:
        people = [
            {"@id": f"agent/annotator-{i}", "@type": "prov:Person", "name": name}
            for i, name in enumerate(annotators(run), 1)
        ]
        text = (
            f"{len(run.human_labels)} human labels from {len(people)} annotator(s) on a spot-check sample of the "
            "judged pairs (charter spotcheck, then charter label or an imported label file)."
        )
        made.append(activity("spot-checks", "Human spot checks", text, [("annotator", p) for p in people], ["judge"]))
    return made


def prompt_source(run: RunData) -> dict[str, Any]:
    """Where the prompts came from, as a `prov:Entity` (a Hub dataset by its URL; a file by its name only)."""
    prompts = run.run_config.get("prompts") or {}
    node: dict[str, Any] = {"@type": "prov:Entity", "@id": "entity/prompts"}
    if prompts.get("hf_dataset"):
        name = prompts["hf_dataset"]
        node["@id"] = f"https://huggingface.co/datasets/{name}"
        subset = f", config {prompts['hf_config']}" if prompts.get("hf_config") else ""
        node["prov:label"] = f"Hugging Face dataset {name}{subset}, split {prompts.get('split', 'train')}"
    elif prompts.get("path"):
        node["prov:label"] = f"the prompt file {Path(str(prompts['path'])).name}"
    elif prompts.get("inline"):
        node["prov:label"] = "prompts written in the run config"
    else:
        node["prov:label"] = "charter's bundled prompt set (red-team and helpfulness requests)"
    return node


def raw_data(run: RunData) -> str:
    """rai:dataCollectionRawData: the prompts' source (and the model that grew them from it)."""
    source = prompt_source(run)["prov:label"]
    writer = synth_writer(run)
    return f"Seed prompts: {source}; the rest written by {writer}." if writer else f"Prompts: {source}."


def provenance(run: RunData, preferences: list[PreferenceRow]) -> dict[str, Any]:
    """The dataset's PROV-O properties: the activities, what they used, and the software that ran them."""
    info = run.manifest.settings.constitution
    constitution = {
        "@type": "prov:Entity",
        "@id": "constitution.yaml",
        "prov:label": f"constitution {info.name} version {info.version}, sha256 of its parsed content {info.hash}",
    }
    return {
        "prov:wasGeneratedBy": activities(run, preferences),
        "prov:wasDerivedFrom": [constitution, prompt_source(run)],
        "prov:wasAttributedTo": {"@id": CHARTER_AGENT, "@type": "prov:SoftwareAgent", "name": GENERATOR},
    }


# -- the figures: shares of the rows, the judge against people -----------------------------------------------------


def row_shares(rows: Sequence[Any]) -> tuple[int, int]:
    """(rows with `synthetic` true, all rows) of the published rows of every configuration."""
    return sum(1 for record in rows if record.synthetic), len(rows)


def labelled_rows(run: RunData, preferences: list[PreferenceRow]) -> int:
    """Published preference rows whose pair a person also labelled."""
    labelled = {label.pair_id for label in run.human_labels}
    return sum(1 for row in preferences if row.pair_id in labelled)


def share(name: str, count: int, total: int, description: str) -> dict[str, Any]:
    """A share of the published rows (a count of them, not an estimate)."""
    node: dict[str, Any] = {
        "@type": "PropertyValue",
        "name": name,
        "description": f"{count} of {total} rows. {description}",
    }
    if total:
        node["value"] = count / total
    return node


def figure_words(figure: AgreementFigure) -> str:
    """An agreement figure as the Croissant file words it: the estimate, its 95% interval, the n it rests on."""
    if figure.value is None:
        return f"undefined: too few or one-sided labels (n = {figure.n})"
    ci = (
        f"95% interval [{cell(figure.ci[0])}, {cell(figure.ci[1])}]" if figure.ci else "no interval can be had honestly"
    )
    return f"{cell(figure.value)}, {ci}, n = {figure.n}"


def figure_value(figure: AgreementFigure, note: str) -> dict[str, Any]:
    """An agreement figure as a `PropertyValue`: `value`, the interval as `minValue`/`maxValue` where it has one."""
    node: dict[str, Any] = {
        "@type": "PropertyValue",
        "name": figure.figure,
        "description": figure_words(figure) + "." + note,
    }
    if figure.value is not None:
        node["value"] = figure.value
        if figure.ci is not None:
            node["minValue"], node["maxValue"] = figure.ci
    return node


def other_judge(run: RunData) -> bool:
    """The agreement was measured on other judge settings than the published rows'."""
    measured = run.agreement.judge_fingerprint if run.agreement else None
    return measured is not None and measured != run.manifest.settings.fingerprints.judge


def agreement_values(run: RunData) -> list[dict[str, Any]]:
    if run.agreement is None:
        return [
            {
                "@type": "PropertyValue",
                "name": "judge vs human: agreement (ties excluded)",
                "description": "not measured: no human labels were compared with the judge for this run.",
            }
        ]
    note = " Measured on other judge settings than these rows'." if other_judge(run) else ""
    return [figure_value(figure, note) for figure in agreement_figures(run.agreement)]


def lost_before_filters(run: RunData) -> tuple[int, int]:
    """(response pairs that made no row before the dataset filters: failed or not judged, all response pairs)."""
    counts = run.manifest.counts
    pairs = counts.get("pairs") or 0
    return max(pairs - (counts.get("preferences_before_filters") or 0), 0), pairs


def failure_values(run: RunData) -> list[dict[str, Any]]:
    """The failed items per stage (by kind) and the share of response pairs lost before the filters, as
    `PropertyValue`s."""
    lost, pairs = lost_before_filters(run)
    values: list[dict[str, Any]] = [
        {
            "@type": "PropertyValue",
            "name": f"failed {stage} items",
            "value": sum(kinds.values()),
            "description": "Items still failing, by kind of failure: "
            + ", ".join(f"{kind} {n}" for kind, n in kinds.items())
            + ". A failed item makes no row.",
        }
        for stage, kinds in run.failures.items()
    ]
    node: dict[str, Any] = {
        "@type": "PropertyValue",
        "name": "response pairs lost before the filters",
        "description": f"{lost} of {pairs} response pairs made no preference row before the dataset filters "
        "(a failed or missing judgment).",
    }
    if pairs:
        node["value"] = lost / pairs
    return [*values, node]


def missing_data(run: RunData, preferences: list[PreferenceRow]) -> str:
    """rai:dataCollectionMissingData: the failed items by stage and kind, the share of response pairs lost before
    the filters, and where the rest of the pairs went."""
    counts = published_counts(run, preferences)
    failed = failure_sentence(run.failures, counts) or "No item failed."
    lost, pairs = lost_before_filters(run)
    share = f" ({percent(lost / pairs)})" if pairs else ""
    parts = lost_parts(counts, run.judge_stats)
    went = f" Where pairs and prompts went: {'; '.join(parts)}." if parts else ""
    return (
        f"{failed} {lost} of {pairs} response pairs{share} made no preference row before the dataset filters.{went} "
        f"{len(preferences)} preference rows are published."
    )


def variables_measured(run: RunData, preferences: list[PreferenceRow], rows: Sequence[Any]) -> list[dict]:
    """The measured figures, machine-readable: row shares, the judge against people, the judge's own biases."""
    synthetic, total = row_shares(rows)
    stats = run.judge_stats
    longer, longer_n = chosen_longer_rate(preferences)
    values = [
        share("synthetic share of the published rows", synthetic, total, "Rows with synthetic = true."),
        share(
            "human-label share of the published rows", total - synthetic, total, "Rows a person wrote: human_labels."
        ),
        share(
            "preference rows with a human label",
            labelled_rows(run, preferences),
            len(preferences),
            "Published preference rows whose pair a person also labelled (a spot check).",
        ),
        *agreement_values(run),
    ]
    for name, value, n, what in (
        (
            "position inconsistency of the judge",
            stats.position_inconsistency_rate,
            stats.position_checked,
            "pairs judged in both orders",
        ),
        (
            "the judge preferred the longer response",
            stats.longer_wins_rate,
            stats.longer_decided,
            "judged pairs of unequal length",
        ),
        ("chosen is the longer response", longer, longer_n, "published rows of unequal length"),
    ):
        node: dict[str, Any] = {"@type": "PropertyValue", "name": name, "description": f"of {n} {what}"}
        if value is not None:
            node["value"] = value
        values.append(node)
    return values + failure_values(run)


# -- the Responsible AI vocabulary ---------------------------------------------------------------------------------


def agreement_texts(run: RunData, gates: Sequence[tuple[str, Any]]) -> list[str]:
    """rai:dataAnnotationAnalysis: each agreement figure with its interval, or that none was measured; the gates."""
    if run.agreement is None:
        texts = ["Judge agreement with people: not measured (no human labels were compared with the judge)."]
    else:
        texts = [f"{f.figure}: {figure_words(f)}" for f in agreement_figures(run.agreement)]
        if other_judge(run):
            texts.append("These agreement figures were measured on other judge settings than the published rows'.")
    fit = run.manifest.calibration
    texts.append(
        f"Calibration: a {fit.method} map fitted to {fit.labels} human labels gives p_chosen_calibrated."
        if fit
        else "Calibration: none; p_chosen_calibrated is null on every row."
    )
    for name, gate in gates:
        if gate is not None and gate.configured:
            state = "failed and overridden" if gate.overridden else "passed" if gate.passed else "failed"
            texts.append(f"The {name} gate {state}: {gate.message}.")
    return texts


def bias_texts(run: RunData, preferences: list[PreferenceRow]) -> list[str]:
    """rai:dataBiases: the judge's measured position and length biases, the audit, self-preference risk."""
    stats = run.judge_stats
    longer, longer_n = chosen_longer_rate(preferences)
    texts = [
        f"Position: {percent(stats.position_inconsistency_rate)} of the {stats.position_checked} pairs judged in both "
        "orders picked a different winner depending on which response was shown first.",
        f"Length: the judge preferred the longer response in {percent(stats.longer_wins_rate)} of "
        f"{stats.longer_decided} judged pairs; chosen is the longer response in {percent(longer)} of the "
        f"{longer_n} published rows of unequal length.",
    ]
    audit = run.audit
    if audit is None:
        texts.append("No judge audit was run (order, length and injection perturbations are not measured).")
    else:
        flip = audit.position_flip
        ci = f" [{cell(flip.ci[0])}, {cell(flip.ci[1])}]" if flip.ci else ""
        texts.append(
            f"Judge audit of {audit.judge_model} on {audit.pairs} pairs: position flip {cell(flip.value)}{ci}"
            + (
                "; audited with other judge settings than these rows'."
                if audit.judge_fingerprint != run.manifest.settings.fingerprints.judge
                else "."
            )
        )
    models = run.manifest.settings.models
    writers = {models.get("policy"), models.get("critic")}
    same = [m for m in judge_models(preferences) if m in writers]
    if same:
        texts.append(f"Self-preference risk: {', '.join(same)} both wrote responses and judged them.")
    return texts


def annotation_texts(run: RunData) -> list[str]:
    texts = [judge_text(run)]
    if run.human_labels:
        texts.append(
            f"People labelled a spot-check sample: {len(run.human_labels)} labels (a, b or tie; skips left out) from "
            f"{len(annotators(run))} annotator(s), each pair shown in a recorded order (shown_order), published "
            "in the human_labels configuration."
        )
    return texts


def per_item(run: RunData, preferences: list[PreferenceRow]) -> str:
    judge = run.manifest.settings.judge
    asked = len(judge.principles) if judge.principles else judge.principles_per_pair
    orders = 2 if judge.orders == "both" else 1
    members = judge_models(preferences)
    panel = f" by each of {len(members)} panel judges" if len(members) > 1 else ""
    counts = Counter(label.pair_id for label in run.human_labels)
    return (
        f"One AI judgment per preference row: {asked} principle(s) x {orders} order(s){panel}, pooled into "
        f"p_chosen. {labelled_rows(run, preferences)} of {len(preferences)} published preference rows also have "
        f"human labels ({max(counts.values(), default=0)} at most per pair)."
    )


def rai_properties(
    run: RunData, preferences: list[PreferenceRow], rows: Sequence[Any], gates: Sequence[tuple[str, Any]]
) -> dict[str, Any]:
    """The `rai:` properties of the dataset."""
    settings = run.manifest.settings
    stages = [text for text in (critique_text(run), samples_text(run)) if text] + [judge_text(run), filter_text(run)]
    synthetic, total = row_shares(rows)
    properties: dict[str, Any] = {
        "rai:dataCollection": (
            f"Made by {GENERATOR}, run {run.run_id}, from the constitution {settings.constitution.name} version "
            f"{settings.constitution.version} (sha256 {settings.constitution.hash}). "
            + " ".join(stages)
            + f" {synthetic} of the {total} published rows are synthetic (synthetic = true); "
            f"{total - synthetic} were written by people (human_labels)."
        ),
        "rai:dataCollectionType": ["Synthetic data generation"],
        "rai:dataCollectionRawData": raw_data(run),
        "rai:dataCollectionMissingData": missing_data(run, preferences),
        "rai:dataCollectionTimeframe": [settings.created_at, run.manifest.written_at],
        "rai:dataPreprocessingProtocol": [filter_text(run)],
        "rai:dataAnnotationProtocol": annotation_texts(run),
        "rai:dataAnnotationPlatform": [
            f"{GENERATOR}: charter spotcheck draws the sample, charter label collects the labels"
            if run.human_labels
            else "No human annotation: every label in the preferences configuration is an AI judge's."
        ],
        "rai:machineAnnotationTools": [f"judge: {m}" for m in judge_models(preferences)],
        "rai:annotationsPerItem": per_item(run, preferences),
        "rai:dataAnnotationAnalysis": agreement_texts(run, gates),
        "rai:dataBiases": bias_texts(run, preferences),
        "rai:dataLimitations": first_sentences(run, preferences) + limitations(run, preferences),
        "rai:dataUseCases": [
            "Training reward models (TRL RewardTrainer) and preference optimisation (DPO and its variants) toward "
            "the constitution's principles; the sft configuration for supervised fine-tuning on the revisions.",
            "Not a measure of what people prefer: the labels are a model's judgments (see rai:dataAnnotationAnalysis).",
        ],
        "rai:dataSocialImpact": (
            "Models trained on these rows move toward the constitution's principles as the judge model reads them; "
            "the constitution encodes its authors' values, and the judge's errors and biases are trained in with them."
        ),
        "rai:personalSensitiveInformation": [
            "Not assessed for personal data: the prompts come from the source named in rai:dataCollectionRawData and "
            "the responses were written by models. The export was scanned for credentials (API keys, tokens) only."
        ],
    }
    if run.human_labels:
        properties["rai:annotatorDemographics"] = [
            "Not recorded: charter keeps each annotator's name (the annotator column) and nothing else about them."
        ]
    return properties
