"""The constitutional judge as the reward of TRL's online trainers (GRPO, RLOO, online DPO).

`reward_function(...)` returns a callable with TRL's reward-function signature, `(prompts, completions, **kwargs) ->
list[float | None]`; its `as_async()` is the same reward as a coroutine function, which TRL awaits on its own event
loop. Its scoring is one entry of the table (`TABLE`, below):

- `score`: each completion's rubric score (judge mode `score`), normalised to 0..1 and averaged over the principles,
  which are drawn per prompt so that the completions of one prompt are rated alike (direct RLAIF, Lee et al. 2023);
- `group`: the completions of one prompt (GRPO's `num_generations`) compared pairwise in both orders; a completion's
  reward is its mean P(better) against the others of its group, its win rate (online AI feedback, Guo et al. 2024);
  with `group_strategy: circular` each completion is compared only with its neighbours in a random cycle (k pairs
  instead of k(k-1)/2) and its reward is its expected win rate under a Bradley–Terry fit of those comparisons;
- `reference`: P(the completion is better than a reference answer), both orders: the prompt's `reference` column,
  or the answer of a `reference_model` (asked once per prompt, then from the call cache);
- `rank`: the judge orders a prompt's completions in one call (listwise, as RULER and NeMo Gym's GenRM do), in
  `rank_orders` shuffled presentation orders to cancel its position bias; a Plackett–Luce fit of the orderings
  gives each completion its expected win rate in the group. A failed or unreadable ordering fails the whole group.
- `checklist`: each completion checked against its prompt's checklist (the `checklist` column, the constitution's
  criteria, or one written by `checklist_writer`) in one judge call, a reason before each verdict, verifier items
  by code; the reward is the weighted, gated verdicts (`aggregation: explicit`) or the judge's overall score given
  the checklist (`implicit`). A completion whose items all failed gets None; the failed items are recorded.

Every judge call goes through charter's call cache, limits, usage meter and budget; every reward is written to the
reward store (a run store's `rewards` table) with what it rests on, by the function's judge session
(`reward.session`). A failed judgment gives `None` for that completion (TRL then gives it no reward), never a
default; past `max_failures` the function raises `TooManyFailures`, and a reached budget raises `BudgetExceeded`
(`charter train grpo` then saves a checkpoint and exits with code 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict, Unpack

from charter.api_args import Range, public
from charter.checklist.check import Aggregation
from charter.constitutions import Constitution, load_constitution
from charter.errors import ArgumentError, ConfigError
from charter.judge.modes import pairwise_modes, rating_modes
from charter.judge.settings import JudgeConfig, JudgeSettings
from charter.providers import ManagedModel, get_model
from charter.providers.cache import DEFAULT_CACHE, CallCache
from charter.providers.config import RoleConfig, blind_cap
from charter.providers.usage import Budget, Price, UsageMeter
from charter.records import RewardRecord
from charter.reward.checklisted import CHECKLIST, WRITER_PARAMS, checklist_values, writer_params
from charter.reward.scoring import (
    FIRST_VIOLATION,
    GROUP,
    RANK,
    REDUCTIONS,
    REFERENCE,
    SCORE,
    STEPS,
    Batch,
    GroupStrategy,
    RubricDropout,
    ScoringEntry,
    ScoringOptions,
)
from charter.reward.session import (
    JudgeSession,
    SessionView,
    check_batch,
    check_settings,
    conversation_of,
    prompt_messages,
    reward_fingerprint,
    text_of,
)
from charter.training.parallel import ranks
from charter.yamlio import LocatedValueError, TableName, from_arguments

#: The table of scorings: one entry a scoring, by name, in the order the docs and errors list them. A new scoring is a
#: function over a judge session and a batch and one `ScoringEntry` here (`register` adds one defined elsewhere).
TABLE: dict[str, ScoringEntry] = {entry.name: entry for entry in (SCORE, GROUP, REFERENCE, RANK, CHECKLIST, STEPS)}


def register(entry: ScoringEntry) -> ScoringEntry:
    """Add `entry` to the table (a name already taken is a `ConfigError`); returns it."""
    if entry.name in TABLE:
        raise ConfigError(f"scoring {entry.name!r} is already in the table")
    TABLE[entry.name] = entry
    return entry


def scorings() -> tuple[str, ...]:
    """Every scoring's name, in the table's order."""
    return tuple(TABLE)


def scoring_entry(name: str) -> ScoringEntry:
    """The table's entry for `name`; an unknown name is a `ConfigError` listing the scorings."""
    entry = TABLE.get(name)
    if entry is None:
        raise ConfigError(f"scoring: expected one of {', '.join(TABLE)}, got {name!r}")
    return entry


#: A scoring's name, as configs take it: any name in the table (`scorings()`), which its schema lists.
Scoring = Annotated[str, TableName(scorings)]


def comparing_misfit(settings: JudgeSettings, who: str) -> str | None:
    """Why the judge's mode cannot compare completions for `who`, or None when it can."""
    if settings.rates_alone:
        return f"{who} compares completions: judge mode must be {', '.join(pairwise_modes())}"
    return None


def scoring_misfit(scoring: str, settings: JudgeSettings) -> str | None:
    """Why the judge's mode cannot serve `scoring` (one that rates needs a rating mode, one that compares a pairwise
    mode, one with a call of its own any mode), or None when it can."""
    entry = scoring_entry(scoring)
    if entry.rates is None:
        return None
    if entry.rates and not settings.rates_alone:
        return f"scoring {entry.name} rates each completion: the judge's mode must be {', '.join(rating_modes())}"
    if entry.rates and settings.combination.recorded:
        return f"scoring {entry.name} rates each completion alone: combine {settings.combine} orders comparisons"
    return None if entry.rates else comparing_misfit(settings, f"scoring {entry.name}")


def default_mode(scoring: str) -> str:
    """The judge mode `scoring` takes when the config names none (`ScoringEntry.default_mode`)."""
    return scoring_entry(scoring).default_mode


def with_default_mode(data: Any) -> Any:
    """A config's data with a judge that names no mode given the scoring's (`default_mode`); a scoring the table does
    not have is left for the config's own check."""
    if not isinstance(data, dict):
        return data
    judge = data.get("judge", {})
    judge = {"model": judge} if isinstance(judge, str) else judge
    entry = TABLE.get(data.get("scoring", SCORE.name))
    if isinstance(judge, dict) and "mode" not in judge and entry is not None:
        data = {**data, "judge": {**judge, "mode": entry.default_mode}}
    return data


def check_one_judge(scoring: str, judge: JudgeConfig, who: str) -> None:
    """`who` (online training, the reward server) takes one judge model, whose mode must serve the scoring."""
    if judge.models is not None:
        raise LocatedValueError(f"{who} takes one judge model (set judge.model)", ("judge", "models"))
    misfit = scoring_misfit(scoring, judge)
    if misfit:
        raise LocatedValueError(misfit, ("judge", "mode"))


#: Prompts, completions or reference answers as TRL passes them (strings, or lists of `{role, content}` messages).
Items = Sequence[Any]


class Columns(TypedDict, total=False):
    """A batch's columns beside its prompts and completions (each may be left out)."""

    references: Items | None
    """The reference answers, where the scoring reads them (`reference`)."""
    checklists: Items | None
    """Each prompt's checklist (items or their JSON text; None for a row without one), where the scoring reads them."""
    step: int | None
    """The training step the rewards are for (stored with them)."""


__all__ = ["TABLE", "AsyncRewardFunction", "Columns", "JudgeReward", "RewardFunction", "Scoring", "reward_function"]


class JudgeReward(SessionView):
    """The judge as a reward: a scoring (an entry of the table (`TABLE`, below)) over a judge session.

    `score` (sync) and `ascore` (async) give a batch's reward records, stored and tallied; `RewardFunction` and
    `AsyncRewardFunction` add TRL's call. Build one with `charter.reward_function`.

    Attributes:
        session: The judge session (`reward.session.JudgeSession`): judge, store, usage, tally, failure limit.
        entry: The scoring's entry in the table.
        options: What the scoring reads beside the session (reference column and model, group strategy, orders).
    """

    def __init__(self, session: JudgeSession, entry: ScoringEntry, options: ScoringOptions | None = None) -> None:
        super().__init__(session)
        self.entry, self.options = entry, options or ScoringOptions()
        self.__name__ = f"charter_{entry.name}"

    # -- scoring a batch -------------------------------------------------------------------------------------
    def score(self, prompts: Items, completions: Items, **columns: Unpack[Columns]) -> list[RewardRecord]:
        """`ascore` from synchronous code: run on the session's own event loop (a thread), where the judge's
        clients and limiters live from one batch to the next."""
        return self.session.run(self.ascore(prompts, completions, **columns))

    async def ascore(self, prompts: Items, completions: Items, **columns: Unpack[Columns]) -> list[RewardRecord]:
        """A batch's reward records, in order, awaited on the caller's running event loop.

        Args:
            prompts: Each completion's prompt: a string or a list of `{role, content}` messages.
            completions: The completions: strings or lists of messages.
            **columns: The batch's other columns (`Columns`): `references`, the reference answers, where the
                scoring reads them (`reference`); `checklists`, each prompt's checklist (a list of items or its JSON
                text; None for a row without one), where the scoring reads them (`checklist`); `step`, the training
                step the rewards are for (stored with them).

        Returns:
            One record per completion (`reward` None and `failure` set where the judgment failed), stored in the
            reward store and tallied.

        Raises:
            ConfigError: A prompt or completion that is neither a string nor messages, or lists of different lengths.
            TooManyFailures: The failed judgments are past `max_failures` (the batch is stored first).
            BudgetExceeded: The budget is reached.
        """
        references = self._checked(prompts, completions, columns.get("references"))
        checklists = self._checklists(prompts, columns.get("checklists"))
        step = columns.get("step")
        records = await self.rewards(list(prompts), list(completions), step, references, checklists)
        self.session.finish(records, step)
        self.session.check_failures()
        return records

    def unstored(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
    ) -> list[float | None]:
        """The rewards TRL's call gives (its columns read the same way), neither stored nor tallied: the training's
        judge, cache and budget on answers that are not trained on (the gold monitor's held-out prompts)."""
        columns = self._trl_batch(kwargs)
        references = self._checked(prompts, completions, columns.get("references"))
        checklists = self._checklists(prompts, columns.get("checklists"))
        records = self.session.run(self.rewards(list(prompts), list(completions), None, references, checklists))
        return [r.reward for r in records]

    async def rewards(
        self,
        prompts: list[Any],
        completions: list[Any],
        step: int | None,
        references: Sequence[Any] | None = None,
        checklists: Sequence[Any] | None = None,
    ) -> list[RewardRecord]:
        """A checked batch's reward records, in order, neither stored nor tallied (`session.finish` does both)."""
        texts = [text_of(c) for c in completions]
        conversations = [conversation_of(p, c) for p, c in zip(prompts, completions)]
        batch = Batch(prompt_messages(prompts), texts, step, references, checklists, conversations)
        return await self.entry.score(self.session, self.options, batch)

    def _checked(self, prompts: Any, completions: Any, references: Any) -> Sequence[str | None] | None:
        self.session.check_settings()
        column = references if self.entry.reads_references else None
        return check_batch(prompts, completions, column, self.options.reference_column)

    def _checklists(self, prompts: Any, checklists: Any) -> list[Any] | None:
        if not self.entry.reads_checklists:
            return None
        return checklist_values(checklists, len(prompts), self.options.checklist_column)

    def _trl_batch(self, kwargs: dict[str, Any]) -> Columns:
        """What TRL's keyword arguments carry: the reference column and the step the completions train (counted as
        TRL's log counts, 1 for the first: the trainer asks for rewards before the step that uses them ends, while
        global_step still counts the steps before it)."""
        state = kwargs.get("trainer_state")
        return Columns(
            references=kwargs.get(self.options.reference_column) if self.entry.reads_references else None,
            checklists=kwargs.get(self.options.checklist_column) if self.entry.reads_checklists else None,
            step=int(state.global_step) + 1 if state is not None else None,
        )

    # -- what the session does not hold -----------------------------------------------------------------------
    @property
    def scoring(self) -> str:
        """The scoring's name."""
        return self.entry.name

    @property
    def reference_model(self) -> ManagedModel | None:
        """The model that answers prompts without a reference (`reference` scoring), or None."""
        return self.options.reference_model


class RewardFunction(JudgeReward):
    """A TRL reward function backed by charter's judge. Build it with `charter.reward_function`."""

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
    ) -> list[float | None]:
        """One reward per completion, in order (None where the judgment failed).

        Each completion is a string or a list of `{role, content}` messages, as TRL gives them; anything else, lists
        of different lengths or a reference column of another length is a `ConfigError` naming the index."""
        records = self.score(prompts, completions, **self._trl_batch(kwargs))
        return _rewards(records, kwargs.get("log_metric"), kwargs.get("log_extra"))

    def as_async(self) -> AsyncRewardFunction:
        """The same reward as an async reward function, which TRL's GRPOTrainer and RLOOTrainer await on their own
        event loop (no thread of charter's): the same session, store, cache, budget and failure limit."""
        return AsyncRewardFunction(self.session, self.entry, self.options)


class AsyncRewardFunction(JudgeReward):
    """An async TRL reward function backed by charter's judge: `charter.reward_function(...).as_async()`."""

    async def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
    ) -> list[float | None]:
        """One reward per completion, in order (None where the judgment failed), awaited; as `RewardFunction`."""
        records = await self.ascore(prompts, completions, **self._trl_batch(kwargs))
        return _rewards(records, kwargs.get("log_metric"), kwargs.get("log_extra"))


def _rewards(records: list[RewardRecord], log_metric: Any, log_extra: Any = None) -> list[float | None]:
    """The rewards TRL takes, with the batch's failures logged as `charter/judge_failures` (TRL's `log_metric`) and,
    where the scoring judged steps, each completion's per-step rewards as the completions table's `charter/steps`
    column (TRL's `log_extra`: GRPO and RLOO take one reward a completion, so the dense rewards are shown, not
    trained on)."""
    if callable(log_metric):
        log_metric("charter/judge_failures", float(sum(r.reward is None for r in records)))
    if callable(log_extra) and any(r.steps is not None for r in records):
        log_extra("charter/steps", [r.steps for r in records])
    return [r.reward for r in records]


def _role(judge: str | RoleConfig) -> RoleConfig:
    return judge if isinstance(judge, RoleConfig) else RoleConfig(model=judge)


def _settings(role: RoleConfig, scoring: str, judge_settings: dict[str, Any]) -> JudgeSettings:
    """The judge's settings: a `JudgeConfig`'s own when no setting is given, else the given ones."""
    if isinstance(role, JudgeConfig) and role.models is not None:
        raise ConfigError("judge.models: online training takes one judge model (set judge.model)")
    if isinstance(role, JudgeConfig) and not judge_settings:
        return role.settings()
    judge_settings.setdefault("mode", default_mode(scoring))
    return from_arguments(JudgeSettings, **judge_settings)


@public
def reward_function(
    judge: str | RoleConfig = "local:smollm2-135m-instruct",
    constitution: str | Constitution = "harmless",
    scoring: str = SCORE.name,
    *,
    store: str | Path = "charter-rewards",
    cache: str | Path | None = DEFAULT_CACHE,
    budget: Budget | None = None,
    prices: Mapping[str, Price] | None = None,
    max_failures: Annotated[float, Range(ge=0)] = 0.1,
    reference_column: str = "reference",
    reference_model: str | RoleConfig | None = None,
    seed: int = 0,
    concurrency: Annotated[int, Range(ge=1)] = 64,
    group_strategy: GroupStrategy = "all_pairs",
    rank_orders: Annotated[int, Range(ge=1)] = 3,
    checklist_column: str = "checklist",
    aggregation: Aggregation = "explicit",
    checklist_writer: str | RoleConfig | None = None,
    rubric_dropout: Annotated[float, Range(gt=0)] | None = None,
    step_reduction: str = FIRST_VIOLATION.name,
    step_gamma: Annotated[float, Range(ge=0, le=1)] = 0.99,
    **judge_settings: Any,
) -> RewardFunction:
    """A TRL reward function that asks charter's judge, for `GRPOTrainer`, `RLOOTrainer` or online DPO; its
    `as_async()` is the same reward as an async reward function (TRL awaits it on its own event loop).

    Args:
        judge: The judge: a model string, a role config (model, key variable, limits, options) or a `JudgeConfig`,
            whose mode and ensemble settings are then used.
        constitution: A bundled constitution's name, a YAML path or a `Constitution`.
        scoring: A scoring of the table (`TABLE`): `score` (rubric score of each completion), `group` (win rate
            within its prompt's group of completions, both orders), `reference` (P(better than the reference
            answer), both orders), `rank` (the judge orders the group in one call per presentation order; a
            Plackett–Luce fit) or `checklist` (each completion checked against its prompt's checklist in one call;
            the weighted, gated verdicts), or one registered with `register`.
        store: The run directory that keeps the reward store (made when missing).
        cache: The call cache file shared with runs; None for no cache.
        budget: Caps on cost or tokens; reaching one raises `BudgetExceeded`.
        prices: USD per million tokens by model id, for the cost and the budget.
        max_failures: Failed judgments allowed before `TooManyFailures`: a count (>= 1) or a share (< 1, checked
            from 20 rewards on).
        reference_column: The dataset column with the reference answer (`reference` scoring).
        reference_model: A model that answers prompts without a reference (`reference` scoring), greedily.
        seed: Seed of the principle draws.
        concurrency: Judge calls in flight at once.
        group_strategy: `group` scoring: `all_pairs` (every two completions) or `circular` (each against its
            neighbours in a random cycle, k pairs, with a Bradley–Terry fit).
        rank_orders: `rank` scoring: shuffled presentation orders per group, one call each.
        checklist_column: `checklist` scoring: the dataset column with each prompt's checklist (a list of items,
            each `{id, requirement, weight or category, gate, verifier, reference}`, or its JSON text), which TRL
            passes to reward functions; a prompt without one takes the constitution's criteria, or the writer's.
        aggregation: `checklist` scoring: `explicit` (the items' weights and gates) or `implicit` (the judge's
            overall score of the response given the checklist, asked in the same call).
        checklist_writer: `checklist` scoring: a model that writes a checklist for a prompt that has none (one
            cached call a prompt).
        rubric_dropout: `checklist` scoring: the items of each checklist left out at each step (a share below 1, or
            a whole count), drawn from the seed, the step and the prompt; at least one item is kept. None: every item.
        step_reduction: `steps` scoring: how the steps' verdicts make a trajectory's one reward (`REDUCTIONS`):
            `first_violation` (0 where a step violates a principle, 1 where every step was judged and none does, None
            where a step's verdict failed first), `mean` (the share of steps that violate nothing) or `discounted`
            (sum(gamma^t r_t) / sum(gamma^t) over the step rewards r_t from the first step); `mean` and `discounted`
            are None where any step's verdict failed. The per-step rewards are in each record (`steps`) whatever the
            reduction.
        step_gamma: `steps` scoring with `step_reduction="discounted"`: the discount gamma, in 0..1.
        **judge_settings: `JudgeSettings` fields: mode, scale, rating, orders, principles_per_pair, principles, ...
            (mode defaults to `score` for `score` scoring and to `logprobs` otherwise).

    Returns:
        The reward function: call it as TRL does, `fn(prompts=..., completions=..., **columns)`; it returns one
        reward in 0..1 per completion, None where the judgment failed. `fn.score(prompts, completions)` gives the
        reward records instead.

    Raises:
        ArgumentError: A scoring the table of scorings (`TABLE`) does not have.
        ConfigError: A judge mode that does not fit the scoring, `max_failures` negative or not finite,
            `concurrency` below 1, a `RANK`/`WORLD_SIZE` that is no number, or a cost cap (`budget.max_cost_usd`)
            with a model that `prices` does not price (declare a free one `Price(input=0, output=0)`). Called, the
            function raises it for a completion that is neither a string nor a list of `{role, content}` messages
            (naming its index), and for prompts, completions and the reference column of different lengths.
        ConstitutionError: The constitution cannot be loaded.
    """
    if scoring not in TABLE:
        raise ArgumentError("scoring", f"expected one of {', '.join(TABLE)}, got {scoring!r}")
    entry = TABLE[scoring]
    check_settings(max_failures, concurrency)
    ranks()  # RANK and WORLD_SIZE read as numbers, the rank below the size
    role = _role(judge)
    settings = _settings(role, scoring, judge_settings)
    const = load_constitution(constitution)
    others = {"reference_model": reference_model, "checklist_writer": checklist_writer}
    roles = [("judge", role), *[(name, _role(m)) for name, m in others.items() if m is not None]]
    blind = blind_cap(budget, dict(prices or {}), roles)
    if blind is not None:
        raise ConfigError(blind)
    call_cache = CallCache(Path(cache).expanduser()) if cache is not None else None
    meter = UsageMeter(dict(prices or {}), budget)
    model = get_model(role.backend(), cache=call_cache, meter=meter, role="judge")
    reference = None
    if reference_model is not None:
        reference = get_model(_role(reference_model).backend(), cache=call_cache, meter=meter, role="reference")
    writer, writing = None, WRITER_PARAMS
    if checklist_writer is not None:
        writer_role = _role(checklist_writer)
        writer = get_model(writer_role.backend(), cache=call_cache, meter=meter, role="checklist_writer")
        writing = writer_params(writer_role)
    misfit = scoring_misfit(scoring, settings)
    if misfit:
        raise ConfigError(misfit)
    dropout = None if rubric_dropout is None else RubricDropout(checked_dropout(rubric_dropout, scoring))
    checked_reduction(step_reduction, scoring)
    options = ScoringOptions(
        reference_column=reference_column,
        reference_model=reference,
        group_strategy=group_strategy,
        rank_orders=rank_orders,
        checklist_column=checklist_column,
        aggregation=aggregation,
        checklist_writer=writer,
        checklist_writer_params=writing,
        dropout=dropout,
        step_reduction=step_reduction,
        step_gamma=step_gamma,
    )
    fingerprint = reward_fingerprint(
        model,
        const,
        settings,
        seed,
        scoring,
        reference.served_id if reference else None,
        **entry.fingerprinted(options),
    )
    session = JudgeSession(
        model,
        const,
        settings,
        Path(store),
        basis=scoring,
        fingerprint=fingerprint,
        seed=seed,
        max_failures=max_failures,
        concurrency=concurrency,
        reference_model=reference,
    )
    return RewardFunction(session, entry, options)


def checked_dropout(drop: float, scoring: str) -> float:
    """A rubric dropout fit for `scoring`: a share below 1 or a whole count, with the `checklist` scoring (a
    `ConfigError` otherwise)."""
    if not TABLE[scoring].reads_checklists:
        raise ConfigError(f"rubric_dropout leaves out checklist items: scoring {scoring} reads no checklist")
    if drop >= 1 and drop != int(drop):
        raise ConfigError(f"rubric_dropout: a share below 1 or a whole count of items, not {drop:g}")
    return drop


def reduction_misfit(scoring: str, reduction: str) -> str | None:
    """Why `reduction` cannot reduce `scoring`'s rewards (a reduction other than the default needs `steps`), or
    None."""
    if reduction != FIRST_VIOLATION.name and scoring != STEPS.name:
        return f"{reduction} reduces per-step verdicts: scoring {scoring} judges no steps"
    return None


def checked_reduction(name: str, scoring: str) -> str:
    """A step reduction fit for `scoring`: a name of `REDUCTIONS` that `reduction_misfit` lets pass (an
    `ArgumentError` otherwise)."""
    if name not in REDUCTIONS:
        raise ArgumentError("step_reduction", f"expected one of {', '.join(REDUCTIONS)}, got {name!r}")
    misfit = reduction_misfit(scoring, name)
    if misfit:
        raise ArgumentError("step_reduction", misfit)
    return name


def check_step_reduction(scoring: str, reduction: str) -> None:
    """A config's `step_reduction` fits its scoring (a `LocatedValueError` at `step_reduction` otherwise)."""
    misfit = reduction_misfit(scoring, reduction)
    if misfit:
        raise LocatedValueError(misfit, ("step_reduction",))


def reward_for(config: Any, store: str | Path, **extra: Any) -> RewardFunction:
    """The reward function a `charter train grpo` config describes (judge, constitution, scoring, costs, group
    settings), as training and the reward server build it; `extra` adds `reward_function` arguments (a budget, a
    concurrency)."""
    named = ("cache", "prices", "max_failures", "reference_model", "seed", "group_strategy", "rank_orders",
             "step_reduction", "step_gamma")  # fmt: skip
    settings = {name: getattr(config, name) for name in named}
    section = getattr(config, "checklist", None)
    if section is not None and config.scoring == CHECKLIST.name:
        settings |= {"checklist_column": section.column, "aggregation": section.aggregation,
                     "checklist_writer": section.writer}  # fmt: skip
    mitigations = getattr(config, "mitigations", None)
    if mitigations is not None and mitigations.rubric_dropout is not None:
        settings["rubric_dropout"] = mitigations.rubric_dropout
    return reward_function(config.judge, config.constitution, config.scoring, store=store, **settings, **extra)
