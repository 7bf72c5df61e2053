"""The dataset card: YAML metadata through huggingface_hub's DatasetCardData, the body from a jinja template; and
what a run directory holds for publishing (`RunData`), read through the run's owners (RunFiles, the run store) as
records, which the card, croissant.json and the export are written from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from charter.agreement.audit import AuditReport, audit_config_for, stored_audit
from charter.agreement.config import AgreementConfig, config_for
from charter.agreement.gate import GateResult, Gates
from charter.agreement.summary import AgreementSummary, Figure, stored_summary
from charter.errors import DatasetError, RunStoreError
from charter.judge.settings import AuditConfig, ConstitutionTestConfig
from charter.lab.checks import ConstitutionTest, constitution_test_config, stored_test
from charter.preference.diversity import diversity_card
from charter.preference.manifest import DatasetManifest, dataset_manifest
from charter.preference.stats import JudgeStats, chosen_longer_rate, headline, judge_stats
from charter.providers.local_models import EMBEDDED_ALIASES
from charter.records import GENERATOR, LabelRow, PreferenceRow, SFTRow, UsageRow
from charter.runs import labels as stored
from charter.runs.counts import COUNT_LABELS, failure_tallies, filter_steps, usage_totals
from charter.runs.files import RunFiles
from charter.runs.items import stored_pair
from charter.runs.store import RunStore, open_store
from charter.runs.usage import stored_usage
from charter.stats.agreement import METRICS, PAIRWISE

TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"

CITATIONS = """@article{bai2022constitutional,
  title   = {Constitutional AI: Harmlessness from AI Feedback},
  author  = {Bai, Yuntao and Kadavath, Saurav and Kundu, Sandipan and Askell, Amanda and Kernion, Jackson
             and Jones, Andy and Chen, Anna and Goldie, Anna and Mirhoseini, Azalia and McKinnon, Cameron
             and others},
  journal = {arXiv preprint arXiv:2212.08073},
  year    = {2022}
}

@article{lee2023rlaif,
  title   = {RLAIF vs. RLHF: Scaling Reinforcement Learning from Human Feedback with AI Feedback},
  author  = {Lee, Harrison and Phatale, Samrat and Mansoor, Hassan and Mesnard, Thomas and Ferret, Johan
             and Lu, Kellie and Bishop, Colton and Hall, Ethan and Carbune, Victor and Rastogi, Abhinav
             and Prakash, Sushant},
  journal = {arXiv preprint arXiv:2309.00267},
  year    = {2023}
}"""


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for n rows."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>1T" if n > 10**12 else "1B<n<10B"


def cell(value: Any) -> str:
    """A value safe inside a markdown table cell."""
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


@dataclass(frozen=True)
class AgreementFigure:
    """One figure of the card's agreement table: an estimate, its 95% interval (None where none can be had
    honestly) and the observations it rests on."""

    figure: str
    value: float | None
    ci: tuple[float, float] | None
    n: int


#: How the card says a figure counts only the pairs where neither side says tie.
EXCLUDED = "ties excluded"
AGREEMENT, ALPHA = METRICS["agreement"], METRICS["krippendorff_alpha"]


def _figure(name: str, fig: Figure | None) -> AgreementFigure:
    if fig is None:
        return AgreementFigure(name, None, None, 0)
    return AgreementFigure(name, fig.value, (fig.ci[0], fig.ci[1]) if fig.ci else None, fig.n)


def agreement_figures(summary: AgreementSummary | None) -> list[AgreementFigure]:
    """The agreement figures the card shows: judge vs human, the baselines, humans among themselves."""
    if summary is None:
        return []
    judge, base = summary.judge_vs_human, summary.baselines
    shown = sorted((m for m in PAIRWISE if m.on_card), key=lambda m: m.ties)  # those without ties first
    figures = [_figure(f"judge vs human: {m.title(EXCLUDED)}", getattr(judge, m.name)) for m in shown]
    figures += [
        _figure(f"baseline '{name}' vs human: {AGREEMENT.label}", getattr(base, key).agreement)
        for key, name in (("longer_wins", "longer wins"), ("first_shown_wins", "first shown wins"))
    ]
    preference = summary.human_preference.overall if summary.human_preference else None
    for name, estimate in (
        (
            "people prefer the chosen response: PPI estimate (judge corrected by the labels)",
            preference and preference.ppi,
        ),
        ("people prefer the chosen response: from the labels alone", preference and preference.human),
        (
            "people prefer the chosen response: the judge's own mean p_chosen (uncorrected)",
            preference and preference.judge,
        ),
    ):
        if estimate:
            n = estimate.n_human or estimate.n_judge
            figures.append(AgreementFigure(name, estimate.value, (estimate.low, estimate.high), n))
    panel = summary.panel
    if panel is not None:
        weights = {m.judge: m.weight for m in panel.members}
        for member in panel.members:
            weight = f", weight {weights[member.judge]:.3g}" if weights[member.judge] is not None else ""
            figures.append(
                _figure(
                    f"panel member `{member.judge}`{weight} alone vs human: {AGREEMENT.title(EXCLUDED)}",
                    member.judge_vs_human.agreement if member.judge_vs_human else None,
                )
            )
        if panel.between_judges is not None:
            figures.append(
                _figure(f"between the panel's judges: {ALPHA.label}", panel.between_judges.krippendorff_alpha)
            )
    if summary.human_human is not None:
        figures += [
            _figure(f"human vs human: {AGREEMENT.label}", summary.human_human.agreement),
            _figure(f"human vs human: {ALPHA.label}", summary.human_human.krippendorff_alpha),
        ]
    return figures


def agreement_rows(summary: AgreementSummary | None) -> list[dict[str, str]]:
    """The agreement table's rows as the card prints them."""
    return [
        {
            "figure": f.figure,
            "value": cell(f.value),
            "ci": f"[{cell(f.ci[0])}, {cell(f.ci[1])}]" if f.ci else "",
            "n": str(f.n),
        }
        for f in agreement_figures(summary)
    ]


def judge_models(published: list[PreferenceRow]) -> list[str]:
    """The models that judged the published rows: a panel's members (as its votes name them), else the judge."""
    members = dict.fromkeys(vote.judge for row in published for vote in row.per_principle if vote.judge)
    return list(members or dict.fromkeys(row.judge_model for row in published))


def is_embedded(model: str) -> bool:
    """Whether a model id is the embedded 135M model (`local:smollm2-135m-instruct`, any precision)."""
    return model.startswith("local:") and model.removeprefix("local:").split("@")[0].lower() in EMBEDDED_ALIASES


def published_counts(run: RunData, published: list[PreferenceRow]) -> dict[str, Any]:
    """The dataset build's counts, with the preference rows as published."""
    return {**run.manifest.counts, "preferences": len(published)}


def first_sentences(run: RunData, published: list[PreferenceRow]) -> list[str]:
    """What to read first about the published rows (`charter.preference.stats`): a judge at chance, failed items,
    few rows and why; the card opens with them and the Croissant file's limitations start with them."""
    return headline(run.judge_stats, published_counts(run, published), run.failures)


def limitations(run: RunData, published: list[PreferenceRow]) -> list[str]:
    """The card's known limitations, also published in the Croissant file."""
    items = [
        "Every label is a model's judgment, not a person's. The judge inherits its model's biases (position, "
        "length, style, self-preference when it also wrote the responses) and the blind spots of the constitution.",
        "The constitution encodes its authors' values; its principles are not a complete account of harm or "
        "helpfulness.",
        "Prompts may be adversarial (red-team) and responses may contain harmful text, on purpose: that is what "
        "the critiques and the judge act on.",
        "Training repeatedly on model-generated data without fresh human data can degrade models (model collapse); "
        "mix in human preferences and keep track of the `synthetic` share.",
    ]
    embedded = [m for m in judge_models(published) if is_embedded(m)]
    if embedded:
        items.append(
            f"The judge ({', '.join(f'`{m}`' for m in embedded)}) is the embedded 135M model, which agrees with "
            "people at chance on the human preference pairs of charter's benchmarks: its labels show the "
            "machinery working and are not fit to train on."
        )
    conversations = sum(1 for row in published if _is_conversation(row.prompt))
    if conversations:
        items.append(
            f"{conversations} of {len(published)} prompts are conversations (system or developer messages, earlier "
            "turns, tool calls and their results): the rows keep their roles and tool calls in TRL's conversational "
            "format, and the judge saw who said what at which authority, with tool results fenced as untrusted data."
        )
    if run.agreement is None:
        items.append("No human agreement was measured for this run.")
    return items


def _is_conversation(prompt: Sequence[Any]) -> bool:
    """More than a single user turn (a system message alone, added by a run's settings, does not count)."""
    turns = [m for m in prompt if m.role != "system"]
    return len(turns) > 1 or any(m.role != "user" for m in turns)


def _constitution(run: RunData) -> dict[str, Any]:
    info = run.manifest.settings.constitution
    try:
        parsed = yaml.safe_load(run.constitution_yaml) if run.constitution_yaml else {}
    except yaml.YAMLError:
        parsed = {}
    parsed = parsed if isinstance(parsed, dict) else {}
    principles = parsed.get("principles") or [{"id": pid} for pid in info.principles]
    return {
        "name": info.name,
        "version": info.version,
        "hash": info.hash,
        "description": parsed.get("description", ""),
        "principles": [p for p in principles if isinstance(p, dict)],
        "spec": parsed.get("spec") if isinstance(parsed.get("spec"), dict) else None,
    }


def _usage(run: RunData) -> dict[str, Any]:
    rows = [dict(r.model_dump(), cost=f"{r.cost_usd:.4f}") for r in run.usage]
    totals = usage_totals(run.usage)
    return {
        "rows": rows,
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "cost": f"{totals['cost_usd']:.4f}",
        "cache_read_tokens": totals["cache_read_tokens"],
        "cache_share": f"{totals['cache_read_tokens'] / totals['prompt_tokens']:.1%}"
        if totals["prompt_tokens"]
        else "0%",
        "cache_saved": f"{totals['cache_saved_usd']:.4f}",
    }


def _models(run: RunData) -> list[dict[str, str]]:
    settings = run.manifest.settings
    roles = list(dict.fromkeys([*settings.models, *settings.sampling]))
    return [
        {
            "role": role,
            "model": cell(settings.models.get(role)),
            "sampling": cell(_sampling(settings.sampling[role]) if role in settings.sampling else None),
        }
        for role in roles
    ]


def _sampling(params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.model_dump(mode="json").items() if v not in (None, [], ())}


def _calibration(run: RunData, published: list[PreferenceRow]) -> dict[str, Any]:
    calibrated = sum(1 for r in published if r.p_chosen_calibrated is not None)
    fit = run.manifest.calibration
    return {
        "rows": calibrated,
        "of": len(published),
        "method": fit.method if fit else None,
        "labels": fit.labels if fit else 0,
        "min_confidence": fit.min_confidence if fit else None,
    }


def _audit(run: RunData, audit_gate: GateResult | None) -> dict[str, Any]:
    from charter.agreement.audit import markdown

    report = run.audit
    judge_fp = run.manifest.settings.fingerprints.judge
    return {
        "markdown": markdown(report, level=3) if report else None,
        "other_settings": report is not None and report.judge_fingerprint != judge_fp,
        "gate": audit_gate,
    }


def _constitution_test(run: RunData, gate: GateResult | None) -> dict[str, Any]:
    from charter.lab.checks import checks_markdown

    result = run.constitution_test
    text = None
    if result is not None:
        text = checks_markdown(result).split("\n", 2)[2].replace("\n## ", "\n### ")
    judge_fp = run.manifest.settings.fingerprints.judge
    return {
        "markdown": text,
        "other_settings": result is not None and result.judge_fingerprint != judge_fp,
        "gate": gate,
    }


def card_context(
    run: RunData,
    published: list[PreferenceRow],
    repo_id: str,
    splits: dict[str, dict[str, int]],
    gates: Gates,
) -> dict[str, Any]:
    """Everything the template shows, from the settings and counts of exactly the published rows."""
    settings = run.manifest.settings
    stats = run.judge_stats
    rows_rate, rows_pairs = chosen_longer_rate(published)
    counts = published_counts(run, published)
    agreement_judge = run.agreement.judge_fingerprint if run.agreement else None
    return {
        "repo_id": repo_id,
        "run_id": run.run_id,
        "created_at": settings.created_at,
        "generator": GENERATOR,
        "headline": first_sentences(run, published),
        "constitution": _constitution(run),
        "models": _models(run),
        "judge": settings.judge,
        "votes_clamped": bool(getattr(settings.judge.mode_entry.reply, "clamped", False)),
        "critique": settings.critique,
        "pairs": settings.pairs,
        "settings_fingerprint": settings.fingerprints.dataset,
        "stats": stats,
        "position_rate": percent(stats.position_inconsistency_rate),
        "length_rate": percent(stats.longer_wins_rate),
        "rows_length_rate": percent(rows_rate),
        "rows_length_pairs": rows_pairs,
        "agreement": agreement_rows(run.agreement),
        "limitations": limitations(run, published),
        "agreement_other_judge": agreement_judge is not None and agreement_judge != settings.fingerprints.judge,
        "calibration": _calibration(run, published),
        "n_human_labels": len(run.human_labels),
        "n_annotators": len({label.annotator for label in run.human_labels}),
        "gate": gates.agreement,
        "audit": _audit(run, gates.audit),
        "constitution_test": _constitution_test(run, gates.constitution),
        "filters": yaml.safe_dump(settings.filters.model_dump(mode="json"), sort_keys=False).strip(),
        "counts": [
            {"stage": label, "count": cell(counts[key])} for key, label in COUNT_LABELS.items() if key in counts
        ],
        "filter_steps": filter_steps(counts),
        "diversity": diversity_card(run.run_dir),
        "usage": _usage(run),
        "splits": splits,
        "citations": CITATIONS,
    }


def card_data(run: RunData, configs: Sequence[Mapping[str, Any]], n_rows: int, license: str) -> DatasetCardData:
    """The YAML metadata block."""
    name = run.manifest.settings.constitution.name
    return DatasetCardData(
        license=license,
        language=["en"],
        pretty_name=f"{name} preferences (charter run {run.run_id})",
        task_categories=["text-generation"],
        tags=["dpo", "rlaif", "constitutional-ai", "preference", "synthetic", "charter"],
        size_categories=[size_category(n_rows)],
        configs=configs,
    )


def build_card(
    run: RunData,
    published: list[PreferenceRow],
    repo_id: str,
    configs: Sequence[Mapping[str, Any]],
    splits: dict[str, dict[str, int]],
    gates: Gates,
    license: str = "other",
) -> DatasetCard:
    """The dataset card (README.md) for the rows published from a run."""
    data = card_data(run, configs, len(published), license)
    context = card_context(run, published, repo_id, splits, gates)
    return DatasetCard.from_template(data, template_path=str(TEMPLATE), **context)


@dataclass
class RunData:
    """Everything about one run that the export folder and the card are built from."""

    run_dir: Path
    run_id: str
    manifest: DatasetManifest
    preferences: list[PreferenceRow]
    sft: list[SFTRow]
    human_labels: list[LabelRow]
    usage: list[UsageRow]
    judge_stats: JudgeStats
    agreement: AgreementSummary | None
    agreement_config: AgreementConfig
    run_config: dict[str, Any]
    constitution_yaml: str | None = None
    audit: AuditReport | None = None
    audit_config: AuditConfig | None = None
    constitution_test: ConstitutionTest | None = None
    constitution_test_config: ConstitutionTestConfig | None = None
    failures: dict[str, dict[str, int]] = field(default_factory=dict)
    """The run's items still failing, by stage and by the kind of their latest failure."""


def _iso(epoch: float) -> str:
    """Label times are stored as epoch seconds; publish them as ISO 8601 UTC."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def label_rows(store: RunStore, run_id: str) -> list[LabelRow]:
    """The human labels (skips left out), each with the pair it labels."""
    out = []
    for label in stored.labels(store):
        pair = stored_pair(store, label.pair_id)
        if label.label == "skip" or pair is None:
            continue
        out.append(
            LabelRow(
                pair_id=label.pair_id,
                annotator=label.annotator,
                label=label.label,
                shown_order=label.shown_order,
                created_at=_iso(label.created_at),
                prompt=pair.prompt,
                response_a=pair.a,
                response_b=pair.b,
                run_id=run_id,
            )
        )
    return out


def read_run(run_dir: str | Path) -> RunData:
    """Load a run directory (one-line error when it is not one or has no preference rows)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunStoreError(f"{run_dir}: no such run directory")
    files = RunFiles(run_dir)
    with open_store(run_dir, read_only=True) as store:
        manifest = dataset_manifest(store)
        preferences = files.preferences()
        if manifest is None or not preferences:
            raise DatasetError(
                f"{files.data_dir}: no preference rows (data/preferences.parquet or .jsonl); run the pipeline first"
            )
        run_id = manifest.settings.run_id
        fingerprints = manifest.settings.fingerprints
        return RunData(
            run_dir=run_dir,
            run_id=run_id,
            manifest=manifest,
            preferences=preferences,
            sft=files.sft(),
            human_labels=label_rows(store, run_id),
            usage=stored_usage(store),
            judge_stats=judge_stats(store, fingerprints, manifest.settings.constitution.principles),
            agreement=stored_summary(store),
            agreement_config=config_for(store),
            run_config=store.run_config() or files.config(),
            constitution_yaml=files.constitution_yaml(),
            audit=stored_audit(store),
            audit_config=audit_config_for(store),
            constitution_test=stored_test(store),
            constitution_test_config=constitution_test_config(store),
            failures=failure_tallies(store, 1, 0).by_kind,
        )
