"""The `checklist` scoring: each completion checked against its prompt's checklist in one judge call (verifier items
by code), its reward the weighted, gated verdicts (`explicit`) or the judge's overall score given the checklist
(`implicit`).

A prompt's checklist is, in this order: the batch's `checklist` column (a list of items or its JSON text, as TRL
passes dataset columns to reward functions; a bad value is one `DatasetError` naming the row), the constitution's
criteria, or one written for the prompt by a checklist writer (one cached call a prompt). The items accepted during
training (`refresh_every`, `charter.checklist.items.ChecklistBook`) are added to every checklist, and the reward
names the version it used.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from charter.checklist.author import WriterBounds
from charter.checklist.check import CHECKLIST_FORMAT, CheckedResponse, check_response
from charter.checklist.items import Checklist, checklist_from_criteria, checklist_from_rows
from charter.checklist.store import stored_or_written, writing_fingerprint
from charter.errors import ConfigError, FatalProviderError, JudgeParseError, ProviderError
from charter.providers import get_model
from charter.providers.base import SamplingParams
from charter.providers.cache import CallCache
from charter.providers.config import RoleConfig
from charter.providers.usage import UsageMeter
from charter.records import Failure, Message, RewardChecklist, RewardRecord, fingerprint
from charter.reward.scoring import WRITER_PARAMS, Batch, ChecklistReward, RubricDropout, ScoringEntry, ScoringOptions
from charter.reward.session import JudgeSession

#: The item bounds of a reward's writer: those of a run config's `checklist:` section by default.
WRITER_BOUNDS = WriterBounds()


def writer_params(role: RoleConfig) -> SamplingParams:
    """The sampling a reward's checklist writer is asked with: its role's `params` where the role sets them, else
    `WRITER_PARAMS`."""
    return role.params if "params" in role.model_fields_set else WRITER_PARAMS


class NoChecklist(Exception):
    """A prompt's checklist could not be written (a recorded failure of its completions)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def score_by_checklist(session: JudgeSession, options: ScoringOptions, batch: Batch) -> list[RewardRecord]:
    """`checklist`: each completion's reward from its prompt's checklist (see the module's docstring)."""
    given = batch.checklists or [None] * len(batch.texts)
    # each (prompt, column value) resolved once: a writer is asked once for a prompt's whole group
    keys = [fingerprint([_prompt_key(p), _plain(v)]) for p, v in zip(batch.prompts, given)]
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    found = await asyncio.gather(
        *(prompt_checklist(session, options, batch.prompts[i], given[i], i) for i in first.values())
    )
    by_prompt = dict(zip(first, found))
    work = (
        _scored(session, options, prompt, text, by_prompt[key], batch.step)
        for prompt, text, key in zip(batch.prompts, batch.texts, keys)
    )
    return list(await asyncio.gather(*work))


def _plain(value: Any) -> Any:
    """A column value as data a fingerprint can hold (a value that is neither is read, and refused, later)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)


def _prompt_key(prompt: list[Message]) -> str:
    return fingerprint(["prompt", [m.model_dump() for m in prompt]])


async def prompt_checklist(
    session: JudgeSession, options: ScoringOptions, prompt: list[Message], value: Any, index: int
) -> Checklist | NoChecklist:
    """A prompt's checklist: its column value (`index` names the row in errors), the constitution's criteria, or the
    writer's (a failed writer is a `NoChecklist`), with the items accepted during training."""
    if value is not None and not (isinstance(value, str) and not value.strip()):
        return options.book.extend(checklist_from_rows(value, f"{options.checklist_column}[{index}]", "column"))
    if session.constitution.has_criteria:
        return options.book.extend(checklist_from_criteria(session.constitution))
    if options.checklist_writer is None:
        raise ConfigError(
            f"scoring checklist: prompts[{index}] has no '{options.checklist_column}' column value, the constitution "
            f"{session.constitution.name} has no criteria, and no checklist_writer is set to write one"
        )
    try:
        return options.book.extend(await _written(session, options, prompt))
    except NoChecklist as failed:
        return failed


async def _written(session: JudgeSession, options: ScoringOptions, prompt: list[Message]) -> Checklist:
    """The writer's checklist for a prompt, as `charter run` writes one (`charter.checklist.author`: the prompt's
    drawn principles, one structured call through the call cache, re-asked while unreadable), kept in the reward
    store with its provenance and for the session."""
    key = _prompt_key(prompt)
    if key in options.book.written:
        return options.book.written[key]
    writer = options.checklist_writer
    assert writer is not None
    ids = session.principles(prompt)
    principles = [(pid, session.constitution.principle(pid).description) for pid in ids]
    params = options.checklist_writer_params
    settings = writing_fingerprint(writer.served_id, params, WRITER_BOUNDS, session.constitution.hash, ids)
    try:
        written = await session.limited(
            stored_or_written(session.store, key, settings, writer, prompt, principles, WRITER_BOUNDS, params)
        )
    except FatalProviderError:
        raise
    except JudgeParseError as exc:
        failure = Failure(kind="checklist_writer", message=str(exc), raw=exc.raw, attempts=exc.attempts)
        raise NoChecklist(failure) from None
    except ProviderError as exc:
        raise NoChecklist(Failure(kind="checklist_writer", message=f"checklist writer failed: {exc}")) from None
    options.book.written[key] = written
    return written


async def _scored(
    session: JudgeSession,
    options: ScoringOptions,
    prompt: list[Message],
    text: str,
    checklist: Checklist | NoChecklist,
    step: int | None,
) -> RewardRecord:
    asked = [m.model_dump() for m in prompt]
    if options.dropout is not None and not isinstance(checklist, NoChecklist):
        checklist = with_dropout(options.dropout, checklist, session.seed, step, prompt)
    if isinstance(checklist, NoChecklist):
        key = session.key(asked, text, None, options.aggregation)
        return session.record(key, step, prompt, text, None, principle_ids=[], failure=checklist.failure)
    key = session.key(asked, text, checklist.fingerprint, options.aggregation)
    reused = session.stored(key, step)
    if reused is not None:
        return reused
    checked = await session.limited(
        check_response(session.judge, prompt, text, checklist, options.aggregation, session.settings.params)
    )
    return session.record(
        key,
        step,
        prompt,
        text,
        checked.reward,
        principle_ids=principle_ids(checklist),
        cached=checked.cached,
        checklist=reward_checklist(checked),
        failure=None if checked.failure is None else Failure(kind=CHECKLIST.name, message=checked.failure),
    )


def with_dropout(
    dropout: RubricDropout, checklist: Checklist, seed: int, step: int | None, prompt: list[Message]
) -> Checklist:
    """The checklist with `dropout.dropped_count` of its items left out, drawn from the seed, the step, the prompt and
    the checklist (the same draw for every completion of the prompt in the step); the items left out are kept in
    `dropout.drawn[step]` under the prompt's key."""
    count = dropout.dropped_count(len(checklist.items))
    if count == 0:
        return checklist
    prompt_key = _prompt_key(prompt)
    rng = np.random.default_rng(int(fingerprint([seed, step, prompt_key, checklist.fingerprint])[:12], 16))
    left_out = {int(i) for i in rng.choice(len(checklist.items), size=count, replace=False)}
    dropout.drawn.setdefault(step, {})[prompt_key[:12]] = [checklist.items[i].id for i in sorted(left_out)]
    kept = [item for i, item in enumerate(checklist.items) if i not in left_out]
    return checklist.model_copy(update={"items": kept})


def principle_ids(checklist: Checklist) -> list[str]:
    """The principles a checklist's items spell out, each once, in order."""
    return list(dict.fromkeys(i.principle_id for i in checklist.items if i.principle_id))


def reward_checklist(checked: CheckedResponse) -> RewardChecklist:
    """What a checklist reward rests on, as the reward store keeps it."""
    verdicts = checked.verdicts
    return RewardChecklist(
        fingerprint=checked.checklist.fingerprint,
        version=checked.checklist.version,
        source=checked.checklist.source,
        aggregation=checked.aggregation,
        verdicts={i: v.verdict for i, v in verdicts.items()},
        reasons={i: v.reason for i, v in verdicts.items() if v.reason},
        p_yes={i: v.p_yes for i, v in verdicts.items() if v.p_yes is not None},
        p_yes_missing={i: v.p_yes_missing for i, v in verdicts.items() if v.p_yes_missing},
        failed_items=checked.score.failed,
        failed_share=checked.score.failed_share,
        gates_failed=checked.score.gates_failed,
        explicit=checked.score.score,
    )


def checklist_fingerprint(options: ScoringOptions) -> dict[str, Any]:
    """What of the options changes a checklist reward: the prompt's format, the aggregation and the writer."""
    writer = options.checklist_writer
    dropout = {} if options.dropout is None else {"rubric_dropout": options.dropout.drop}
    return {
        "checklist_format": CHECKLIST_FORMAT,
        "aggregation": options.aggregation,
        "checklist_writer": None if writer is None else writer.served_id,
        **dropout,
    }


def checklist_options(section: ChecklistReward, cache: CallCache | None, meter: UsageMeter) -> ScoringOptions:
    """The scoring options a config's `checklist` section describes (its writer with the run's cache and meter)."""
    writer = None
    if section.writer is not None:
        writer = get_model(section.writer.backend(), cache=cache, meter=meter, role="checklist_writer")
    params = writer_params(section.writer) if section.writer is not None else WRITER_PARAMS
    return ScoringOptions(
        checklist_column=section.column,
        aggregation=section.aggregation,
        checklist_writer=writer,
        checklist_writer_params=params,
    )


def checklist_values(column: Sequence[Any] | None, n: int, name: str) -> list[Any] | None:
    """A batch's checklist column as TRL passes it: None, or a list of one value a row; another length is a
    `ConfigError` naming the column."""
    if column is None:
        return None
    if not isinstance(column, list | tuple) or len(column) != n:
        size = len(column) if isinstance(column, list | tuple) else type(column).__name__
        raise ConfigError(f"reward function: {n} prompts but {size} values in '{name}'")
    return list(column)


def _described(options: ScoringOptions) -> str:
    if options.aggregation == "implicit":
        return "the judge's overall score of each completion given its prompt's checklist, in one call (implicit)"
    return (
        "the weighted, gated verdicts of each completion's prompt checklist, answered in one judge call (a reason "
        "before each verdict; verifier items by code); all items failed: no reward"
    )


CHECKLIST = ScoringEntry(
    "checklist",
    score_by_checklist,
    rates=None,
    reads_checklists=True,
    describe=_described,
    fingerprinted=checklist_fingerprint,
)
