"""What an arena writes: arena.json (the scores, intervals, ranks and design), arena.md and arena.svg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charter.training.output import write_json


def _models(names: list[str], specs: list[str], answers: list[list[str]], fit: dict, tally: list[dict]) -> list[dict]:
    out = []
    for k, name in enumerate(names):
        ranked = fit["score"][k] is not None  # a model no decided comparison reached is unranked
        out.append(
            {
                "model": name,
                "spec": specs[k],
                **{key: round(float(fit[key][k]), 4) if ranked else None for key in ("score", "ci_low", "ci_high")},
                **{key: int(fit[key][k]) if ranked else None for key in ("rank", "rank_low", "rank_high")},
                **tally[k],
                "mean_length": round(sum(len(a) for a in answers[k]) / max(len(answers[k]), 1), 1),
            }
        )
    return sorted(out, key=lambda m: (m["rank"] is None, m["rank"] or 0, -(m["score"] or 0)))


def decided(models: list[dict]) -> bool:
    """Whether the ranking is decided: every model ranked, and no two models' rank ranges overlap."""
    if any(m["rank"] is None for m in models):
        return False
    spans = sorted((m["rank_low"], m["rank_high"]) for m in models)
    return all(high < low for (_, high), (low, _) in zip(spans, spans[1:]))


def write_outputs(
    config: Any,
    names: list[str],
    answers: list[list[str]],
    judged: list[tuple],
    failed: int,
    planned: list[tuple[str, int, int]],
    per_pair: int | None,
    fit: dict[str, Any],
    usage: dict[str, Any],
    tally: list[dict[str, int]],
) -> dict[str, Any]:
    """Write OUT/arena.json, arena.md and arena.svg; returns what arena.json holds. `config` is the arena's
    `ArenaConfig` (not imported here: the arena imports this module)."""
    n, prompts = len(names), len({p for p, _, _ in planned}) if planned else 0
    models = _models(names, config.models, answers, fit["plain"], tally)
    controlled = _models(names, config.models, answers, fit["controlled"], tally)
    result: dict[str, Any] = {
        "models": models,
        "reference": fit["reference"],
        "decided": decided(models),
        "length_controlled": {
            "beta": round(float(fit["controlled"]["beta"]), 4),
            "models": [{k: m[k] for k in ("model", "score", "ci_low", "ci_high", "rank")} for m in controlled],
        },
        "judge": config.judge.model,
        "judge_mode": config.judge.mode,
        "constitution": config.constitution,
        "prompts": config.prompts,
        "prompts_used": len({p for p, *_ in judged}),
        "design": {
            "kind": "all pairs" if per_pair is None else "sparse",
            "prompts_per_pair": per_pair,
            "comparisons": len(planned),
            "all_pairs_comparisons": n * (n - 1) // 2 * max(prompts, 1) if per_pair is None else None,
            "judged": len(judged),
            "failed": failed,
        },
        "bootstrap_samples": config.bootstrap_samples,
        "judge_agreement_with_people": None,
        **usage,
    }
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "arena.json", result)
    (out / "arena.md").write_text(markdown(result), encoding="utf-8")
    plot(models, out / "arena.svg", result["reference"])
    return {**result, "written_to": str(out / "arena.json")}


def markdown(result: dict[str, Any]) -> str:
    design = result["design"]
    shown = (
        "every pair of models on every prompt"
        if design["kind"] == "all pairs"
        else f"each pair of models on {design['prompts_per_pair']} prompts (sparse)"
    )
    lines = [
        "# Arena",
        "",
        f"Judge `{result['judge']}` (mode {result['judge_mode']}, both orders) against `{result['constitution']}` on "
        f"{result['prompts_used']} prompts of `{result['prompts']}`: {shown}; {design['judged']} comparisons judged, "
        f"{design['failed']} failed (left out of the fit). Scores are Bradley–Terry log-odds against "
        f"`{result['reference']}` with 95% intervals by bootstrap over prompts ({result['bootstrap_samples']} "
        "resamples); a rank range is the 2.5-97.5% range of the resampled ranks.",
        "",
        "| rank | model | score | 95% interval | rank range | wins / losses / ties | mean length |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in result["models"]:
        if m["rank"] is None:
            lines.append(f"| - | {m['model']} | unranked: no decided comparison | | | 0 / 0 / 0 | {m['mean_length']} |")
            continue
        lines.append(
            f"| {m['rank']} | {m['model']} | {m['score']:+.3f} | [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] | "
            f"{m['rank_low']}-{m['rank_high']} | {m['wins']} / {m['losses']} / {m['ties']} | {m['mean_length']} |"
        )
    lc = result["length_controlled"]
    lines += [
        "",
        "Length-controlled (the judge's verdicts regressed on the answers' length difference, "
        f"beta {lc['beta']:+.3f}):",
        "",
        "| rank | model | score | 95% interval |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {m['rank']} | {m['model']} | {m['score']:+.3f} | [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] |"
        for m in lc["models"]
        if m["rank"] is not None
    ]
    lines += [
        "",
        "The ranking is "
        + (
            "decided: no two rank ranges overlap."
            if result["decided"]
            else "not decided: some rank ranges overlap (more prompts, or a design with more comparisons "
            "per pair, narrows them)."
        ),
        "",
        "How far people agree with this judge is not measured by the arena: spot-check its comparisons "
        "(`charter agreement`, the judge audit) before reading these scores as people's preferences.",
        "",
        f"Calls made: {result['answer_calls']} for answers, {result['judge_calls']} judge calls; "
        f"{result['cached_calls']} more answered from the call cache (free); cost ${result['cost_usd']:.4f}.",
        "",
    ]
    return "\n".join(lines)


def plot(models: list[dict], path: Path, reference: str) -> Path | None:
    """Scores with their 95% intervals, best on top (SVG); None without matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(models)))
    ordered = [m for m in reversed(models) if m["score"] is not None]
    y = range(len(ordered))
    scores = [m["score"] for m in ordered]
    low = [m["score"] - m["ci_low"] for m in ordered]
    high = [m["ci_high"] - m["score"] for m in ordered]
    ax.errorbar(scores, list(y), xerr=[low, high], fmt="o", capsize=3)
    ax.set_yticks(list(y), [m["model"] for m in ordered])
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"Bradley–Terry score vs {reference} (log-odds, 95% interval)")
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)
    return path
