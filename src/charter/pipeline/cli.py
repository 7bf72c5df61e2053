"""`charter run`, `status`, `config schema`, `judge audit`, `cache info|claim` and `batches list|cancel`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from charter.providers.cache import DEFAULT_CACHE
from charter.providers.options import ApiKeyEnv, CacheOption

if TYPE_CHECKING:
    from charter.pipeline.config import RunConfig


def cache_info_command(
    cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="The call cache file."),
) -> None:
    """Rows, schema version, rows from before endpoints were recorded, and the claims made for them."""
    from charter.providers import CallCache
    from charter.providers.cache import CONFLICT

    calls = CallCache(cache.expanduser())
    try:
        total = len(calls)
        legacy = calls.count_legacy_rows()
        typer.echo(f"{cache}: {total:,} calls ({legacy:,} from before endpoints were recorded)")
        for model, endpoint in sorted(calls.owners().items()):
            owner = "no endpoint (claimed for two)" if endpoint == CONFLICT else endpoint
            typer.echo(f"  {model}: old rows answer for {owner}")
    finally:
        calls.close()


def cache_claim_command(
    model: str = typer.Argument(
        ...,
        help="The model string whose old rows the endpoint made, e.g. openai-compatible:policy@http://gpu-box:8000/v1.",
    ),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="The base URL of an openai: or anthropic: model that was not served by its provider's own API.",
    ),
    cache: Path = typer.Option(DEFAULT_CACHE, "--cache", help="The call cache file."),
) -> None:
    """Say which endpoint answered a model's cache rows from before endpoints were recorded (charter 0.1.0): they then
    answer calls to that endpoint, and to no other. A run made by 0.1.0 claims its own when it resumes."""
    from charter.errors import ArgumentError
    from charter.providers import CallCache, parse_model_string
    from charter.providers.endpoints import OFFICIAL, normalise_url
    from charter.providers.registry import provider

    spec = parse_model_string(model)
    if provider(spec.provider).endpoint is None:
        raise ArgumentError(
            "model", f"{model}: a {spec.provider} model has no endpoint; its old rows answer as they are"
        )
    url = spec.base_url or base_url or OFFICIAL.get(spec.provider)
    if url is None:
        raise ArgumentError("base_url", f"{model}: give the base URL that served it", option="--base-url")
    calls = CallCache(cache.expanduser())
    try:
        warning = calls.claim(f"{spec.provider}:{spec.name}", normalise_url(url), "charter cache claim")
    finally:
        calls.close()
    typer.echo(warning or f"{spec.provider}:{spec.name}: its old rows answer for {normalise_url(url)}")


def batches_list_command(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """The batches a run submitted and their states as last seen."""
    import datetime

    from charter.pipeline.api import run_batches

    batches = run_batches(run_dir)
    if not batches:
        typer.echo("no batches")
    for b in batches:
        when = datetime.datetime.fromtimestamp(b["submitted_at"]).strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{b['batch_id']}  {b['model']}  {b['requests']} requests  submitted {when}  {b['state']}")


def batches_cancel_command(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Cancel a run's batches still running at the provider (a later run submits what they did not finish)."""
    from charter.pipeline.api import cancel_run_batches

    states = cancel_run_batches(run_dir)
    if not states:
        typer.echo("no open batches")
    for batch_id, state in states.items():
        typer.echo(f"{batch_id}: {state}")


def run_command(
    config: Path = typer.Argument(..., help="Run config YAML."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a config key: key.sub=value (repeatable)."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Check config, constitution, prompts and credentials, and forecast the run's calls, tokens and cost; "
        "call nothing.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="With --dry-run: print the forecast as JSON on stdout (nothing else): calls, tokens and cost per role "
        "and model, each low, expected and high.",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Shard the run over Ray: `local` (start a local cluster), `auto` or "
        "ray://HOST:PORT (execution.engine=ray).",
    ),
    shards: int | None = typer.Option(None, "--shards", min=1, help="With --ray: how many shards (default 2)."),
) -> None:
    """Run (or resume) a pipeline from a YAML config."""
    from charter.errors import Interrupted
    from charter.pipeline.api import run_sync
    from charter.pipeline.config import load_run_config
    from charter.progress import console

    extra = ["execution.engine=ray", f"execution.address={ray}"] if ray else []
    extra += [f"execution.shards={shards}"] if shards else []
    if as_json and not dry_run:
        from charter.errors import ArgumentError

        raise ArgumentError("json", "--json goes with --dry-run (it prints the forecast)")
    cfg = load_run_config(config, [*(set_ or []), *extra])
    if dry_run:  # the same checks a run makes before it writes anything, and the forecast
        _dry_run(cfg, config, as_json)
        return
    try:
        result = run_sync(cfg, str(config))
    except (KeyboardInterrupt, Interrupted):
        from charter.pipeline.api import open_batches_note

        note = open_batches_note(cfg.run_dir())
        if note:
            typer.echo(note, err=True)
        raise
    c = result.counts
    console.print(
        f"[bold green]done[/bold green]: {c.get('chains', 0)} chains, {c.get('judged', 0)} judged pairs, "
        f"{c.get('preferences', 0)} preference rows ({c.get('judge_failures', 0)} judge failures)"
    )
    _print_headline(result.run_dir)
    console.print(f"  preferences: {result.preferences}")
    console.print(f"  sft:         {result.sft}")
    for stage in ("reward_model", "dpo"):
        if stage in result.training:
            console.print(f"  {stage + ':':<13}{result.run_dir / stage}")
    if "eval" in result.training:
        win = result.training["eval"]
        if win["win_rate"] is None:
            console.print(f"  win rate:    no judgment succeeded ({win['failures']} failures)")
        else:
            low, high = win["ci95"]
            console.print(
                f"  win rate:    {win['win_rate']:.3f} (95% CI {low:.3f}-{high:.3f}) of {win['candidate']} "
                f"against {win['base']}"
            )
    if result.report:
        console.print(f"  report:      {result.report}")


def _print_headline(run_dir: Path) -> None:
    """What to read first about the data the run wrote (a judge at chance, failures, few rows and why), as
    `charter status` and the report put it first."""
    from rich.text import Text

    from charter.pipeline.status.record import status
    from charter.progress import console

    for sentence in status(run_dir)["headline"]:
        console.print(Text(sentence, style="bold yellow"))


def _dry_run(cfg: RunConfig, config: Path, as_json: bool) -> None:
    """Check what a run checks before it writes anything, then print the forecast (a table, or JSON)."""
    import asyncio

    from charter.judge.panel import panel_label
    from charter.pipeline.api import runner_for
    from charter.pipeline.forecast.estimate import forecast_notes, forecast_table, run_forecast
    from charter.progress import console

    runner = runner_for(cfg, str(config))
    prompts = runner.prepare()
    found = asyncio.run(run_forecast(cfg, runner.constitution, prompts))
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
        if found.budget:
            typer.echo(f"warning: {found.budget}", err=True)
        return
    count = f"{len(prompts.rows)} prompts" if prompts is not None else "the run's stored prompts"
    members = [m.model for m in cfg.judge.members]
    console.print(
        f"[green]ok[/green] {config}: constitution {runner.constitution.name} "
        f"({runner.constitution.short_hash}), {count}, stages {', '.join(cfg.stages)}, "
        f"policy {cfg.policy.model}, critic {cfg.critic_role.model}, "
        + (f"judge {cfg.judge.model}" if cfg.judge.models is None else f"judges {panel_label(members)}")
    )
    console.print(forecast_table(found))
    for note in forecast_notes(found):
        console.print(f"  {note}", highlight=False, markup=False, emoji=False)
    if found.budget:
        console.print(f"[yellow]warning:[/yellow] {found.budget}", highlight=False)


def status_command(
    run_dir: Path = typer.Argument(..., help="A run directory, or a training output folder."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the status as JSON on stdout (nothing else): a run directory or a training output folder "
        "(reward model, DPO, GRPO, RLOO, online DPO); usage holds cost_usd, every token count and the price source per "
        "role and model.",
    ),
) -> None:
    """Stage progress, counts, failures, tokens and cost of a run."""
    from charter.pipeline.status.record import status, trainer_folder
    from charter.pipeline.status.show import print_status, status_json, trainer_summary

    if as_json:
        typer.echo(status_json(status(run_dir)))
        return
    if trainer_folder(run_dir):
        typer.echo(f"{trainer_summary(status(run_dir))} ({run_dir}/metrics.json; --json prints it whole)")
        return
    print_status(run_dir)


def schema_command(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the schema here instead of stdout."),
) -> None:
    """Print the JSON Schema of the run config (point a YAML language server at it for completion and checks)."""
    from charter.pipeline.config import RunConfig

    text = json.dumps(RunConfig.model_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


def audit_command(
    pairs: Path = typer.Option(
        ...,
        "--pairs",
        help="JSONL of human-labeled pairs (prompt, chosen, rejected), or a "
        "run directory (its own high-confidence pairs; its judge unless --judge is given).",
    ),
    judge: str | None = typer.Option(
        None,
        "--judge",
        help="Judge model string, e.g. local:smollm2-135m-instruct (default with a run directory: the run's judge).",
    ),
    api_key_env: ApiKeyEnv = None,
    constitution: str | None = typer.Option(
        None, "--constitution", help="Bundled constitution name or YAML file (default: harmless, or the run's)."
    ),
    mode: str | None = typer.Option(None, "--mode", help="logprobs, cot or verdict (default: logprobs, or the run's)."),
    orders: str | None = typer.Option(None, "--orders", help="both or one (default: both, or the run's)."),
    principles_per_pair: int | None = typer.Option(
        None, "--principles-per-pair", min=1, help="Principles per question (default: 1, or the run's)."
    ),
    n: int = typer.Option(200, "--n", "-n", min=2, help="Pairs to audit (a seeded sample)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample, the shown order and the bootstrap."),
    families: str | None = typer.Option(
        None,
        "--families",
        help="Comma-separated injection families (default: answer_is,forged_options,fake_turn,ignore_instructions).",
    ),
    self_preference: bool = typer.Option(
        False,
        "--self-preference",
        help="Also measure self-preference (the judge writes its own answer to each prompt).",
    ),
    min_confidence: float = typer.Option(
        0.2, "--min-confidence", help="Run pairs only: |P(A) - 0.5| a pair's judgment must reach to count as known."
    ),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Pairs in flight at once."),
    cache: CacheOption = DEFAULT_CACHE,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the audit as JSON here."),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Also write the audit as markdown here."),
) -> None:
    """Audit a judge: position flips, length (padding and trimming), planted injections in the fenced and unfenced
    prompt formats, and optionally self-preference; each rate with a 95% bootstrap CI and its n."""
    from charter.agreement.audit import INJECTIONS, audit_judge, markdown
    from charter.errors import ArgumentError
    from charter.judge.modes import DEFAULT_MODE, pairwise_modes
    from charter.runs.files import RunFiles

    if mode is not None and mode not in pairwise_modes():
        raise ArgumentError("mode", f"{mode!r}: use {', '.join(pairwise_modes())}")
    if orders is not None and orders not in ("both", "one"):
        raise ArgumentError("orders", f"{orders!r}: use both or one")
    chosen = [f.strip() for f in families.split(",") if f.strip()] if families is not None else list(INJECTIONS)
    unknown = [f for f in chosen if f not in INJECTIONS]
    if unknown:
        raise ArgumentError("families", f"{unknown[0]!r}: use some of {', '.join(INJECTIONS)}")
    own_run = (
        RunFiles.is_run_dir(pairs)
        and judge is None
        and constitution is None
        and mode is None
        and orders is None
        and principles_per_pair is None
    )
    if own_run:
        report = _audit_own_run(pairs, n, seed, chosen, self_preference, min_confidence, concurrency, cache or None)
    else:
        if judge is None:
            raise ArgumentError("judge", "give the judge model to audit (--judge MODEL)")
        report = audit_judge(
            pairs,
            judge,
            constitution=constitution or "harmless",
            mode=mode or DEFAULT_MODE,
            orders=orders or "both",
            principles_per_pair=principles_per_pair or 1,
            n=n,
            seed=seed,
            families=chosen,
            self_preference=self_preference,
            min_confidence=min_confidence,
            concurrency=concurrency,
            cache=cache or None,
            progress=True,
            api_key_env=api_key_env,
        )
    _print_audit(report)
    if json_out:
        json_out.write_text(report.model_dump_json(indent=1) + "\n", encoding="utf-8")
    if markdown_out:
        markdown_out.write_text("# Judge audit\n\n" + markdown(report), encoding="utf-8")


def _audit_own_run(
    run_dir: Path,
    n: int,
    seed: int,
    families: list[str],
    self_preference: bool,
    min_confidence: float,
    concurrency: int,
    cache: str | None,
):
    """Audit a run's own judge on its own pairs, store the audit in the run and rewrite its report."""
    import asyncio

    from charter.judge.settings import AuditConfig
    from charter.pipeline.optional_stages import audit_run_judge, run_judge
    from charter.pipeline.report.write import write_report
    from charter.progress import console, progress_bar
    from charter.providers import CallCache, UsageMeter, get_model
    from charter.providers.usage import Budget, Price
    from charter.runs.files import AUDIT_MD, RunFiles, RunLock
    from charter.runs.store import open_store
    from charter.runs.usage import UsageLedger

    with RunLock(run_dir), open_store(run_dir) as store:  # it pays for calls into the run: not beside a running run
        judge, constitution, run_seed = run_judge(store)
        if judge.models is not None:
            from charter.errors import ArgumentError

            members = ", ".join(m.model for m in judge.models)
            raise ArgumentError(
                "judge",
                f"{run_dir}'s judge is a panel ({members}): audit one member on the run's pairs with "
                f"charter judge audit --pairs {run_dir} --judge MODEL",
            )
        judge = judge.model_copy(
            update={
                "audit": AuditConfig.model_validate(
                    {
                        "n": n,
                        "seed": seed,
                        "min_confidence": min_confidence,
                        "families": families,
                        "self_preference": self_preference,
                    }
                )
            }
        )
        ledger = UsageLedger(store)  # the audit's calls are the run's usage, as when the run audits itself
        prices = {k: Price.model_validate(v) for k, v in (store.run_config().get("prices") or {}).items()}
        calls = CallCache(Path(cache).expanduser()) if cache else None
        if calls is not None:
            calls.before_commit.append(ledger.flush)
        model = get_model(
            judge.backend(), cache=calls, meter=UsageMeter(prices, Budget(), sink=ledger.record), role="audit"
        )

        async def go():
            try:
                with progress_bar() as bar:
                    task = bar.add_task(f"auditing {judge.model}", total=None)

                    def start(total: int) -> None:
                        bar.update(task, total=total)

                    return await audit_run_judge(
                        store,
                        model,
                        judge,
                        constitution,
                        run_seed,
                        concurrency,
                        on_pair=lambda: bar.advance(task),
                        start=start,
                    )
            finally:
                await model.aclose()
                ledger.flush()

        report, note = asyncio.run(go())
    console.print(f"judge audit of {run_dir}: {note}")
    if report is None:
        from charter.errors import DatasetError

        raise DatasetError(
            f"{run_dir}: no judged pair qualifies (|P(A) - 0.5| >= {min_confidence}, consistent in "
            "both orders); lower --min-confidence or audit on a human-labeled pair file"
        )
    md, _ = write_report(run_dir)
    console.print(f"stored in the run: {RunFiles(run_dir).report_dir / AUDIT_MD}; report: {md}")
    return report


def _print_audit(report) -> None:
    from rich.table import Table

    from charter.agreement.audit import rows
    from charter.progress import console

    table = Table(
        title=f"judge audit: {report.judge_model} ({report.mode}, orders {report.orders}) on {report.pairs} pairs"
    )
    for col in ("measure", "value", "95% CI", "n", "what it means"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for row in rows(report):
        table.add_row(*row)
    console.print(table)
    per_pair = f"{report.calls_per_pair:.1f}" if report.calls_per_pair is not None else "n/a"
    console.print(
        f"{report.source}; {report.failed_pairs} pair(s) with a failed call; {report.calls} calls "
        f"({per_pair} per pair); wall {report.wall_s} s"
    )
