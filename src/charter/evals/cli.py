"""`charter eval winrate`, `arena`, `rm` and `spec`."""

from __future__ import annotations

from pathlib import Path

import typer

from charter.judge.judgment import DEFAULT_COMBINATION
from charter.judge.modes import DEFAULT_MODE, DEFAULT_RATING

#: The judge options win rate and arena share.
_JUDGE_MODE = typer.Option(
    DEFAULT_MODE, help="logprobs, cot, verdict, or stepwise (each answer judged as the next step of its conversation)."
)
_PRINCIPLES_PER_PAIR = typer.Option(1, "--principles-per-pair", help="Principles each comparison is judged under.")
_COMBINE = typer.Option(
    DEFAULT_COMBINATION, help="How each comparison's principle votes combine: weighted (their mean) or priority."
)


def winrate(
    base: str = typer.Option("local:smollm2-135m-instruct", help="Model before training (model string)."),
    candidate: str | None = typer.Option(None, help="Trained model, e.g. local:runs/x/dpo."),
    prompts: str = typer.Option(..., help="Held-out prompts: JSONL/parquet with a prompt or messages column."),
    judge: str = typer.Option("local:smollm2-135m-instruct", help="Judge model string."),
    judge_api_key_env: str | None = typer.Option(
        None,
        metavar="NAME",
        help="The variable holding the judge's key (for a host other than api.openai.com / api.anthropic.com).",
    ),
    base_api_key_env: str | None = typer.Option(
        None, metavar="NAME", help="The variable holding the base model's key (likewise)."
    ),
    candidate_api_key_env: str | None = typer.Option(
        None, metavar="NAME", help="The variable holding the candidate model's key (likewise)."
    ),
    reward_model: Path | None = typer.Option(None, "--reward-model", help="Reward model folder to score both."),
    constitution: str = typer.Option("harmless", help="Constitution name or YAML path."),
    limit: int | None = typer.Option(50, help="Most prompts to use."),
    max_tokens: int = typer.Option(128, help="Most tokens per answer."),
    judge_mode: str = _JUDGE_MODE,
    principles_per_pair: int = _PRINCIPLES_PER_PAIR,
    combine: str = _COMBINE,
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Write RUN_DIR/report/winrate.json."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the JSON summary (.md beside it)."),
    human_labels: Path | None = typer.Option(
        None,
        "--human-labels",
        help="JSONL of labelled comparisons (rows of winrate.pairs.jsonl with preferred: candidate, base or tie): "
        "adds the prediction-powered and people-only win rates.",
    ),
) -> None:
    """Win rate of a candidate against a base model, judged in both orders, with a 95% CI."""
    from charter.evals.winrate import WinrateConfig
    from charter.evals.winrate import winrate as run_winrate
    from charter.progress import spinner
    from charter.yamlio import model_from_data

    fields = {
        "base": base,
        "candidate": candidate,
        "prompts": prompts,
        "judge": judge,
        "reward_model": reward_model,
        "constitution": constitution,
        "limit": limit,
        "max_tokens": max_tokens,
        "judge_mode": judge_mode,
        "principles_per_pair": principles_per_pair,
        "combine": combine,
        "run_dir": run_dir,
        "out": out,
        "judge_api_key_env": judge_api_key_env,
        "base_api_key_env": base_api_key_env,
        "candidate_api_key_env": candidate_api_key_env,
        "human_labels": human_labels,
    }
    cfg = model_from_data(WinrateConfig, fields, "charter eval winrate")
    with spinner("answering and judging"):
        summary = run_winrate(cfg)
    ci = summary["ci95"] or [float("nan")] * 2
    rate = summary["win_rate"]
    typer.echo(
        f"win rate {rate:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}) over {summary['n']} prompts"
        if rate is not None
        else "no judgments succeeded"
    )
    lc = summary["length_controlled"]
    if lc["win_rate"] is not None and lc["ci95"]:
        typer.echo(
            f"length-controlled {lc['win_rate']:.3f} (95% CI {lc['ci95'][0]:.3f}-{lc['ci95'][1]:.3f}) against mean "
            f"P(candidate) {lc['raw']:.3f}; the candidate's answer is longer on {lc['longer_rate']:.0%} of prompts"
        )
    elif lc["note"]:
        typer.echo(f"length-controlled win rate: not fitted ({lc['note']})")
    hw = summary["human_labels"]
    if hw and hw["ppi"] and hw["human"]:
        ppi, alone = hw["ppi"], hw["human"]
        typer.echo(
            f"with people's labels on {hw['matched']} comparisons: PPI {ppi['value']:.3f} "
            f"[{ppi['low']:.3f}, {ppi['high']:.3f}], labels alone {alone['value']:.3f} "
            f"[{alone['low']:.3f}, {alone['high']:.3f}]"
        )
    if hw and hw["note"]:
        typer.echo(f"labels: {hw['note']}")
    typer.echo(f"comparisons to label: {Path(summary['written_to']).with_suffix('.pairs.jsonl')}")
    rm = summary["reward_model"]
    if rm:
        typer.echo(f"reward model: candidate {rm['mean_candidate']:.3f}, base {rm['mean_base']:.3f}")
    typer.echo(f"written to {summary['written_to']}")
    _every_judgment_failed(summary["n"], summary["failures"])


def _every_judgment_failed(succeeded: int, failed: int) -> None:
    """Exit 3 where every judgment failed: a summary of none is no measurement (it is written all the same)."""
    from charter.errors import TooManyFailures

    if not succeeded and failed:
        raise TooManyFailures(f"no judgment succeeded ({failed} failed): nothing is measured")


def arena(
    models: list[str] = typer.Option(
        [], "--models", help="Model strings or answer files (JSONL: prompt, answer): `--models M1 M2 M3`."
    ),
    more: list[str] | None = typer.Argument(
        None,
        metavar="[MODELS]...",
        help="The models after the first (`--models M1 M2` reads M2 as this).",
        show_default=False,
    ),
    prompts: Path = typer.Option(..., help="Prompts: JSONL/parquet with a prompt or messages column."),
    judge: str = typer.Option("local:smollm2-135m-instruct", help="Judge model string."),
    panel: list[str] = typer.Option([], "--panel", help="More judge models: with the judge, one panel."),
    out: Path = typer.Option(Path("arena"), "--out", help="Folder for arena.json/.md/.svg and the call cache."),
    reference: str | None = typer.Option(None, help="The model scored 0 (default: the first listed)."),
    constitution: str = typer.Option("harmless", help="Constitution name or YAML path."),
    judge_mode: str = _JUDGE_MODE,
    principles_per_pair: int = _PRINCIPLES_PER_PAIR,
    combine: str = _COMBINE,
    per_pair: int | None = typer.Option(None, "--per-pair", help="Prompts each pair is compared on."),
    max_calls: int | None = typer.Option(
        None, "--max-calls", help="Most judge calls (2 per comparison and judge: both orders, each panel member)."
    ),
    limit: int | None = typer.Option(50, help="Most prompts to use."),
    max_tokens: int = typer.Option(128, help="Most tokens per answer."),
    bootstrap: int = typer.Option(200, help="Bootstrap resamples of the prompts."),
    human_labels: Path | None = typer.Option(
        None, "--human-labels", help="JSONL of people's verdicts (prompt, model_a, model_b, preferred: a, b or tie)."
    ),
) -> None:
    """Rank N models on one Bradley-Terry scale with 95% intervals and rank ranges (sparse pairwise design)."""
    from charter.evals.arena import ArenaConfig
    from charter.evals.arena import arena as run_arena
    from charter.progress import spinner
    from charter.yamlio import model_from_data

    fields = {
        "models": [*models, *(more or [])], "prompts": prompts, "judge": judge, "panel": panel, "out": out,
        "reference": reference,
        "constitution": constitution, "judge_mode": judge_mode, "per_pair": per_pair, "max_calls": max_calls,
        "principles_per_pair": principles_per_pair, "combine": combine,
        "limit": limit, "max_tokens": max_tokens, "bootstrap": bootstrap, "human_labels": human_labels,
    }  # fmt: skip
    cfg = model_from_data(ArenaConfig, fields, "charter eval arena")
    with spinner("answering and judging"):
        summary = run_arena(cfg)
    for m in summary["models"]:
        if m["rank"] is None:
            typer.echo(f"unranked  {m['model']}  (no decided comparison)")
            continue
        interval = "(reference)" if m["ci_low"] is None else f"[{m['ci_low']:+.2f}, {m['ci_high']:+.2f}]"
        typer.echo(f"{m['rank']} ({m['rank_low']}-{m['rank_high']})  {m['model']}  {m['score']:+.2f} {interval}")
    typer.echo(f"{summary['calls']} judge calls, {summary['failures']} failed; written to {out}/arena.json")


def rm(
    model: str | None = typer.Argument(
        None, help="Reward model folder or Hub id (sequence classification); or give --judge instead."
    ),
    pairs: str = typer.Option(..., help="Pairs file (JSONL/parquet: prompt, chosen, rejected, optional subset)."),
    judge: str | None = typer.Option(None, help="A judge model string, used as a pairwise reward model."),
    judge_api_key_env: str | None = typer.Option(
        None,
        metavar="NAME",
        help="The variable holding the judge's key (for a host other than api.openai.com / api.anthropic.com).",
    ),
    panel: list[str] = typer.Option([], "--panel", help="More judge models: with the judge, one panel."),
    constitution: str = typer.Option("harmless", help="Constitution name or YAML path (a judge's)."),
    judge_mode: str = typer.Option(DEFAULT_MODE, help="logprobs, cot or verdict."),
    limit: int | None = typer.Option(None, help="Most rows to score (a seeded sample)."),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the JSON summary (a judge's call cache beside it)."
    ),
    cache: Path | None = typer.Option(
        None, "--cache", help="A judge's call cache (default: calls.sqlite beside --out, else ~/.cache/charter)."
    ),
) -> None:
    """Reward-model (or judge) accuracy on preference pairs, per subset with exact 95% intervals, and best-of-N."""
    from charter.evals.rm import RmEvalConfig, evaluate_rm
    from charter.progress import spinner
    from charter.yamlio import model_from_data

    fields = {
        "reward_model": model, "pairs": pairs, "judge": judge, "judge_api_key_env": judge_api_key_env, "panel": panel,
        "constitution": constitution, "judge_mode": judge_mode, "limit": limit, "out": out, "cache": cache,
    }  # fmt: skip
    cfg = model_from_data(RmEvalConfig, fields, "charter eval rm")
    with spinner("scoring pairs" if judge is None else "judging pairs"):
        summary = evaluate_rm(cfg)
    _print_rm(summary)
    if out is not None:
        typer.echo(f"written to {out}")
    if judge is not None:
        _every_judgment_failed((summary["overall"] or {}).get("n", 0), summary["failures"])


def _accuracy_line(name: str, acc: dict | None, failures: int | None) -> str:
    failed = "" if failures is None else f", {failures} failed"
    if not acc or not acc["n"]:
        return f"{name}: no pair scored{failed}"
    low, high = acc["ci95"]
    return f"{name}: accuracy {acc['accuracy']:.3f} (95% CI {low:.3f}-{high:.3f}, n={acc['n']}{failed})"


def _print_rm(summary: dict) -> None:
    judged = "failures" in summary
    typer.echo(_accuracy_line("overall", summary["overall"], summary["failures"] if judged else None))
    for name, acc in summary["subsets"].items():
        typer.echo(_accuracy_line(name, acc, acc["failures"] if judged else None))
    best = summary["best_of_n"]
    left_out = summary.get("best_of_n_failures", 0)
    failed = f" ({left_out} left out: a comparison failed)" if left_out else ""
    typer.echo(
        f"best-of-N: {best['accuracy']:.3f} over {best['n']} prompts{failed}"
        if best
        else f"best-of-N: no prompt has more than two responses and one never rejected{failed}"
    )
    if judged:
        consistency = summary["position_consistency"]
        typer.echo(
            f"{summary['calls']} judge calls ({summary['cached_calls']} from the cache), ${summary['cost_usd']:.4f}"
            + ("" if consistency is None else f"; both orders agree on {consistency:.0%} of comparisons")
        )


def spec(
    spec: str = typer.Argument(
        ..., metavar="SPEC", help="A Markdown spec, or a constitution YAML imported from one (or any constitution)."
    ),
    model: str | None = typer.Option(None, "--model", help="The model whose answers are judged."),
    model_api_key_env: str | None = typer.Option(
        None, metavar="NAME", help="The variable holding the model's key (for a host other than OpenAI's/Anthropic's)."
    ),
    prompts: str | None = typer.Option(
        None,
        "--prompts",
        help="Prompts for --model (JSONL/parquet: prompt or messages, optional section); default: "
        "the spec's example conversations.",
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Responses to judge instead (JSONL/parquet: prompt, response, optional section)."
    ),
    judge: str = typer.Option("local:smollm2-135m-instruct", help="Judge model string."),
    judge_api_key_env: str | None = typer.Option(
        None, metavar="NAME", help="The variable holding the judge's key (likewise)."
    ),
    rating: str = typer.Option(DEFAULT_RATING, help="How the score is read: logprobs, cot or verdict."),
    scale: int = typer.Option(5, help="The rubric's top score (scores 1..scale)."),
    comply_at: float = typer.Option(4.0, "--comply-at", help="A response complies at this score or above."),
    sections: list[str] = typer.Option([], "--section", help="Judge only this section (repeatable); default: all."),
    limit: int | None = typer.Option(None, help="Most prompts or rows (a seeded sample)."),
    agreement: bool = typer.Option(
        True, "--agreement/--no-agreement", help="Judge the spec's labelled pairs for the judge's agreement."
    ),
    max_tokens: int = typer.Option(256, help="Most tokens per answer."),
    out: Path = typer.Option(Path("spec-eval"), "--out", help="Folder for spec-eval.json/.md/.jsonl and calls.sqlite."),
) -> None:
    """Compliance with a prose spec per section and per level, worst first, each with its 95% interval and n, beside
    the judge's agreement with the spec's own labelled examples."""
    from charter.evals.spec import SpecEvalConfig, evaluate_spec
    from charter.progress import spinner
    from charter.yamlio import model_from_data

    fields = {
        "spec": spec, "model": model, "model_api_key_env": model_api_key_env, "prompts": prompts, "dataset": dataset,
        "judge": judge, "judge_api_key_env": judge_api_key_env, "rating": rating, "scale": scale,
        "comply_at": comply_at, "sections": sections or None, "limit": limit, "agreement": agreement,
        "max_tokens": max_tokens, "out": out,
    }  # fmt: skip
    cfg = model_from_data(SpecEvalConfig, fields, "charter eval spec")
    with spinner("answering and judging" if model else "judging"):
        summary = evaluate_spec(cfg)
    _print_spec(summary)
    _every_judgment_failed(summary["judgments"] - summary["failures"], summary["failures"])


def _spec_figure(figure: dict | None, note: str | None) -> str:
    if figure is None:
        return note or "n/a"
    if figure["value"] is None:
        return f"none judged ({figure['failures']} failed)"
    low, high = figure["ci95"]
    ties = f", {figure['ties']} ties" if figure.get("ties") else ""
    return f"{figure['value']:.3f} [{low:.3f}, {high:.3f}] n={figure['n']}{ties}"


def _print_spec(summary: dict) -> None:
    origin, constitution = summary["spec"]["origin"], summary["spec"]["constitution"]
    if origin:
        typer.echo(
            f"spec {origin['file']} version {origin['version']}, {origin['skipped']} of {origin['sections']} sections "
            f"skipped by the import; constitution sha256 {constitution['hash']}"
        )
    else:
        typer.echo(f"constitution {constitution['name']} sha256 {constitution['hash']} (not imported from a spec)")
    figures = summary["figures"]
    rows = [("all", figures["overall"])] + [(f"level {level['level']}", level) for level in figures["levels"]]
    rows += [(f"section {s['id']}", s) for s in figures["sections"]]
    for name, figure in rows:
        typer.echo(
            f"{name}: compliance {_spec_figure(figure['compliance'], None)}; agreement with the spec's labels "
            f"{_spec_figure(figure['agreement'], figure['note'])}"
        )
    typer.echo(
        f"{summary['judgments']} judgments, {summary['failures']} failed; {summary['calls']} calls "
        f"({summary['cached_calls']} from the cache); written to {summary['written_to']}"
    )
