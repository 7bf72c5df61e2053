"""`charter eval winrate ...`."""

from __future__ import annotations

from pathlib import Path

import typer

eval_app = typer.Typer(help="Evaluate trained models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    eval_app.command("winrate")(winrate)
    eval_app.command("arena")(arena)
    if not any(info.name == "eval" for info in app.registered_groups):
        app.add_typer(eval_app, name="eval")


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
    judge_mode: str = typer.Option("logprobs", help="logprobs, cot or verdict."),
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
    from charter.dpo.config import WinrateConfig
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


def arena(
    models: list[str] = typer.Argument(
        ..., metavar="MODELS...", help="Model strings, or answer files (JSONL/JSON/parquet with prompt and answer)."
    ),
    names_models: bool = typer.Option(
        False, "--models", help="Optional: names what follows as the models (`--models M1 M2 ... --prompts FILE`)."
    ),
    prompts: str = typer.Option(..., help="Prompts: JSONL/parquet with a prompt or messages column."),
    judge: str = typer.Option("local:smollm2-135m-instruct", help="Judge model string."),
    judge_mode: str = typer.Option("logprobs", help="logprobs, cot or verdict (both orders are always asked)."),
    judge_api_key_env: str | None = typer.Option(None, metavar="NAME", help="The variable holding the judge's key."),
    reference: str | None = typer.Option(None, help="The model scored 0 (default: the first)."),
    constitution: str = typer.Option("harmless", help="Constitution name or YAML path."),
    prompts_per_pair: int | None = typer.Option(
        None,
        "--prompts-per-pair",
        min=1,
        help="Prompts each pair of models is compared on (default: sparse, 2P/(N-1)).",
    ),
    all_pairs: bool = typer.Option(False, "--all-pairs", help="Compare every pair of models on every prompt."),
    limit: int | None = typer.Option(100, min=1, help="Most prompts to use."),
    max_calls: int | None = typer.Option(None, "--max-calls", min=1, help="Refuse a plan of more judge calls."),
    bootstrap_samples: int = typer.Option(500, "--bootstrap-samples", min=50, help="Resamples for the intervals."),
    max_tokens: int = typer.Option(256, help="Most tokens per answer."),
    cache: str = typer.Option("~/.cache/charter/calls.sqlite", "--cache", help="Call cache ('' for none)."),
    out: Path = typer.Option(Path("arena"), "--out", help="Where arena.json, arena.md and arena.svg go."),
    seed: int = typer.Option(0, help="Seed of the prompt sample, principle draws and bootstrap."),
) -> None:
    """Rank models on one prompt set: both-order judgments, Bradley-Terry scores with 95% intervals and rank ranges."""
    from charter.evals.arena import ArenaConfig
    from charter.evals.arena import arena as run_arena
    from charter.progress import spinner
    from charter.yamlio import model_from_data

    del names_models  # a marker only: MODELS are the positional arguments either way
    fields: dict = {
        "models": models,
        "prompts": prompts,
        "judge": {
            "model": judge,
            "mode": judge_mode,
            **({"api_key_env": judge_api_key_env} if judge_api_key_env else {}),
        },
        "reference": reference,
        "constitution": constitution,
        "limit": limit,
        "max_calls": max_calls,
        "bootstrap_samples": bootstrap_samples,
        "max_tokens": max_tokens,
        "cache": cache or None,
        "out": out,
        "seed": seed,
    }
    if all_pairs or prompts_per_pair is not None:
        fields["prompts_per_pair"] = None if all_pairs else prompts_per_pair
    cfg = model_from_data(ArenaConfig, fields, "charter eval arena")
    with spinner("answering and judging"):
        result = run_arena(cfg)
    for m in result["models"]:
        typer.echo(
            f"{m['rank']:>2}  {m['model']:<32} {m['score']:+.3f} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]  "
            f"rank {m['rank_low']}-{m['rank_high']}"
        )
    design = result["design"]
    typer.echo(
        f"{design['kind']} design: {design['judged']} comparisons judged, {design['failed']} failed; "
        f"{result['judge_calls']} judge calls ({result['cached_calls']} cached); ranking "
        + ("decided" if result["decided"] else "not decided (rank ranges overlap)")
    )
    typer.echo(f"written to {result['written_to']}")
