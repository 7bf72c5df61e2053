"""The `charter` command: a thin typer app over the Python API.

The whole command tree is declared here, top to bottom: every group and every command, in the order `--help` lists
them. Each command's implementation lives with its package (`charter/PACKAGE/cli.py`). This module also turns
`CharterError`s into one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import math
import sys
from typing import Any

import click
import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from charter.providers.options import ApiKeyEnv

try:  # typer 0.2x ships its own copy of click and raises that copy's usage errors
    from typer._click.exceptions import ClickException as TyperClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import ClickException as TyperClickException

from charter._version import __version__
from charter.agreement import cli as agreement_cli
from charter.constitutions import cli as constitutions_cli
from charter.dpo import cli as dpo_cli
from charter.errors import ArgumentError, CharterError, Interrupted
from charter.evals import cli as evals_cli
from charter.hub import cli as hub_cli
from charter.lab import cli as lab_cli
from charter.loop import cli as loop_cli
from charter.mixing import cli as mixing_cli
from charter.online import cli as online_cli
from charter.pipeline import cli as pipeline_cli
from charter.reward_model import cli as reward_model_cli
from charter.serve import cli as serve_cli
from charter.synth import cli as synth_cli


class _Argument(TyperArgument):
    """An argument as click writes it in a usage line: `CONFIG`, `[RUN_DIR]`, `FILES...`."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return [name if self.required else f"[{name}]"]


class _Flag(TyperOption):
    """A flag: it takes no value, so its help shows none (not `<bool>`)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def tidy_help(command: Any) -> None:
    """Every argument named in capitals (`CONFIG`, as the reference pages name it) and every flag without a value
    type, in `command` and every command below it (`--help` included)."""
    context = command.context_class(command)
    params = [*command.params, command.get_help_option(context)]
    for param in params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or param.name.upper()
            param.__class__ = _Argument
        elif isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.__class__ = _Flag
    for sub in (getattr(command, "commands", None) or {}).values():
        tidy_help(sub)


class _CharterGroup(TyperGroup):
    """The `charter` command: its commands' help tidied once (`tidy_help`) when typer builds it."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        tidy_help(self)


app = typer.Typer(
    cls=_CharterGroup,
    name="charter",
    help="Constitutional AI and RLAIF: a YAML constitution in, preference data and models out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"charter {__version__}")
        raise typer.Exit()


LOG_LEVELS = ("debug", "info", "warning", "error")


@app.callback()
def _root(
    version: bool | None = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version."),
    log_level: str = typer.Option(
        "info", "--log-level", metavar="LEVEL", help="charter's log level: debug, info, warning or error."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at debug level (--log-level debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors; no progress display."),
    progress_interval: float = typer.Option(
        30.0,
        "--progress-interval",
        metavar="SECONDS",
        min=0,
        help="Outside a terminal (nohup, Slurm, CI): seconds between progress "
        "lines (0: only at the end of each stage).",
    ),
) -> None:
    """charter: constitutions → critiques → judged preferences → reward models and DPO."""
    from charter.progress import configure_logging

    if log_level.lower() not in LOG_LEVELS:
        raise ArgumentError("log_level", f"{log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    if not math.isfinite(progress_interval):
        raise ArgumentError("progress_interval", f"{progress_interval!r}: expected a finite number of seconds")
    level = "DEBUG" if verbose else "WARNING" if quiet else log_level.upper()
    configure_logging(level, progress_interval, quiet_progress=quiet)


def generate(
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="A user prompt; repeat for a batch."),
    model: str = typer.Option("local:smollm2-135m-instruct", "--model", "-m", help="Model string."),
    api_key_env: ApiKeyEnv = None,
    max_tokens: int = typer.Option(64, help="Most tokens per completion."),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0: greedy)."),
    system: str | None = typer.Option(None, help="Optional system prompt."),
) -> None:
    """Generate a quick completion from a model, to check it works."""
    from charter.providers import SamplingParams, get_model
    from charter.records import Message

    async def go() -> list:
        chat = get_model(model, api_key_env=api_key_env)
        head = [Message(role="system", content=system)] if system else []
        requests = [[*head, Message(role="user", content=p)] for p in prompt]
        try:
            return await chat.generate(requests, SamplingParams(temperature=temperature, max_tokens=max_tokens))
        finally:
            await chat.aclose()

    from charter.progress import spinner

    with spinner(f"generating with {model}"):
        completions = asyncio.run(go())
    for text, completion in zip(prompt, completions):
        typer.secho(f"> {text}", fg="cyan", err=False)
        typer.echo(completion.text.strip())
        typer.secho(
            f"  [{completion.prompt_tokens} prompt + {completion.completion_tokens} completion tokens]", dim=True
        )


# -- The command tree: every group and command, in the order `charter --help` lists them. Each package's `cli.py`
# holds its commands' implementations, importing only typer at its top; the work is imported when a command runs.


def _group(help: str, **options: Any) -> typer.Typer:
    """A group of commands: `charter GROUP` alone shows its help."""
    return typer.Typer(help=help, no_args_is_help=True, **options)


app.command("generate")(generate)
app.command("synth")(synth_cli.synth_command)
app.command("run")(pipeline_cli.run_command)
app.command("status")(pipeline_cli.status_command)
app.command("spotcheck")(agreement_cli.spotcheck_command)
app.command("push")(hub_cli.push)
app.command("iterate")(loop_cli.iterate_command)

constitutions = _group(
    "List, show, validate and import constitutions; infer one from labelled pairs (`infer`) and test which "
    "principles the judge uses (`test`).",
    name="constitutions",
)
app.add_typer(constitutions, name="constitutions")
constitutions.command("list")(constitutions_cli.list_constitutions)
constitutions.command("show")(constitutions_cli.show)
constitutions.command("validate")(constitutions_cli.validate)
constitutions.command("import")(lab_cli.import_command)
constitutions.command("infer")(lab_cli.infer_command)
constitutions.command("test")(lab_cli.test_command)
constitutions.command("learn-rubrics")(lab_cli.learn_rubrics_command)
constitutions.command("rubric")(lab_cli.rubric_command)

config = _group("The run config: its JSON Schema, for editors and validation.")
app.add_typer(config, name="config")
config.command("schema")(pipeline_cli.schema_command)

judge = _group("The judge: audit its position, length, injection and self-preference biases.")
app.add_typer(judge, name="judge")
judge.command("audit")(pipeline_cli.audit_command)

cache = _group(
    "The call cache: what it holds, and which endpoint answered its rows from before endpoints were recorded."
)
app.add_typer(cache, name="cache")
cache.command("info")(pipeline_cli.cache_info_command)
cache.command("claim")(pipeline_cli.cache_claim_command)

batches = _group("A run's provider batches (OpenAI Batch API, Anthropic Message Batches).")
app.add_typer(batches, name="batches")
batches.command("list")(pipeline_cli.batches_list_command)
batches.command("cancel")(pipeline_cli.batches_cancel_command)

label = _group("Label the spot-check sample (web page or --tui); export/import labels.", cls=agreement_cli.LabelGroup)
app.add_typer(label, name="label")
label.command("serve")(agreement_cli.label_serve)
label.command("export")(agreement_cli.label_export)
label.command("import")(agreement_cli.label_import)

agreement = _group(
    "Judge/human agreement of a run (charter agreement RUN_DIR), or of a labeled pair file (eval).",
    cls=agreement_cli.AgreementGroup,
)
app.add_typer(agreement, name="agreement")
agreement.command("report")(agreement_cli.agreement_report_command)
agreement.command("eval")(agreement_cli.agreement_eval_command)

train = _group(
    "Train models: a reward model (`reward`) and a DPO policy (`dpo`) on preference data, or a policy online "
    "with the judge as its reward (`grpo`, `rloo`) or as the decider of its own pairs (`online-dpo`)."
)
app.add_typer(train, name="train")
train.command("reward")(reward_model_cli.reward)
train.command("dpo")(dpo_cli.dpo)
train.command("grpo")(online_cli.grpo)
train.command("rloo")(online_cli.rloo)
train.command("online-dpo")(online_cli.online_dpo)

evaluate = _group("Evaluate trained models.")
app.add_typer(evaluate, name="eval")
evaluate.command("winrate")(evals_cli.winrate)
evaluate.command("arena")(evals_cli.arena)
evaluate.command("rm")(evals_cli.rm)
evaluate.command("spec")(evals_cli.spec)

mix = _group(
    "Mix training sources per target subtask: `plan` chooses sources from their scores and writes a manifest; "
    "`build` makes the training set a manifest describes; `probe` fills the scores with a small training run per "
    "source."
)
app.add_typer(mix, name="mix")
mix.command("plan")(mixing_cli.plan)
mix.command("build")(mixing_cli.build)
mix.command("probe")(mixing_cli.probe)

serve = _group("Serve charter's judge over HTTP.")
app.add_typer(serve, name="serve")
serve.command("reward")(serve_cli.reward)
serve.command("merge")(serve_cli.merge)


INTERRUPTED = 130
#: File-system errors that are the machine's state, not a bug: one line and exit 2 (the traceback with -v).
FILE_SYSTEM_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENOSPC,
    errno.EROFS,
    errno.EDQUOT,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}


def _register_test_doubles() -> None:
    """charter's scripted test doubles, known by name on the command line (`scripted:checklist-judge`)."""
    from charter.testing.judges import register_biased_judges
    from charter.testing.lab import register_lab_models

    register_lab_models()
    register_biased_judges()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors print one line and exit 2."""
    from charter.providers.scripted import add_script_source

    add_script_source(_register_test_doubles)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="charter", standalone_mode=False)
    except ArgumentError as exc:
        typer.secho(f"error: {exc.as_option()}", fg="red", err=True)
        return exc.exit_code
    except Interrupted as exc:  # a clean stop on Ctrl-C or SIGTERM: what is done is kept
        typer.echo(str(exc), err=True)
        return exc.exit_code
    except CharterError as exc:
        for line in getattr(exc, "lines", None) or [str(exc)]:
            typer.secho(f"error: {line}", fg="red", err=True)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRNOS or exc.filename is None:
            raise
        logging.getLogger("charter").debug("the file-system error in full", exc_info=True)
        typer.secho(f"error: {exc.filename}: {exc.strerror or exc}", fg="red", err=True)
        return 2
    except (click.exceptions.Exit, typer.Exit) as exc:
        return exc.exit_code
    except (click.ClickException, TyperClickException) as exc:  # a usage error: usage line, message, 2
        exc.show()
        return exc.exit_code
    except (click.Abort, typer.Abort, KeyboardInterrupt):
        code = INTERRUPTED
    if code == INTERRUPTED:  # typer turns Ctrl-C into Exit(130), which non-standalone mode returns
        typer.echo("interrupted; resume with the same command (everything finished so far is kept)", err=True)
        return INTERRUPTED
    return code if isinstance(code, int) else 0


def console() -> None:
    """The `charter` command: `main`, then exit. What the command made is written and closed by then; the
    objects left (torch's and transformers' modules, a loaded model: ~500,000) are frozen first, so that the
    interpreter's last full collections skip them (~1 s with the embedded model loaded, for nothing)."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
