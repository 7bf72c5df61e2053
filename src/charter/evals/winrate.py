"""Win rate of a candidate policy against a base policy: both answer held-out prompts, the judge compares
the answers in both orders against the constitution, and a reward model can score them too.

A checklist judge for the evaluations (`eval winrate`, `eval arena` with `scoring: checklist`): each answer
checked once against its prompt's checklist (one call an answer, verifier items by code), and each comparison the
preference of the two answers' scores (`charter.checklist.preference`).

A prompt's checklist is the prompts file's `checklist` column (a list of items or its JSON text; a bad one is one
`DatasetError` naming the file, the row and the key), else the constitution's criteria. A comparison where either
answer has no score (every item failed, none applies) is a failed judgment, left out and counted, never a tie.

The `eval:` config section (also a whole file for `charter eval winrate`): the win rate of a trained policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import orjson
from pydantic import Field

from charter import tables
from charter.api_args import ConfigArg, public
from charter.checklist.aggregate import preference
from charter.checklist.check import Aggregation, CheckedResponse, check_response
from charter.checklist.items import Checklist, checklist_from_criteria, checklist_from_rows
from charter.concurrency import run_sync
from charter.constitutions import Constitution
from charter.errors import ConfigError, DatasetError
from charter.judge.judgment import DEFAULT_COMBINATION
from charter.judge.modes import CHECKLIST_MODE, DEFAULT_MODE, STEPWISE_MODE, Mode, context_modes, mode
from charter.judge.pairwise import combination_lines, combination_summary
from charter.judge.settings import AnswerMode, CombinationName
from charter.prompts import prompt_id
from charter.providers import ManagedModel
from charter.records import (
    Combined,
    Failure,
    Judgment,
    Message,
    Pair,
    StepFinding,
    Vote,
    as_records,
    fingerprint,
)
from charter.records.trajectory import trl_message
from charter.runs.files import WINRATE_JSON, RunFiles
from charter.runs.rewards import PAIR_SCORING
from charter.stats.bradley_terry import LengthControlled, length_controlled
from charter.stats.intervals import wilson_interval
from charter.training import data
from charter.training.output import write_json
from charter.yamlio import ConfigModel, TableName, config_with_fields


def _scorings() -> list[str]:
    """The evaluations' `scoring` values: `PAIR_SCORING` judges in `judge_mode`; every other value names a judge mode
    that judges each answer by its prompt's checklist (`charter.judge.modes.context_modes`)."""
    return [PAIR_SCORING, *context_modes()]


def judges_steps(scoring: str, judge_mode: str) -> bool:
    """Whether an evaluation judges each answer as the next step of its prompt's conversation (judge mode
    `stepwise`): once, not in both orders, and each side's first violating step is recorded."""
    return scoring_mode(scoring, judge_mode).kind.subject == "step"


def step_finding(judgment: Judgment | None, side: Literal["a", "b"]) -> StepFinding | None:
    """A successful judgment's first violating step of one side's trajectory (judge mode `stepwise`)."""
    if judgment is None or judgment.status != "ok":
        return None
    return judgment.first_violation_a if side == "a" else judgment.first_violation_b


def first_violations(
    sides: Mapping[str, Sequence[Judgment | None]], which: Mapping[str, Sequence[str]]
) -> list[FirstViolations]:
    """Per side: of its successful judgments (`sides[name]`, with `which[name]` saying whether the side was `a` or
    `b` in each), how many found a first violating step in its trajectory, with a Wilson 95% interval; a failed
    judgment is left out, never counted as a pass."""
    out: list[FirstViolations] = []
    for name, judgments in sides.items():
        ok = [(r, w) for r, w in zip(judgments, which[name]) if r is not None and r.status == "ok"]
        found = [f for r, w in ok if (f := step_finding(r, "a" if w == "a" else "b")) is not None]
        principles: dict[str, int] = {}
        for f in found:
            principles[f.principle_id] = principles.get(f.principle_id, 0) + 1
        out.append(
            FirstViolations(
                side=name,
                judged=len(ok),
                violating=len(found),
                rate=len(found) / len(ok) if ok else None,
                ci95=list(wilson_interval(len(found), len(ok))) if ok else None,
                principles=dict(sorted(principles.items())),
            )
        )
    return out


def first_violation_lines(rows: Sequence[FirstViolations]) -> list[str]:
    """The markdown lines of `first_violations`."""
    lines = [
        "Judged step by step: the share of each side's trajectories (the prompt's turns, then its answer) with a "
        "step that violates a principle, among its successful judgments.",
        "",
        "| side | judged | violating | rate | 95% CI (Wilson) | principles |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ci = row["ci95"] or [None, None]
        named = ", ".join(f"{pid} ({n})" for pid, n in row["principles"].items()) or "–"
        lines.append(
            f"| {row['side']} | {row['judged']} | {row['violating']} | {_fmt(row['rate'])} | "
            f"{_fmt(ci[0])}–{_fmt(ci[1])} | {named} |"
        )
    return [*lines, ""]


def scoring_mode(scoring: str, judge_mode: str) -> Mode:
    """The table's entry of the mode an evaluation judges in: `judge_mode` for scoring `pair`, else the mode that
    `scoring` names."""
    return mode(judge_mode if scoring == PAIR_SCORING else scoring)


# The checklist scoring's fields, shared by the win rate and the arena (the description is each field's schema text).
EvalScoring = Annotated[
    str,
    TableName(_scorings),
    Field(
        description="`pair`: the judge compares the two answers (`judge_mode`, both orders); `checklist`: each answer "
        "is checked against its prompt's checklist (the prompts file's `checklist_column`, else the constitution's "
        "criteria) in one call, and P(a better) is 0.5 plus half the difference of their scores (a comparison where "
        "either answer has no score is a failed judgment, left out and counted).",
    ),
]
ChecklistColumn = Annotated[
    str,
    Field(
        description="`checklist` scoring: the prompts file's column with each prompt's checklist (a list of items or "
        "its JSON)."
    ),
]
ChecklistAggregation = Annotated[
    Aggregation,
    Field(
        description="`checklist` scoring: the items' weights and gates, or the judge's overall score given the "
        "checklist."
    ),
]


class WinrateConfig(ConfigModel):
    """Compare a candidate policy with a base policy on held-out prompts, judged against a constitution."""

    base: str = "local:smollm2-135m-instruct"
    """The model before training (a model string for charter.providers.get_model)."""
    candidate: str | None = None
    """The trained model, e.g. `local:runs/x/dpo`; default `local:RUN_DIR/dpo` when run_dir is set."""
    prompts: str | None = None
    """Held-out prompts: a JSONL/parquet file (a `prompt` string or `messages` list per row), or a run
    directory's preference file (its prompts). Required, except in a run config, where it defaults to
    charter's bundled prompt set."""
    judge: str = "local:smollm2-135m-instruct"
    """The judge model string."""
    base_api_key_env: str | None = None
    """The environment variable holding the base model's key (a host other than api.openai.com/api.anthropic.com)."""
    candidate_api_key_env: str | None = None
    """The environment variable holding the candidate model's key (likewise)."""
    judge_api_key_env: str | None = None
    """The environment variable holding the judge's key (likewise)."""
    constitution: str = "harmless"
    """Constitution name or YAML path the judge compares against."""
    reward_model: Path | None = None
    """A reward model folder; its mean score of both models' answers is reported too."""
    limit: int | None = Field(default=50, gt=0)
    """Use at most this many prompts (None: all)."""
    max_tokens: int = Field(default=128, gt=0)
    """Most tokens per answer."""
    temperature: float = Field(default=0.0, ge=0)
    """Sampling temperature for both models' answers (0: greedy)."""
    judge_mode: AnswerMode = DEFAULT_MODE
    """How the judge answers: a pairwise mode of the table of modes (logprobs, cot or verdict), asked in both
    orders; or `stepwise`, each answer judged once as the next step of its prompt's conversation, recording each
    side's first violating step."""
    principles_per_pair: int = Field(default=1, gt=0)
    """Principles sampled per comparison."""
    combine: CombinationName = DEFAULT_COMBINATION
    """How a comparison's per-principle votes become one (`JudgeSettings.combine`): `weighted`, their mean, or
    `priority`, the constitution's priority order (with `principles_per_pair` covering its levels)."""
    scoring: EvalScoring = PAIR_SCORING
    checklist_column: ChecklistColumn = "checklist"
    aggregation: ChecklistAggregation = "explicit"
    seed: int = 0
    """Seed for prompt sampling and principle choice."""
    tie_band: float = Field(default=0.0, ge=0, lt=0.5)
    """|p - 0.5| at or below this counts as a tie (half a win)."""
    run_dir: Path | None = None
    """A run directory: the summary goes to RUN_DIR/report/winrate.json (+ .md) for the run report."""
    out: Path | None = None
    """Where to write the JSON summary (a .md beside it); overrides run_dir's report path."""
    concurrency: int = Field(default=16, gt=0)
    """Judge calls in flight at once."""
    human_labels: Path | None = None
    """People's verdicts on some of the comparisons: a JSONL file of rows from `winrate.pairs.jsonl` (prompt,
    candidate, base) with `preferred`: candidate, base or tie. The win rate is then also given prediction-powered
    (the judge's P(candidate better) on every prompt, corrected by the labelled ones) and from the labels alone.
    Label a random subset: the estimates assume one."""


class Tally(TypedDict):
    """The judge's verdicts on the candidate (`a`) against the base, counted."""

    n: int
    """Judgments that succeeded."""
    failures: int
    """Judgments that failed or are missing (never counted as ties)."""
    wins: int
    """Judgments with P(candidate better) above 0.5 + tie_band."""
    ties: int
    """Judgments within tie_band of 0.5."""
    losses: int
    """Judgments with P(candidate better) below 0.5 - tie_band."""
    win_rate: float | None
    """(wins + ties / 2) / n; None when no judgment succeeded."""
    ci95: list[float] | None
    """[low, high] of the Wilson 95% interval of the win rate; None when no judgment succeeded."""
    ci_method: Literal["wilson"]
    """How `ci95` was computed."""
    mean_p_candidate: float | None
    """Mean P(candidate better) over the judgments that succeeded; None when none did."""
    position_consistent_rate: float | None
    """Share of the judgments made in both orders whose two orders picked the same winner; None without any."""


class RewardScores(TypedDict):
    """A reward model's scores of both models' answers."""

    path: str
    """The reward model folder."""
    mean_candidate: float
    """Mean reward of the candidate's answers."""
    mean_base: float
    """Mean reward of the base model's answers."""
    candidate_higher_rate: float
    """Share of prompts where the candidate's answer gets the higher reward (ties count half)."""


class WinrateExample(TypedDict):
    """One prompt with both answers, to read beside the numbers."""

    prompt: str
    """The prompt's last message."""
    prompt_id: str
    """The conversation's identity (`conversation_id`): two prompts that end in the same message differ here."""
    messages: list[dict[str, Any]]
    """The whole prompt conversation by role, in TRL's conversational format (tool calls and tool results kept)."""
    candidate: str
    """The candidate's answer."""
    base: str
    """The base model's answer."""
    p_candidate: float | None
    """The judge's P(candidate better); None when the judgment failed."""


class HumanWinrate(TypedDict):
    """The win rate people would give, from their labels on some comparisons (prediction-powered inference)."""

    labels: int
    """Rows in the labels file."""
    matched: int
    """Of them, rows matching a comparison of this evaluation with a successful judgment (same prompt and answers)."""
    ppi: dict[str, Any] | None
    """The prediction-powered win rate (an `Estimate`: value, low, high, lam, ...): the judge's P(candidate
    better) on every comparison, corrected by the labelled ones; None with fewer than 10 matched labels."""
    human: dict[str, Any] | None
    """The win rate from the labels alone (an `Estimate`); None with fewer than 10 matched labels."""
    note: str | None
    """Why labels did not match (answers differ from those labelled, a new sample at temperature > 0)."""


class WinrateReport(Tally):
    """The win-rate summary as written to winrate.json: the settings, the tally, reward scores, examples."""

    base: str
    """The base model (model string)."""
    candidate: str
    """The candidate model (model string)."""
    judge: str
    """The judge model (model string)."""
    constitution: str
    """The constitution judged against (bundled name or YAML path)."""
    prompts: str
    """The held-out prompts file."""
    prompts_used: int
    """Prompts both models answered (at most `limit`)."""
    reward_model: RewardScores | None
    """The reward model's scores of both models' answers; None without a reward model."""
    length_controlled: LengthControlled
    """The win rate with the judge's length preference modelled out."""
    human_labels: HumanWinrate | None
    """With `human_labels`: the prediction-powered and people-only win rates; None without."""
    examples: list[WinrateExample]
    combined: dict[str, Any] | None
    """With `combine` other than weighted: the levels that settled the comparisons and the conflicts between levels
    per pair of principles (`charter.judge.pairwise.combination_summary`); None for the weighted mean."""
    """The first three prompts with both answers."""
    first_violations: NotRequired[list[FirstViolations]]
    """Judge mode `stepwise` only: per model, how many of its judged answers' trajectories violate a principle."""


class FirstViolations(TypedDict):
    """Judge mode `stepwise`: one side's trajectories (the prompt's turns, then its answer) that hold a step which
    violates a principle, among its successful judgments, with a Wilson 95% interval."""

    side: str
    """The side (`candidate`/`base`, or an arena's model)."""
    judged: int
    """Its successful judgments."""
    violating: int
    """Of them, those whose trajectory has a first violating step."""
    rate: float | None
    """violating / judged; None where none was judged."""
    ci95: list[float] | None
    """Its Wilson 95% interval; None where none was judged."""
    principles: dict[str, int]
    """The violated principles, with how many first violating steps each."""


class WinrateSummary(WinrateReport):
    """What `winrate` returns: the summary written to winrate.json, and where it went."""

    written_to: str
    """The JSON file written (a markdown file with the same name ending in .md lies beside it)."""


def load_prompts(source: str, limit: int | None, seed: int) -> list[list[dict[str, str]]]:
    """Prompt conversations from a JSONL/parquet file (`prompt` string or message list, or `messages`)."""
    rows = data.read_rows(source)
    if not rows:
        raise DatasetError(f"{source}: no prompts")
    key = "prompt" if "prompt" in rows[0] else "messages" if "messages" in rows[0] else None
    if key is None:
        raise DatasetError(f"{source}: missing column prompt (a string or a message list per row) or messages")
    prompts = [data.message_dicts(r[key], "user", f"{source}: row {i}") for i, r in enumerate(rows) if r.get(key)]
    if key == "messages":  # SFT-style rows: drop a trailing assistant answer
        prompts = [p[:-1] if p and p[-1]["role"] == "assistant" else p for p in prompts]
    if limit is not None and limit < len(prompts):
        keep = sorted(random.Random(seed).sample(range(len(prompts)), limit))
        prompts = [prompts[i] for i in keep]
    return prompts


async def _answers(
    spec: str, prompts: list[list[dict[str, str]]], config: WinrateConfig, api_key_env: str | None = None
) -> list[str]:
    """One model's answers; no call cache (a `local:` folder may hold a newly trained model)."""
    from charter.providers import SamplingParams, get_model

    model = get_model(spec, role="policy", api_key_env=api_key_env)
    try:
        params = SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed)
        return [c.text.strip() for c in await model.generate([as_records(p) for p in prompts], params)]
    finally:
        await model.aclose()


async def _judge(config: WinrateConfig, pairs: list[Pair]) -> dict[str, Judgment]:
    from charter.constitutions import load_constitution
    from charter.judge.pairwise import judge_many, judgments_by_pair
    from charter.judge.settings import JudgeSettings
    from charter.providers import get_model

    constitution = load_constitution(config.constitution)
    settings = JudgeSettings(
        mode=config.judge_mode, orders="both", principles_per_pair=config.principles_per_pair, combine=config.combine
    )
    model = get_model(config.judge, role="judge", api_key_env=config.judge_api_key_env)
    if scoring_mode(config.scoring, config.judge_mode).needs_context:
        source = str(config.prompts)
        return await judge_by_checklist(model, constitution, pairs, source, config, close=True)
    judged = judge_many(model, constitution, pairs, settings, config.seed, config.concurrency)
    return await judgments_by_pair(judged, close=model)


def tally(records: list[Judgment | None], tie_band: float) -> Tally:
    """Wins, ties and losses of `a` (the candidate), the win rate with ties as half, and its Wilson 95% CI.

    A missing or failed judgment is counted as a failure, never as a tie.

    Args:
        records: One judgment per pair, `a` the candidate's answer; None where the pair has none.
        tie_band: A judgment with P(a better) within this distance of 0.5 is a tie.

    Returns:
        The counts, the win rate with its interval, the mean P(candidate better) and the position consistency.
    """
    ok = [r for r in records if r is not None and r.status == "ok" and r.p_a is not None]
    p = [float(r.p_a) for r in ok if r.p_a is not None]
    wins = sum(1 for x in p if x > 0.5 + tie_band)
    losses = sum(1 for x in p if x < 0.5 - tie_band)
    ties = len(ok) - wins - losses
    score = wins + 0.5 * ties
    consistent = [r.position_consistent for r in ok if r.position_consistent is not None]
    return {
        "n": len(ok),
        "failures": len(records) - len(ok),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "win_rate": score / len(ok) if ok else None,
        "ci95": list(wilson_interval(score, len(ok))) if ok else None,
        "ci_method": "wilson",
        "mean_p_candidate": sum(p) / len(p) if p else None,
        "position_consistent_rate": sum(consistent) / len(consistent) if consistent else None,
    }


#: A person's verdict as the candidate's share of the win.
PREFERRED = {"candidate": 1.0, "base": 0.0, "tie": 0.5}


def comparison_key(*texts: str) -> str:
    """What ties a person's label to a comparison: the prompt's identity (`conversation_id`; in a labels file
    without a `prompt_id` column, its last message) and the answers, hashed."""
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()


def conversation_id(messages: Sequence[Message | Mapping[str, Any]]) -> str:
    """A prompt conversation's identity: the hash of all its messages (roles, texts, tool calls and results), as a
    run's prompt id is. Two trajectories that end in the same message have different ids."""
    return prompt_id(as_records(messages))


def conversation_shown(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """A conversation by role as a summary shows it: TRL's conversational format, tool calls kept."""
    return [trl_message(m) for m in messages]


def conversation_lines(messages: Sequence[Mapping[str, Any]], width: int = 200) -> list[str]:
    """A conversation (as `conversation_shown` gives it) in markdown: one line a message, with its index and role,
    an assistant's tool calls as actions and a tool result marked untrusted."""
    lines = []
    for i, m in enumerate(messages):
        role = m["role"] if m["role"] != "tool" else f"tool result, untrusted (answers call {m.get('tool_call_id')})"
        text = " ".join(str(m.get("content") or "").split())
        actions = [
            f"calls {c['function']['name']} with {orjson.dumps(c['function']['arguments']).decode()}"
            for c in m.get("tool_calls") or ()
        ]
        said = "; ".join(([text[:width] + ("…" if len(text) > width else "")] if text else []) + actions)
        lines.append(f"- [{i}] **{role}**: {said}")
    return lines


def labelled_rows(
    path: Path, texts: Sequence[str], verdicts: Mapping[str, float], written_by: str
) -> Iterator[tuple[int, dict[str, Any], float]]:
    """(row number, row, the first side's share of the win) for each row of a JSONL/parquet file of people's
    verdicts, whose `preferred` is one of `verdicts` and whose `texts` columns are strings.

    Raises:
        DatasetError: The file cannot be read or is empty, or a row has another `preferred` or lacks a text.
    """
    rows = tables.read_rows(path)
    if not rows:
        raise DatasetError(f"{path}: no labels (rows of {written_by} with `preferred` added)")
    names = list(verdicts)
    allowed = f"{', '.join(names[:-1])} or {names[-1]}"
    for i, row in enumerate(rows, 1):
        preferred = row.get("preferred")
        if not isinstance(preferred, str) or preferred not in verdicts:
            raise DatasetError(f"{path}: row {i}: preferred: must be {allowed}, got {preferred!r}")
        missing = [k for k in texts if not isinstance(row.get(k), str)]
        if missing:
            raise DatasetError(f"{path}: row {i}: {missing[0]}: must be a string (as in {written_by})")
        yield i, row, verdicts[preferred]


def read_human_labels(path: Path) -> dict[str, float]:
    """comparison key -> the candidate's share of the win (1, 0.5, 0), from a JSONL file of labelled comparisons.

    Raises:
        DatasetError: The file cannot be read, or a row lacks prompt/candidate/base or has another `preferred`.
    """
    texts = ("prompt", "candidate", "base")
    return {
        comparison_key(_prompt_identity(row), row["candidate"], row["base"]): share
        for _, row, share in labelled_rows(path, texts, PREFERRED, "winrate.pairs.jsonl")
    }


def _prompt_identity(row: Mapping[str, Any]) -> str:
    """A labelled row's prompt: its `prompt_id` (the whole conversation's identity) where the row has one, else its
    `prompt` text (the last message, as labels files written before the column have it)."""
    return row["prompt_id"] if isinstance(row.get("prompt_id"), str) else row["prompt"]


def human_winrate(labels: dict[str, float], judged: list[tuple[Pair, float]], labels_file: Path) -> HumanWinrate:
    """The prediction-powered and people-only win rates of the comparisons people labelled, matched on the whole
    conversation's identity (or, for a row without `prompt_id`, its last message) and both answers."""
    keys = [
        next(
            (k for k in (comparison_key(ident, p.a, p.b) for ident in _identities(p)) if k in labels),
            "",
        )
        for p, _ in judged
    ]
    matched = [(p_a, labels[k]) for k, (_, p_a) in zip(keys, judged) if k in labels]
    return human_estimates([p_a for _, p_a in judged], matched, len(labels), labels_file)


def _identities(pair: Pair) -> tuple[str, str]:
    """What a labelled row may name a comparison's prompt by: its conversation's id, else its last message."""
    return conversation_id(pair.prompt), pair.prompt[-1].content


def human_estimates(
    judge_all: list[float], matched: list[tuple[float, float]], labels: int, labels_file: Path
) -> HumanWinrate:
    """The prediction-powered win rate (the judge's P on every comparison, corrected by the `matched` (judge's P,
    person's share) pairs) and the people-only one; neither, and a note, with fewer than MIN_LABELS matched."""
    from charter.agreement.summary import MIN_LABELS
    from charter.stats.ppi import ppi_mean

    note = None
    if len(matched) < labels:
        note = (
            f"{labels - len(matched)} of {labels} labels in {labels_file} match no judged comparison of this "
            "evaluation (answers differ from those labelled, or the judgment failed)"
        )
    if len(matched) < MIN_LABELS:
        few = f"{len(matched)} labels match, fewer than {MIN_LABELS}: too few for an interval to be trusted"
        note = f"{note}; {few}" if note else few
        return HumanWinrate(labels=labels, matched=len(matched), ppi=None, human=None, note=note)
    judge_labeled, human = [m[0] for m in matched], [m[1] for m in matched]
    ppi = ppi_mean(judge_all, judge_labeled, human).within(0, 1)
    alone = ppi_mean(judge_all, judge_labeled, human, method="human").within(0, 1)
    return HumanWinrate(labels=labels, matched=len(matched), ppi=ppi.model_dump(), human=alone.model_dump(),
                        note=note)  # fmt: skip


def reward_scores(path: Path, prompts: list, candidate: list[str], base: list[str]) -> RewardScores:
    """Mean reward of both models' answers and how often the candidate's is higher.

    Args:
        path: A reward model folder (as `train_reward_model` writes).
        prompts: The prompt conversations, as lists of `{role, content}` messages.
        candidate: The candidate's answer to each prompt.
        base: The base model's answer to each prompt.

    Returns:
        The folder, both mean rewards and the share of prompts where the candidate's answer scores higher.

    Raises:
        TrainingError: `path` is not a reward model folder.
    """
    from charter.reward_model.scorer import RewardScorer

    scorer = RewardScorer.load(path)
    cand = scorer.score([p + [{"role": "assistant", "content": a}] for p, a in zip(prompts, candidate)])
    base_scores = scorer.score([p + [{"role": "assistant", "content": a}] for p, a in zip(prompts, base)])
    higher = sum(1.0 if c > b else 0.5 if c == b else 0.0 for c, b in zip(cand, base_scores))
    return {
        "path": str(path),
        "mean_candidate": sum(cand) / len(cand),
        "mean_base": sum(base_scores) / len(base_scores),
        "candidate_higher_rate": higher / len(cand),
    }


def answer_pairs(
    prompts: Sequence[Sequence[Mapping[str, Any]]],
    firsts: Sequence[str],
    seconds: Sequence[str],
    sources: tuple[str, str],
    models: tuple[str | None, str | None] = (None, None),
) -> list[Pair]:
    """The comparisons of two answers to each prompt, in order: pair i (`winrate-i`) shows the first answer as `a`,
    from `sources[0]` (model `models[0]`), and the second as `b`."""
    return [
        Pair(
            pair_id=f"winrate-{i}",
            prompt_id=f"winrate-{i}",
            prompt=[Message.model_validate(m) for m in p],
            a=a,
            b=b,
            a_source=sources[0],
            b_source=sources[1],
            a_model=models[0],
            b_model=models[1],
        )
        for i, (p, a, b) in enumerate(zip(prompts, firsts, seconds))
    ]


def _resolve(config: WinrateConfig) -> WinrateConfig:
    updates: dict[str, Any] = {}
    if config.prompts is None:
        raise ConfigError("prompts: required (a JSONL/parquet file of held-out prompts)")
    files = RunFiles(config.run_dir) if config.run_dir is not None else None
    if config.candidate is None:
        if files is None:
            raise ConfigError("candidate: required (or set run_dir to compare with RUN_DIR/dpo)")
        updates["candidate"] = f"local:{files.dpo_dir}"
    if config.reward_model is None and files is not None and (files.reward_model_dir / "config.json").exists():
        updates["reward_model"] = files.reward_model_dir
    return config.model_copy(update=updates)


async def winrate_async(config: WinrateConfig) -> WinrateSummary:
    """The win-rate evaluation; writes JSON + markdown and returns the summary.

    Both models answer the prompts, the judge compares each pair of answers in both orders, and a reward model
    (the given one, or RUN_DIR/reward_model where there is one) scores them too. The summary goes to `out`, else
    RUN_DIR/report/winrate.json, else ./winrate.json, with a markdown file beside it.

    Args:
        config: The win-rate settings.

    Returns:
        The summary as written, and the path it was written to.

    Raises:
        CharterError: What `winrate` raises, from a bad config to a model that failed for good.
    """
    config = _resolve(config)
    assert config.candidate is not None and config.prompts is not None  # _resolve fills or refuses them
    prompts = load_prompts(str(config.prompts), config.limit, config.seed)
    labels = read_human_labels(config.human_labels) if config.human_labels else None  # checked before any call
    base = await _answers(config.base, prompts, config, config.base_api_key_env)
    candidate = await _answers(str(config.candidate), prompts, config, config.candidate_api_key_env)
    pairs = answer_pairs(prompts, candidate, base, ("candidate", "base"), (config.candidate, config.base))
    records = await _judge(config, pairs)
    ordered = [records.get(p.pair_id) for p in pairs]
    judged = [(p, r.p_a) for p, r in zip(pairs, ordered) if r is not None and r.status == "ok" and r.p_a is not None]
    report: WinrateReport = {
        "base": config.base,
        "candidate": config.candidate,
        "judge": config.judge,
        "constitution": config.constitution,
        "prompts": config.prompts,
        "prompts_used": len(prompts),
        **tally(ordered, config.tie_band),
        "reward_model": reward_scores(config.reward_model, prompts, candidate, base) if config.reward_model else None,
        "length_controlled": length_controlled(
            [p_a for _, p_a in judged], [p.a for p, _ in judged], [p.b for p, _ in judged], seed=config.seed
        ),
        "human_labels": human_winrate(labels, judged, config.human_labels)
        if labels is not None and config.human_labels
        else None,
        "examples": [
            {
                "prompt": p.prompt[-1].content,
                "prompt_id": conversation_id(p.prompt),
                "messages": conversation_shown(p.prompt),
                "candidate": p.a,
                "base": p.b,
                "p_candidate": r.p_a if r is not None else None,
            }
            for p, r in list(zip(pairs, ordered))[:3]
        ],
        "combined": combination_summary(r for r in ordered if r is not None),
    }
    if judges_steps(config.scoring, config.judge_mode):
        report["first_violations"] = first_violations(
            {"candidate": ordered, "base": ordered}, {"candidate": ["a"] * len(ordered), "base": ["b"] * len(ordered)}
        )
    written = write_summary(config, report)
    write_pairs(written.with_suffix(".pairs.jsonl"), pairs, ordered)
    return {**report, "written_to": str(written)}


def write_pairs(
    path: Path,
    pairs: list[Pair],
    judgments: list[Judgment | None],
    sides: tuple[str, str] = ("candidate", "base"),
    **fields: Any,
) -> Path:
    """Every comparison with the judge's verdict, for people to label (add `preferred`: candidate, base or tie, or
    the given `sides`' names) and pass back as `human_labels`; `fields` go into every row. A row names its prompt
    by its last message (`prompt`) and its whole conversation's identity (`prompt_id`, which labels are matched on);
    a prompt that is more than one user message is there whole, by role (`messages`, tool calls kept)."""
    rows = [
        {
            "pair_id": p.pair_id,
            **fields,
            "prompt": p.prompt[-1].content,
            "prompt_id": conversation_id(p.prompt),
            **({"messages": conversation_shown(p.prompt)} if len(p.prompt) > 1 else {}),
            sides[0]: p.a,
            sides[1]: p.b,
            f"p_{sides[0]}": r.p_a if r is not None and r.status == "ok" else None,
            **(_settlement(r.combined) if r is not None and r.combined is not None else {}),
            **(_findings(r, sides) if r is not None and _by_step(r) else {}),
        }
        for p, r in zip(pairs, judgments)
    ]
    text = "".join(orjson.dumps(row).decode() + "\n" for row in rows)
    tables.atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def _by_step(judgment: Judgment) -> bool:
    """Whether the judgment judged each answer as a step (its mode's subject is a step), so it has findings."""
    return mode(judgment.mode).kind.subject == STEPWISE_MODE.kind.subject


def _findings(judgment: Judgment, sides: tuple[str, str]) -> dict[str, Any]:
    """A stepwise comparison's first violating step of each side's trajectory, as its row shows it (null where none
    was found, or the judgment failed)."""
    found = (step_finding(judgment, "a"), step_finding(judgment, "b"))
    return {f"first_violation_{side}": None if f is None else f.model_dump() for side, f in zip(sides, found)}


def _settlement(combined: Combined) -> dict[str, Any]:
    """A comparison's settlement as its row shows it: the level that settled it and each conflict between levels."""
    conflicts = [f"{c.settled_by} ({c.level}) > {c.overruled} ({c.overruled_level})" for c in combined.conflicts]
    return {"settled_by": combined.settled_by, "conflicts": conflicts}


def write_summary(config: WinrateConfig, summary: WinrateReport) -> Path:
    """Write the JSON summary and its markdown: to --out, else RUN_DIR/report/winrate.json, else ./winrate.json."""
    if config.out is None and config.run_dir is not None:
        files = RunFiles(config.run_dir)
        files.write_report_text(Path(WINRATE_JSON).with_suffix(".md").name, markdown(summary))
        return files.write_report_json(WINRATE_JSON, summary)
    out = Path(config.out or WINRATE_JSON)
    write_json(out, summary)
    out.with_suffix(".md").write_text(markdown(summary), encoding="utf-8")
    return out


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(summary: WinrateReport) -> str:
    """A short markdown summary for the run report."""
    ci = summary.get("ci95") or [None, None]
    orders = (
        "step by step, each answer as the conversation's next step"
        if "first_violations" in summary
        else "in both orders"
    )
    lines = [
        "## Win rate",
        "",
        f"Candidate `{summary['candidate']}` against base `{summary['base']}`, judged by `{summary['judge']}` "
        f"against the `{summary['constitution']}` constitution {orders}, on {summary['prompts_used']} "
        f"held-out prompts from `{summary['prompts']}`.",
        "",
        "| win rate (ties half) | 95% CI (Wilson) | wins | ties | losses | failed | mean P(candidate) |",
        "|---|---|---|---|---|---|---|",
        f"| {_fmt(summary['win_rate'])} | {_fmt(ci[0])}–{_fmt(ci[1])} | {summary['wins']} | {summary['ties']} | "
        f"{summary['losses']} | {summary['failures']} | {_fmt(summary['mean_p_candidate'])} |",
        "",
    ]
    lc = summary.get("length_controlled")
    if lc:
        if lc["win_rate"] is None:
            lines += [f"Length-controlled win rate: not fitted ({lc['note']}).", ""]
        else:
            lci = lc["ci95"] or [None, None]
            lines += [
                f"Length-controlled win rate {_fmt(lc['win_rate'])} (95% CI {_fmt(lci[0])}–{_fmt(lci[1])}, "
                f"resampling prompts) against the raw mean P(candidate) {_fmt(lc['raw'])}: the candidate's answer "
                f"is the longer one on {_fmt(lc['longer_rate'])} of prompts, and the judge's length coefficient is "
                f"{_fmt(lc['length_coefficient'])} (above 0: it favours longer answers). The length-controlled "
                "rate is what the judge would say were both answers equally long (AlpacaEval 2.0's model).",
                "",
            ]
    hw = summary.get("human_labels")
    if hw:
        ppi, alone = hw.get("ppi"), hw.get("human")
        if ppi and alone:
            lines += [
                f"With people's labels on {hw['matched']} comparisons: win rate **{ppi['value']:.3f}** "
                f"[{ppi['low']:.3f}, {ppi['high']:.3f}] prediction-powered (the judge's P(candidate) on every "
                f"prompt corrected by the labels, judge weight {ppi['lam']:.2f}); {alone['value']:.3f} "
                f"[{alone['low']:.3f}, {alone['high']:.3f}] from the labels alone.",
                "",
            ]
        if hw.get("note"):
            lines += [f"Labels: {hw['note']}.", ""]
    combined = summary.get("combined")
    if combined:
        lines += [*combination_lines(combined), ""]
    if "first_violations" in summary:
        lines += first_violation_lines(summary["first_violations"])
    rm = summary.get("reward_model")
    if rm:
        lines += [
            f"Reward model `{rm['path']}`: mean score candidate {_fmt(rm['mean_candidate'])}, base "
            f"{_fmt(rm['mean_base'])}; candidate scored higher on {_fmt(rm['candidate_higher_rate'])} of prompts.",
            "",
        ]
    lines += example_lines(summary.get("examples") or [], ("candidate", "base"))
    return "\n".join(lines)


def example_lines(examples: Sequence[Mapping[str, Any]], sides: tuple[str, str]) -> list[str]:
    """The examples whose prompts are conversations (more than one message), each laid out by role, then both
    answers; nothing where every prompt is one message (its text is the answers' context, in the JSON)."""
    shown = [e for e in examples if len(e.get("messages") or ()) > 1]
    if not shown:
        return []
    lines = ["### Examples", ""]
    for n, example in enumerate(shown, 1):
        p = example.get(f"p_{sides[0]}")
        lines += [f"Example {n} (conversation `{example['prompt_id']}`, P({sides[0]}) {_fmt(p)}):", ""]
        lines += conversation_lines(example["messages"])
        lines += [f"- {side}'s answer: {' '.join(str(example[side]).split())[:200]}" for side in sides]
        lines.append("")
    return lines


@public
def winrate(config: ConfigArg[WinrateConfig] | None = None, **fields: Any) -> WinrateSummary:
    """Win rate of a candidate policy against a base policy, judged against the constitution in both orders.

    `winrate(base=..., candidate=..., prompts=..., judge=...)` or `winrate(WinrateConfig(...))`. A sync wrapper
    of `winrate_async`: called inside a running event loop, it runs in a thread of its own.

    Args:
        config: The settings, as a `WinrateConfig`, a dict of its fields or a YAML file; None to take them all
            from `fields`.
        **fields: `WinrateConfig` fields; with a dict `config`, they override its keys (ignored with a
            `WinrateConfig`).

    Returns:
        The summary written to winrate.json (settings, wins, ties, losses, failures, the win rate with its Wilson
        95% interval, the length-controlled rate, with `human_labels` the prediction-powered and people-only win
        rates, reward scores, examples), and the path it was written to. Every comparison goes to
        winrate.pairs.jsonl beside it, for people to label.

    Raises:
        ArgumentError: A field is not a valid `WinrateConfig` field, or an argument is of the wrong type.
        ConfigError: `config` is a YAML file that cannot be read or does not validate.
        ConfigError: `prompts` is unset; `candidate` is unset without `run_dir`; a key variable is named for a
            model that takes none.
        DatasetError: The prompts file cannot be read, has no rows, lacks a prompt or messages column, or has a
            malformed prompt; or the human labels file has a row without prompt, candidate and base or with another
            `preferred` than candidate, base or tie.
        UnknownModel: A model string names no known provider.
        MissingAPIKey: The variable holding a remote model's key is unset.
        MissingExtra: A model's provider needs an extra that is not installed.
        ConstitutionError: `constitution` is neither a bundled name nor a valid constitution file.
        ProviderError: A model failed to answer for good; from the judge, only a `FatalProviderError` (a failed
            judgment is counted as a failure instead).
        LogprobsUnsupported: `judge_mode` is logprobs and the judge's backend gives no token probabilities.
        TrainingError: `reward_model` is not a reward model folder.
    """
    config = config_with_fields(WinrateConfig, config, fields)
    return run_sync(winrate_async(config))


def prompt_checklists(source: str, column: str, prompts: Sequence[Any]) -> dict[str, Any]:
    """The `column` value of each of `prompts` (as `load_prompts` read them) in the prompts file, by the prompt's
    fingerprint; a prompt whose row has none is left out."""
    found: dict[str, Any] = {}
    rows = data.read_rows(source)
    key = "prompt" if rows and "prompt" in rows[0] else "messages"
    wanted = {prompt_key(p) for p in prompts}
    for i, row in enumerate(rows):
        value = row.get(column)
        if value is None or not row.get(key):
            continue
        prompt = data.message_dicts(row[key], "user", f"{source}: row {i + 1}")
        if key == "messages" and prompt and prompt[-1]["role"] == "assistant":
            prompt = prompt[:-1]
        if prompt_key(prompt) in wanted:
            found[prompt_key(prompt)] = (f"{source}: row {i + 1}: {column}", value)
    return found


def prompt_key(prompt: Any) -> str:
    """A prompt's key in `prompt_checklists`: the fingerprint of its messages' roles and contents."""
    return fingerprint([[{"role": m["role"], "content": m["content"]} for m in prompt]])


def checklist_for(prompt: Any, given: Mapping[str, Any], constitution: Constitution) -> Checklist:
    """A prompt's checklist: its row's column value, else the constitution's criteria (a `ConfigError` naming the
    column when there are none)."""
    found = given.get(prompt_key(prompt))
    if found is not None:
        where, value = found
        return checklist_from_rows(value, where, "column")
    if not constitution.has_criteria:
        raise ConfigError(
            f"scoring checklist: a prompt has no checklist column value and the constitution {constitution.name} has "
            "no criteria"
        )
    return checklist_from_criteria(constitution)


async def checklist_judgments(
    model: ManagedModel,
    pairs: Sequence[Pair],
    checklists: Mapping[str, Checklist],
    aggregation: Aggregation = "explicit",
    concurrency: int = 16,
    entry: Mode = CHECKLIST_MODE,
) -> dict[str, Judgment]:
    """Each pair's judgment by pair id: both answers checked against `checklists[pair.prompt_id]` (each distinct
    answer of a prompt once), P(a better) their preference; `entry` is the table's mode the judgments name (in their
    fingerprint, their `mode`, the vote and a failure's kind).

    The answers are checked as rewards check a completion (`check_response` with its defaults: the overall score
    asked from 0 to 10, verifiers shown the whole conversation, no re-ask, one vote), not through the entry's pair
    judgment (`Kind.judge_by_checklist`), which asks the overall score from 1, re-asks an unreadable reply, votes per
    principle and records other failure kinds: going through it would change an evaluation's calls, their cache keys
    and its judgments."""
    limit = asyncio.Semaphore(concurrency)
    checked: dict[tuple[str, str], asyncio.Task[CheckedResponse]] = {}

    async def one(prompt_id: str, pair: Pair, text: str) -> CheckedResponse:
        async with limit:
            return await check_response(model, pair.prompt, text, checklists[prompt_id], aggregation)

    def check(pair: Pair, text: str) -> asyncio.Task[CheckedResponse]:
        key = (str(pair.prompt_id), text)
        if key not in checked:
            checked[key] = asyncio.ensure_future(one(key[0], pair, text))
        return checked[key]

    tasks = [(pair, check(pair, pair.a), check(pair, pair.b)) for pair in pairs]
    name = entry.name
    judge_fp = fingerprint([model.served_id, name, aggregation, [c.fingerprint for c in checklists.values()]])
    out = {}
    for pair, a, b in tasks:
        out[pair.pair_id] = _judgment(pair, await a, await b, model.model_id, judge_fp, name)
    return out


def _judgment(pair: Pair, a: CheckedResponse, b: CheckedResponse, judge: str, judge_fp: str, name: str) -> Judgment:
    """The pair's judgment in mode `name`: one vote under the mode's name, or a failure of that kind."""
    ids = list(dict.fromkeys(i.principle_id or name for i in a.checklist.items))
    p = preference(a.scored(), b.scored()).p_a
    if p is None:
        why = (a.failure if a.reward is None else f"b: {b.failure}") or "no checklist score"
        failure = Failure(kind=name, message=why)
        return Judgment(pair_id=pair.pair_id, fingerprint=judge_fp, status="failed", mode=name, orders="one",
                        judge_model=judge, principle_ids=ids, failure=failure)  # fmt: skip
    vote = Vote(principle_id=name, p_a=p, p_a_ab=p, score_a=a.reward, score_b=b.reward)
    return Judgment(pair_id=pair.pair_id, fingerprint=judge_fp, status="ok", mode=name, orders="one",
                    judge_model=judge, principle_ids=ids, p_a=p, p_a_ab=p, principles=[vote])  # fmt: skip


async def judge_by_checklist(
    model: ManagedModel, constitution: Constitution, pairs: Sequence[Pair], source: str, config: Any, close: bool = True
) -> dict[str, Judgment]:
    """The judgments of an evaluation whose scoring names a mode that judges by checklist (`scoring_mode`): each
    prompt's checklist from the prompts file's `config.checklist_column` (else the constitution's criteria),
    `config.aggregation`, `config.concurrency`."""
    entry = scoring_mode(config.scoring, config.judge_mode)
    prompts = {str(p.prompt_id): [m.model_dump() for m in p.prompt] for p in pairs}
    given = prompt_checklists(source, config.checklist_column, list(prompts.values()))
    checklists = {pid: checklist_for(prompt, given, constitution) for pid, prompt in prompts.items()}
    try:
        return await checklist_judgments(model, pairs, checklists, config.aggregation, config.concurrency, entry)
    finally:
        if close:
            await model.aclose()
