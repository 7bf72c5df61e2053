"""`WinRateCallback`: the win rate of the policy being trained, judged against the constitution, in any TRL trainer.

Every `every` steps the policy answers a fixed prompt set greedily; charter's pairwise judge compares each answer with
a reference answer (a given one, a `reference_model`'s, or the policy's own answer before training, made once and kept)
in both orders; the win rate with its Wilson 95% interval, and the length-controlled one, go into the trainer's logs
(`state.log_history`, and TensorBoard / W&B through the trainer's `on_log` callbacks when the trainer is given). A
failed judgment is counted as a failure, never as a tie. Judge calls go through the call cache, limits, usage meter
and budget. Each evaluation's comparisons go to OUTPUT_DIR/winrate_eval/step-N.pairs.jsonl for people to label; with
`human_labels` (those rows with `preferred` added), the human-corrected (prediction-powered) win rate is logged beside
the judge's (`charter.evals.callback`). Under torchrun only the main process answers and judges (the other
ranks wait at their next synchronisation; with sharded weights, FSDP or ZeRO-3, the main process alone cannot
generate: use DDP).

People's verdicts on the comparisons `WinRateCallback` judged, and the human-corrected (PPI) win rate from them.

At each evaluation the callback writes every comparison it judged to OUTPUT_DIR/winrate_eval/step-N.pairs.jsonl
(`pair_id`, `step`, `prompt`, `policy`, `reference`, `p_policy`). A person adds `preferred` (policy, reference or tie)
to the rows they read; the file of labelled rows, passed back as `human_labels`, corrects the judge's win rate at
every later evaluation whose comparison is the same: the same prompt (its last message) and the same policy answer
text, and the same reference answer where the row has one. A row with a `step` applies at that step only; without
one, at any step. Free of transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from charter.api_args import Range, public
from charter.concurrency import run_sync
from charter.constitutions import Constitution, load_constitution
from charter.errors import ArgumentError, ConfigError, DatasetError, MissingExtra
from charter.evals.during import WinRateEval, human_columns, human_fields
from charter.evals.winrate import (
    HumanWinrate,
    answer_pairs,
    comparison_key,
    human_estimates,
    labelled_rows,
    load_prompts,
    tally,
    write_pairs,
)
from charter.judge.modes import pairwise_modes
from charter.judge.pairwise import judge_many, judgments_by_pair
from charter.judge.settings import JudgeSettings
from charter.providers import get_model
from charter.providers.base import SamplingParams
from charter.providers.cache import DEFAULT_CACHE, CallCache
from charter.providers.config import RoleConfig, blind_cap, role_argument
from charter.providers.usage import Budget, Price, UsageMeter
from charter.records import Judgment, Message, Pair
from charter.stats.bradley_terry import length_controlled
from charter.training import data
from charter.training.config import WinRateEvalConfig
from charter.training.models import greedy_answers, trainer_tokenizer
from charter.yamlio import from_arguments

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - the train extra is missing
    raise MissingExtra("transformers", "train") from None

#: Where the call cache lives unless told otherwise (the runs' default).


def _prompt_list(prompts: str | Path | Sequence[Any]) -> list[list[dict[str, str]]]:
    if isinstance(prompts, (str, Path)):
        return load_prompts(str(prompts), None, 0)
    out = [data.message_dicts(p, "user", f"prompts[{i}]") for i, p in enumerate(prompts)]
    if not out:
        raise ConfigError("prompts: expected at least one prompt")
    return out


def _column(source: str | Path, column: str, n: int) -> list[str]:
    rows = data.read_rows(str(source))
    values = [r.get(column) for r in rows]
    if len(values) != n or not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"{source}: reference_column {column!r}: every prompt row needs a non-empty string")
    return [str(v) for v in values]


class WinRateCallback(TrainerCallback):
    """Logs the policy's win rate against reference answers every `every` steps. Build it with its arguments;
    `trainer.add_callback(cb)` after setting `cb.trainer = trainer` (or pass `trainer=`) to reach W&B/TensorBoard."""

    @public
    def __init__(
        self,
        prompts: str | Path | Sequence[Any],
        judge: str | RoleConfig = "local:smollm2-135m-instruct",
        constitution: str | Constitution = "harmless",
        *,
        every: Annotated[int, Range(ge=1)] = 50,
        max_new_tokens: Annotated[int, Range(ge=1)] = 128,
        references: Sequence[str] | None = None,
        reference_column: str | None = None,
        reference_model: str | RoleConfig | None = None,
        trainer: Any = None,
        cache: str | Path | None = DEFAULT_CACHE,
        budget: Budget | None = None,
        prices: Mapping[str, Price] | None = None,
        tie_band: Annotated[float, Range(ge=0, lt=0.5)] = 0.0,
        seed: int = 0,
        concurrency: Annotated[int, Range(ge=1)] = 16,
        prefix: str = "win_rate",
        human_labels: str | Path | None = None,
        **judge_settings: Any,
    ) -> None:
        """A callback that judges the policy's answers against reference answers every `every` steps.

        Args:
            prompts: The fixed prompt set: a JSONL/parquet file (`prompt` or `messages` column) or a list of prompt
                strings or `{role, content}` message lists.
            judge: The judge: a model string or a role config (key variable, limits, options).
            constitution: A bundled constitution's name, a YAML path or a `Constitution`.
            every: Judge every this many optimizer steps (and never at step 0).
            max_new_tokens: Tokens the policy may write per answer (greedy decoding).
            references: One reference answer per prompt.
            reference_column: The prompts file's column with the reference answers.
            reference_model: A charter model string that answers the prompts once (greedy, through the call cache).
                Without references, a column or a model, the policy's own answers before training are the reference.
            trainer: The trainer, so that the win rate reaches its loggers (TensorBoard, W&B) as well as
                `state.log_history`.
            cache: The call cache file shared with runs; None for no cache.
            budget: Caps on cost or tokens; reaching one raises `BudgetExceeded` and stops training.
            prices: USD per million tokens by model id, for the cost and the budget.
            tie_band: A judgment with P(policy better) within this distance of 0.5 is a tie.
            seed: Seed of the principle draws and of the length-controlled bootstrap.
            concurrency: Judge calls in flight at once.
            prefix: The prefix of the logged keys (`win_rate`, `win_rate_low`, `win_rate_high`, ...).
            human_labels: A JSONL/parquet file of people's verdicts on comparisons the callback judged: rows of its
                OUTPUT_DIR/winrate_eval/step-N.pairs.jsonl files with `preferred` (policy, reference or tie) added
                (`prompt` and `policy` needed; `reference` and `step` optional, a row without `step` applies at every
                step). Where at least 10 match the comparisons of an evaluation (same prompt and policy answer), the
                prediction-powered win rate (`..._ppi`, `..._ppi_low`, `..._ppi_high`) and the people-only one
                (`..._human`) are logged beside the judge's, with `..._human_n` the labels matched.
            **judge_settings: `JudgeSettings` fields (mode, principles_per_pair, principles, max_reasks, ...);
                `orders` is always both.

        Raises:
            ArgumentError: The judge or the reference model cannot be meant (an unknown provider or script, a
                mistyped local name), or `mode` is not a comparing mode (logprobs, cot, verdict): found here, before
                training starts.
            MissingAPIKey: The variable holding a remote judge's (or reference model's) key is unset.
            ConfigError: No prompts; references of another length than the prompts, or more than one of references,
                reference_column and reference_model; a reference column missing a value; a cost cap
                (`budget.max_cost_usd`) with a model that `prices` does not price (declare a free one
                `Price(input=0, output=0)`).
            DatasetError: The prompts file cannot be read or has no prompt column; the human labels file cannot be
                read or has a malformed row (named with its key).
            ConstitutionError: The constitution cannot be loaded.
        """
        self.prompts = _prompt_list(prompts)
        given = [x for x in (references, reference_column, reference_model) if x is not None]
        if len(given) > 1:
            raise ConfigError("references, reference_column and reference_model: give at most one")
        if reference_column is not None:
            if not isinstance(prompts, (str, Path)):
                raise ConfigError("reference_column: needs prompts given as a file")
            references = _column(prompts, reference_column, len(self.prompts))
        if references is not None and len(references) != len(self.prompts):
            raise ConfigError(f"references: {len(references)} answers for {len(self.prompts)} prompts")
        self.references: list[str] | None = [str(r) for r in references] if references is not None else None
        judge_settings["orders"] = "both"
        self.settings = from_arguments(JudgeSettings, **judge_settings)
        if self.settings.mode not in pairwise_modes():
            raise ArgumentError(
                "mode", f"{self.settings.mode!r}: the win rate compares two answers, in {', '.join(pairwise_modes())}"
            )
        self.constitution = load_constitution(constitution)
        self.judge_role = role_argument(judge, "judge")
        self.reference_role = None if reference_model is None else role_argument(reference_model, "reference_model")
        roles = [("judge", self.judge_role)] + (
            [("reference_model", self.reference_role)] if self.reference_role else []
        )
        blind = blind_cap(budget, dict(prices or {}), roles)
        if blind is not None:
            raise ConfigError(blind)
        self.cache = CallCache(Path(cache).expanduser()) if cache is not None else None
        self.meter = UsageMeter(dict(prices or {}), budget)
        self.every, self.max_new_tokens, self.tie_band = every, max_new_tokens, tie_band
        self.seed, self.concurrency, self.prefix = seed, concurrency, prefix
        self.trainer = trainer
        self.labels: CallbackLabels | None = read_callback_labels(human_labels) if human_labels is not None else None
        self.history: list[dict[str, Any]] = []
        """Every evaluation's full result (step, tally, length-controlled), in order."""

    # -- TRL / transformers hooks ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.references is not None:
            return
        if self.reference_role is not None:
            self.references = run_sync(self._model_answers())
        else:  # the policy before training: the reference, made once
            self.references = self.answers(kwargs["model"], _tokenizer(kwargs))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every != 0 or not state.is_world_process_zero:
            return
        logs = self.evaluate(kwargs["model"], _tokenizer(kwargs), state.global_step, args.output_dir)
        note = (self.history[-1].get("human_labels") or {}).get("note")
        state.log_history.append(
            {**logs, **({f"{self.prefix}_labels_note": note} if note else {}), "step": state.global_step}
        )
        if self.trainer is not None:  # TensorBoard, W&B, ...: the reporters are on_log callbacks
            should_log = control.should_log  # the handler clears it: the trainer's own log of this step is kept
            self.trainer.callback_handler.on_log(args, state, control, logs)
            control.should_log = should_log

    # -- the evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, model: Any, tokenizer: Any, step: int, output_dir: str | Path | None = None) -> dict[str, float]:
        """The policy's answers judged against the references; the numbers to log (None values left out). With
        `output_dir`, the comparisons go to OUTPUT_DIR/winrate_eval/step-N.pairs.jsonl for people to label."""
        if self.references is None:
            raise ConfigError("WinRateCallback: no reference answers (on_train_begin did not run on this process)")
        answers = self.answers(model, tokenizer)
        pairs = answer_pairs(self.prompts, answers, self.references, ("policy", "reference"))
        records = run_sync(self._judge(pairs))
        ordered = [records.get(p.pair_id) for p in pairs]
        counts = tally(ordered, self.tie_band)
        ok = [(p, r.p_a) for p, r in zip(pairs, ordered) if r is not None and r.status == "ok" and r.p_a is not None]
        lc = length_controlled([x for _, x in ok], [p.a for p, _ in ok], [p.b for p, _ in ok], seed=self.seed)
        entry: dict[str, Any] = {"step": step, **counts, "length_controlled": lc}
        if output_dir is not None:
            entry["pairs_file"] = str(write_pairs(pairs_file(output_dir, step), pairs, ordered, SIDES, step=step))
        if self.labels is not None:
            entry["human_labels"] = self.labels.estimates(step, ok)
        self.history.append(entry)
        ci, lci = counts["ci95"] or [None, None], lc["ci95"] or [None, None]
        values = {
            "": counts["win_rate"],
            "_low": ci[0],
            "_high": ci[1],
            "_n": counts["n"],
            "_failures": counts["failures"],
            "_lc": lc["win_rate"],
            "_lc_low": lci[0],
            "_lc_high": lci[1],
            **human_columns(entry.get("human_labels")),
        }
        return {f"{self.prefix}{k}": float(v) for k, v in values.items() if v is not None}

    def answers(self, model: Any, tokenizer: Any) -> list[str]:
        """The policy's greedy answers to the prompts."""
        return greedy_answers(model, tokenizer, self.prompts, self.max_new_tokens)

    async def _model_answers(self) -> list[str]:
        assert self.reference_role is not None
        model = get_model(self.reference_role.backend(), cache=self.cache, meter=self.meter, role="reference")
        try:
            params = SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens, seed=self.seed)
            prompts = [[Message.model_validate(m) for m in p] for p in self.prompts]
            return [c.text.strip() for c in await model.generate(prompts, params)]
        finally:
            await model.aclose()

    async def _judge(self, pairs: list[Pair]) -> dict[str, Judgment]:
        model = get_model(self.judge_role.backend(), cache=self.cache, meter=self.meter, role="judge")
        judged = judge_many(model, self.constitution, pairs, self.settings, self.seed, self.concurrency)
        return await judgments_by_pair(judged, close=model)


def evaluations(callback: WinRateCallback | None) -> list[WinRateEval]:
    """The callback's evaluations, in order ([] without a callback)."""
    if callback is None:
        return []
    rows = []
    for entry in callback.history:
        low, high = entry.get("ci95") or (None, None)
        rows.append(
            WinRateEval(
                step=int(entry["step"]),
                win_rate=entry.get("win_rate"),
                low=low,
                high=high,
                n=int(entry.get("n") or 0),
                failures=int(entry.get("failures") or 0),
                lc=(entry.get("length_controlled") or {}).get("win_rate"),
                **human_fields(entry.get("human_labels")),
            )
        )
    return rows


def callback_for(
    section: WinRateEvalConfig | None,
    *,
    judge: RoleConfig | None,
    constitution: str,
    cache: str | None,
    prices: Mapping[str, Price] | None = None,
    seed: int = 0,
) -> WinRateCallback | None:
    """The callback a trainer's `winrate_eval` section asks for (None without one): the training's judge and
    constitution unless the section names its own, the training's call cache and prices."""
    if section is None:
        return None
    prompts = _prompt_list(section.prompts)
    references = None
    if section.reference_column is not None:
        references = _column(str(section.prompts), section.reference_column, len(prompts))
    if section.limit is not None:
        prompts = prompts[: section.limit]
        references = references[: section.limit] if references is not None else None
    role = section.judge or (RoleConfig(**{k: getattr(judge, k) for k in RoleConfig.model_fields}) if judge else None)
    reference = section.reference if isinstance(section.reference, RoleConfig) else None
    try:
        return WinRateCallback(
            prompts,
            role or "local:smollm2-135m-instruct",
            section.constitution or constitution,
            every=section.every,
            max_new_tokens=section.max_new_tokens,
            references=references,
            reference_model=reference,
            cache=cache,
            prices=prices,
            tie_band=section.tie_band,
            seed=seed,
            human_labels=section.human_labels,
            mode=section.mode,
        )
    except ArgumentError as exc:  # the section's judge or reference model, named as the section names it
        key = {"reference_model": "reference"}.get(exc.argument, exc.argument)
        raise ConfigError(f"winrate_eval.{key}: {exc.detail}") from None


def _tokenizer(kwargs: dict[str, Any]) -> Any:
    return trainer_tokenizer(kwargs, "WinRateCallback")


#: A person's verdict as the policy's share of the win.
PREFERRED = {"policy": 1.0, "reference": 0.0, "tie": 0.5}
#: The names of the compared answers in the pairs files and the labels.
SIDES = ("policy", "reference")
#: The folder under the trainer's output_dir with the comparisons of each evaluation.
PAIRS_DIR = "winrate_eval"


def pairs_file(output_dir: str | Path, step: int) -> Path:
    """Where the comparisons judged at `step` go, for people to label."""
    return Path(output_dir) / PAIRS_DIR / f"step-{step}.pairs.jsonl"


@dataclass(frozen=True)
class CallbackLabels:
    """People's verdicts from a labels file: (step or None, comparison key, the policy's share of the win)."""

    path: Path
    rows: list[tuple[int | None, str, float]]

    def at(self, step: int) -> dict[str, float]:
        """The verdicts that apply at `step` by comparison key (a row for this step over a row for any step)."""
        return {k: v for s, k, v in sorted(self.rows, key=lambda r: r[0] is not None) if s is None or s == step}

    def estimates(self, step: int, judged: list[tuple[Pair, float]]) -> HumanWinrate:
        """The prediction-powered and people-only win rates at `step`: the judge's P(policy better) on every
        comparison judged, corrected by the labelled ones."""
        labels = self.at(step)
        matched = []
        for pair, p_policy in judged:
            prompt = pair.prompt[-1].content
            share = labels.get(comparison_key(prompt, pair.a, pair.b), labels.get(comparison_key(prompt, pair.a)))
            if share is not None:
                matched.append((p_policy, share))
        return human_estimates([p for _, p in judged], matched, len(labels), self.path)


def read_callback_labels(path: str | Path) -> CallbackLabels:
    """People's verdicts on the callback's comparisons, from a JSONL/parquet file of rows of its pairs files with
    `preferred` (policy, reference or tie) added; `prompt` and `policy` are needed, `reference` and `step` optional.

    Raises:
        DatasetError: The file cannot be read or is empty, or a row lacks prompt or policy, has another
            `preferred`, a `reference` that is not a string, or a `step` that is not a positive whole number.
    """
    path = Path(path)
    rows: list[tuple[int | None, str, float]] = []
    for i, row, share in labelled_rows(path, ("prompt", "policy"), PREFERRED, f"{PAIRS_DIR}/step-N.pairs.jsonl"):
        rows.append((_step(row, path, i), _key(row, path, i), share))
    return CallbackLabels(path, rows)


def _step(row: dict[str, Any], path: Path, i: int) -> int | None:
    step = row.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise DatasetError(f"{path}: row {i}: step: must be a positive whole number or absent, got {step!r}")
    return step


def _key(row: dict[str, Any], path: Path, i: int) -> str:
    reference = row.get("reference")
    if reference is None:
        return comparison_key(row["prompt"], row["policy"])
    if not isinstance(reference, str):
        raise DatasetError(f"{path}: row {i}: reference: must be a string or absent, got {reference!r}")
    return comparison_key(row["prompt"], row["policy"], reference)
