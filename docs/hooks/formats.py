"""docs/reference/formats.md, generated from the records themselves; `python docs/hooks/reference.py` writes it
again with the other reference pages, and the docs build and tests/test_docs.py fail when the page and the records
drift apart.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from pydantic import BaseModel

from charter import records
from charter.agreement.audit import AuditReport, FlipShift, InjectionFigures
from charter.agreement.summary import AgreementSummary, HumanPreference, PreferenceEstimates
from charter.pipeline.forecast.estimate import CostSpan, Figures, Forecast, ForecastRow, Span
from charter.preference.manifest import ConstitutionInfo, DatasetManifest, DatasetSettings
from charter.runs import files, store
from charter.runs.labels import SpotSample
from charter.stats.ppi import Estimate

INTRO = """# Data formats (the contract between stages)

Generated from `charter.records` and `charter.runs` by `python docs/hooks/reference.py`;
a test fails when this page and the code drift apart. Every record is a pydantic model: unknown
fields are errors, and a field's description below is its docstring.
"""

META = {
    "schema_version": "int: the store schema (a store of another schema is refused with a one-line error)",
    "run_id, created_at": "str: the run's id and when it first started (ISO 8601, UTC)",
    "config": "the run config in effect (`RunConfig`, JSON form), as of the last start",
    "constitution": "`ConstitutionInfo` of the constitution (a changed constitution is refused)",
    "fingerprints": "`Fingerprints` of the settings in effect: items stored under others are older",
    "settings": "`DatasetSettings` in effect",
    "dataset": "`DatasetManifest` of data/* as last written: the settings of exactly those rows",
    "prompt_counts": "dict: prompts read, empty, duplicate, too long, used",
    "calibration": "`CalibrationMap` fitted by `charter agreement`, joined into every dataset write",
    "agreement": "`AgreementSummary` of the last `charter agreement`",
    "audit": "`AuditReport` of the last judge audit (`judge.audit` or `charter judge audit --pairs RUN_DIR`)",
    "forecast": "`Forecast` of the run's cost, made when it last started (the report shows it beside the bill)",
}

SECTIONS: tuple[tuple[str, str, tuple[type[BaseModel], ...]], ...] = (
    (
        "Conversations, trajectories and prompts",
        "A conversation or an agent's trajectory is a `Trajectory`: messages with roles, the assistant's `ToolCall`s "
        "and the tools' results, read from OpenAI, Anthropic, TRL, verifiers and OpenEnv formats "
        "(`charter.records.read_trajectory`) and written as TRL conversational rows (`charter.records.to_trl`).",
        (records.Message, records.ToolCall, records.Trajectory, records.Prompt),
    ),
    (
        "SL-CAI",
        "Kept in the store's `chains` and `samples` tables.",
        (records.Chain, records.CritiqueRound, records.Sample),
    ),
    (
        "Pairs and judgments",
        "`p_a` is always the probability that response **a** of the pair is better, whatever "
        "order it was shown in. A failed judgment carries a `Failure` and no probability: nothing is made up.",
        (records.Pair, records.Judgment, records.Vote, records.Combined, records.Conflict, records.Failure),
    ),
    (
        "Rows that leave the pipeline",
        "data/preferences.* holds `PreferenceRow`s and data/sft.* `SFTRow`s, "
        "in parquet and JSONL with these columns (nested values of `per_principle` and `per_order` as JSON strings). "
        "Every row carries the `Provenance` columns.",
        (records.PreferenceRow, records.ChosenVote, records.OrderProbs, records.SFTRow, records.Provenance),
    ),
    (
        "Settings",
        "What the report and the dataset card describe: the settings of the rows they cover.",
        (records.Fingerprints, DatasetSettings, DatasetManifest, ConstitutionInfo),
    ),
    (
        "People, money, calibration",
        "",
        (
            SpotSample,
            records.HumanLabel,
            records.LabelRow,
            records.UsageRow,
            records.CalibrationMap,
            AgreementSummary,
            HumanPreference,
            PreferenceEstimates,
            Estimate,
        ),
    ),
    (
        "Online training",
        "The reward store: every reward the judge gave during `charter train grpo|rloo` (or through "
        "`charter.reward_function`), and every pair it compared during `charter train online-dpo` (scoring `pair`), "
        "in the run store's `rewards` table of the output directory. A resumed training marks the rows of the steps "
        "it trains again `superseded` (the table's `status` column, beside `ok` and `failed`): kept, never counted.",
        (records.RewardRecord,),
    ),
    (
        "The cost forecast",
        "What `charter run --dry-run --json` prints and `charter.estimate` returns, and what a run stores when it "
        "starts (meta `forecast`): calls, tokens and cost per role and model, each low, expected and high.",
        (Forecast, ForecastRow, Figures, Span, CostSpan),
    ),
    (
        "Judge audit",
        "Stored in the run (meta `audit`), written to report/audit.json, and shown in the report and "
        "the dataset card. Each `Figure` is a rate with its 95% bootstrap interval over pairs and its n.",
        (AuditReport, FlipShift, InjectionFigures),
    ),
)


def type_name(annotation: Any) -> str:
    """A field annotation as a reader would write it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin in (list, tuple):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"list of {inner}" if origin is list else f"({inner})"
    if origin is dict:
        return f"dict of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type):
        return f"`{annotation.__name__}`" if issubclass(annotation, BaseModel) else annotation.__name__
    return str(annotation)


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def record_table(model: type[BaseModel]) -> str:
    """One record as a heading, its docstring and a field table."""
    doc = inspect.cleandoc(model.__doc__ or "")
    lines = [f"### {model.__name__}", "", doc, "", "| field | type | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        lines.append(f"| `{name}` | {_cell(type_name(field.annotation))} | {_cell(field.description)} |")
    return "\n".join(lines) + "\n"


def formats_markdown() -> str:
    """The whole page."""
    parts = [
        INTRO,
        "## Run directory\n",
        "```",
        inspect.cleandoc(files.__doc__ or "").split("```")[1].strip(),
        "```",
        "",
        "## Run store\n",
        "One SQLite file, `run.sqlite`; records are kept as JSON in `record` columns.",
        "",
        "```",
        inspect.cleandoc(store.__doc__ or "").split("):", 1)[1].strip("\n"),
        "```",
        "",
        "Meta keys (`RunStore.meta`):",
        "",
    ]
    parts += [f"- `{key}`: {text}" for key, text in META.items()]
    parts.append("")
    for title, text, models in SECTIONS:
        parts += [f"## {title}", ""] + ([text, ""] if text else [])
        parts += [record_table(model) for model in models]
    return "\n".join(parts).rstrip() + "\n"
