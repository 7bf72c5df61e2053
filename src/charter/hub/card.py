"""The dataset card: YAML metadata through huggingface_hub's DatasetCardData, the body from a jinja template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from charter.hub.gate import GateOutcome
from charter.hub.provenance import GENERATOR
from charter.hub.rundata import RunData

TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"

STAGE_LABELS = {
    "prompts_total": "prompts read",
    "prompts_empty": "empty prompts skipped",
    "prompts_duplicate": "duplicate prompts skipped",
    "prompts_too_long": "prompts over the length limit",
    "prompts_truncated": "prompts truncated to the length limit",
    "prompts_skipped_too_long": "prompts skipped as too long",
    "prompts_used": "prompts used",
    "chains": "critique/revision chains",
    "pairs": "response pairs built",
    "judged": "pairs judged",
    "judge_failures": "judge failures (unparseable after retries)",
    "preferences_before_filters": "preference rows before filters",
    "dropped_low_confidence": "dropped: judge confidence below the threshold",
    "dropped_inconsistent": "dropped: the two presentation orders disagreed",
    "dropped_ties": "dropped: ties",
    "dropped_duplicates": "dropped: duplicates",
    "dropped_principle_cap": "dropped: over the per-principle cap",
    "dropped_not_best_vs_worst": "dropped: not the best-vs-worst pair of a prompt's samples",
    "preferences": "preference rows published",
}

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
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
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


def _ci(value: dict) -> tuple[Any, Any] | None:
    for low, high in (("ci_low", "ci_high"), ("low", "high"), ("lower", "upper"), ("ci_lower", "ci_upper")):
        if low in value and high in value:
            return value[low], value[high]
    ci = value.get("ci") or value.get("ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return ci[0], ci[1]
    return None


def agreement_rows(summary: Any, prefix: str = "", depth: int = 0) -> list[dict[str, str]]:
    """Flatten the agreement summary into (figure, value, 95% CI, n) rows, whatever its nesting."""
    rows: list[dict[str, str]] = []
    if not isinstance(summary, dict) or depth > 3:
        return rows
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            rows.append({"figure": name, "value": cell(value), "ci": "", "n": ""})
        elif isinstance(value, dict):
            point = next((value[k] for k in ("value", "estimate", "point", "mean") if k in value), None)
            ci = _ci(value)
            if isinstance(point, (int, float)) and not isinstance(point, bool):
                ci_text = f"[{cell(ci[0])}, {cell(ci[1])}]" if ci else ""
                rows.append({"figure": name, "value": cell(point), "ci": ci_text, "n": cell(value.get("n", ""))})
            else:
                rows.extend(agreement_rows(value, f"{name}.", depth + 1))
    return rows


def find_filters(config: Any) -> dict[str, Any]:
    """Every `filter`/`filters` section of the run config, by its dotted path."""
    found: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                here = f"{path}.{key}" if path else str(key)
                if str(key).lower() in ("filter", "filters"):
                    found[here] = item
                else:
                    walk(item, here)

    walk(config, "")
    return found


def _constitution(run: RunData) -> dict[str, Any]:
    meta = run.meta.get("constitution") or {}
    try:
        parsed = yaml.safe_load(run.constitution_yaml) if run.constitution_yaml else {}
    except yaml.YAMLError:
        parsed = {}
    parsed = parsed if isinstance(parsed, dict) else {}
    principles = parsed.get("principles") or [{"id": pid} for pid in meta.get("principles", [])]
    return {
        "name": meta.get("name") or parsed.get("name"),
        "version": meta.get("version") or parsed.get("version"),
        "hash": meta.get("hash"),
        "description": parsed.get("description", ""),
        "principles": [p for p in principles if isinstance(p, dict)],
    }


def _usage(run: RunData) -> dict[str, Any]:
    rows = [dict(r, cost=f"{r['cost_usd']:.4f}") for r in run.usage]
    return {
        "rows": rows,
        "prompt_tokens": sum(r["prompt_tokens"] for r in run.usage),
        "completion_tokens": sum(r["completion_tokens"] for r in run.usage),
        "cost": f"{sum(r['cost_usd'] for r in run.usage):.4f}",
    }


def _models(run: RunData) -> list[dict[str, str]]:
    models, sampling = run.meta.get("models") or {}, run.meta.get("sampling") or {}
    roles = list(dict.fromkeys([*models, *sampling]))
    return [{"role": role, "model": cell(models.get(role)), "sampling": cell(sampling.get(role))} for role in roles]


def card_context(run: RunData, repo_id: str, splits: dict[str, dict[str, int]], gate: GateOutcome) -> dict[str, Any]:
    """Everything the template shows."""
    counts = run.meta.get("counts") or {}
    stats = run.judge_stats
    return {
        "repo_id": repo_id,
        "run_id": run.run_id,
        "created_at": run.meta.get("created_at"),
        "generator": GENERATOR,
        "constitution": _constitution(run),
        "models": _models(run),
        "judge": run.meta.get("judge") or {},
        "stats": stats,
        "position_rate": percent(stats.get("position_inconsistency_rate")),
        "length_rate": percent(stats.get("length_win_rate")),
        "rows_length_rate": percent(stats.get("rows_length_win_rate")),
        "agreement": agreement_rows(run.meta.get("agreement")),
        "n_human_labels": len(run.human_labels),
        "n_annotators": len({label["annotator"] for label in run.human_labels}),
        "gate": gate,
        "filters": yaml.safe_dump(find_filters(run.config), sort_keys=False).strip() if find_filters(run.config) else "",
        "counts": [{"stage": STAGE_LABELS.get(k, k), "count": cell(v)} for k, v in counts.items()],
        "usage": _usage(run),
        "splits": splits,
        "citations": CITATIONS,
    }


def card_data(run: RunData, configs: list[dict], n_rows: int, license: str) -> DatasetCardData:
    """The YAML metadata block."""
    name = (run.meta.get("constitution") or {}).get("name") or "charter"
    return DatasetCardData(
        license=license,
        language=["en"],
        pretty_name=f"{name} preferences (charter run {run.run_id})",
        task_categories=["text-generation"],
        tags=["dpo", "rlaif", "constitutional-ai", "preference", "synthetic", "charter"],
        size_categories=[size_category(n_rows)],
        configs=configs,
    )


def build_card(run: RunData, repo_id: str, configs: list[dict], splits: dict[str, dict[str, int]],
               gate: GateOutcome, license: str = "other") -> DatasetCard:
    """The dataset card (README.md) for a run."""
    data = card_data(run, configs, sum(splits.get("preferences", {}).values()), license)
    return DatasetCard.from_template(data, template_path=str(TEMPLATE), **card_context(run, repo_id, splits, gate))
