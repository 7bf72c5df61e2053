"""The calls a run makes for one prompt, found by walking the prompt through the stages' own functions (the chain,
the samples, the judge with its ensemble, orders, panel and warm-then-fan-out scheduling) with stand-in models that
answer at once and record every request: what the forecast counts is what the run would ask, in the order it would
ask it, without a model call.

A policy's or critic's reply is a placeholder (`Replies`) standing for a text of unknown length, so that the
prompts that embed it (a critique, a judge's comparison) are laid out as the run lays them out; the forecast gives
each placeholder a length per scenario. A judge's reply is the scripted `cai` judge's, which every mode can read; a
checklist call's is written by the table of modes (`scripted_reply`), every item met."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from charter.checklist import Checklist, ChecklistItem, checklist_from_criteria, checklist_from_rows
from charter.checklist.author import read_writer_prompt, write_for_prompt
from charter.checklist.prompt import read_checklist_prompt
from charter.constitutions import Constitution
from charter.critique.chain import run_chain
from charter.judge.judgment import ChecklistCriteria
from charter.judge.modes import scripted_reply
from charter.judge.pairwise import judge_pair, principle_key, principles_for
from charter.judge.panel import Panel
from charter.judge.score import rank_samples
from charter.judge.settings import JudgeSettings
from charter.pipeline.config import RoleConfig, RunConfig
from charter.pipeline.work import judge_settings
from charter.preference.pairs import policy_samples, revision_pair, sample_pair, sample_pairs
from charter.providers import ChatModel, ChoiceProbs, Completion, Messages, SamplingParams, ScriptedModel
from charter.providers.prices import model_id_of
from charter.records import Pair, Prompt

#: Turns of the event loop a stand-in waits before it answers, so that calls sent together all go out first, those
#: of gathers nested a few deep included (a judge's other order, asked at the same time as the first order's calls).
_SETTLE = 4
#: What a stand-in judge answers each item of a checklist call: met, so that the reply is read at the first try.
AGREES = {"reason": "", "verdict": "yes"}
#: A placeholder in a text: `\x00N\x00` stands for reply N.
PLACEHOLDER = re.compile(r"(\x00\d+\x00)")


class Replies:
    """The placeholders of model replies and the `max_tokens` each was asked with (its length is set later, per
    scenario). Their numbers never repeat, so that two replies are never taken for the same text."""

    def __init__(self) -> None:
        self.budgets: dict[str, int] = {}
        self._numbers = itertools.count()

    def new(self, max_tokens: int) -> str:
        marker = f"\x00{next(self._numbers)}\x00"
        self.budgets[marker] = max_tokens
        return marker


@dataclass
class Call:
    """One request the run would send: who sends it, to which model, what it asks, and when."""

    role: str
    """The role as the usage meter names it: policy, critic, judge."""
    spec: RoleConfig
    request: Messages
    max_tokens: int
    """The reply's cap: its `max_tokens` (1 for next-token probabilities)."""
    budget: int
    """What a reply's expected length is a share of: `max_tokens`, or for a judge's text reply the mode's own reply
    budget where that is smaller (a verdict is a letter whatever `max_tokens` allows)."""
    logprobs: bool
    """Next-token probabilities: one token back, never asked again."""
    reasks: int = 0
    """How often the judge would ask again where it cannot read the reply (`max_reasks`; the high end only)."""
    started: int = 0
    answered: int = 0
    """When it was sent and answered, on one clock: a provider reads a prefix from its cache only for a call sent
    after the call that wrote it was answered."""


@dataclass
class Recorder:
    """The calls of one walk, in the order they were sent, and the clock of sends and answers."""

    calls: list[Call] = field(default_factory=list)
    clock: int = 0
    seen: set[tuple[str, str]] = field(default_factory=set)
    call_cache: bool = True
    """Whether the run has a call cache: a request asked again with the same settings is answered by it, free."""

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def fresh(self, model: str, request: Messages, settings: str) -> bool:
        """Whether the request goes to the provider (False: the call cache answers a repeat)."""
        key = (model, repr([(m.role, m.content) for m in request]) + settings)
        if key in self.seen and self.call_cache:
            return False
        self.seen.add(key)
        return True


class PlanningModel(ChatModel):
    """A role's model as the walk sees it: records each request it gets and answers at once, after yielding once so
    that calls sent together are all sent before any is answered."""

    supports_logprobs = True

    def __init__(
        self,
        role: str,
        spec: RoleConfig,
        recorder: Recorder,
        replies: Replies,
        record: bool = True,
        reasks: int = 0,
        budget: int | None = None,
        items: int = 0,
    ) -> None:
        super().__init__(spec.model)
        self.role, self.spec, self.recorder, self.replies = role, spec, recorder, replies
        self.record, self.reasks, self.budget = record, reasks, budget
        self.items = items
        """A checklist writer's stand-in: the items its reply lists."""
        self.judge = ScriptedModel("cai") if role == "judge" else None

    @property
    def model_id(self) -> str:
        return model_id_of(self.spec.model)

    @property
    def served_id(self) -> str:
        return self.model_id

    async def _send(self, request: Messages, max_tokens: int, logprobs: bool, settings: str) -> None:
        recorder = self.recorder
        if not (self.record and recorder.fresh(self.spec.model, request, settings)):
            return
        budget = min(max_tokens, self.budget or max_tokens)
        call = Call(self.role, self.spec, list(request), max_tokens, budget, logprobs, 0 if logprobs else self.reasks)
        call.started = recorder.tick()
        recorder.calls.append(call)
        for _ in range(_SETTLE):  # the calls sent together all go out before the first answer
            await asyncio.sleep(0)
        call.answered = recorder.tick()

    async def generate(self, requests: Sequence[Messages], params: SamplingParams) -> list[Completion]:
        out = []
        for request in requests:
            await self._send(request, params.max_tokens, False, params.model_dump_json())
            shown = read_checklist_prompt(request[-1].content) if self.judge is not None else None
            listed = read_writer_prompt(request[-1].content) if self.role == "checklist" else None
            if shown is not None:  # a checklist call: a readable answer, as the table writes it, so that no re-ask
                text = scripted_reply(request[-1].content, {item: AGREES for item, _ in shown[0]})
            elif listed:  # a writer's call: a readable checklist (its length is the reply's budget share)
                text = json.dumps({"items": [_stand_in_row(i, listed) for i in range(self.items)]})
            elif self.judge is not None:
                [answer] = await self.judge.generate([request], params)
                text = answer.text
            else:
                text = self.replies.new(params.max_tokens)
            out.append(Completion(text, self.model_id))
        return out

    async def choice_logprobs(self, request: Messages, options: Sequence[str]) -> ChoiceProbs:
        await self._send(request, 1, True, repr(tuple(options)))
        judge = self.judge or ScriptedModel("cai")
        answer = await judge.choice_logprobs(request, options)
        return ChoiceProbs(answer.probs, self.model_id, raw_logprobs=answer.raw_logprobs)


@dataclass
class Walk:
    """What a walk needs of the run config, worked out once for every prompt."""

    config: RunConfig
    constitution: Constitution
    settings: JudgeSettings
    make_items: bool
    judging: bool

    @classmethod
    def of(cls, config: RunConfig, constitution: Constitution) -> Walk:
        return cls(config, constitution, judge_settings(config), "critique" in config.stages, "judge" in config.stages)

    def models(self, recorder: Recorder, replies: Replies) -> tuple[PlanningModel, PlanningModel, ChatModel | Panel]:
        """The stand-ins of the policy, the critic and the judge (a panel of its members)."""
        config, settings = self.config, self.settings
        reasks = 0 if settings.asks_logprobs else settings.max_reasks
        policy = PlanningModel("policy", config.policy, recorder, replies, record=self.make_items)
        critic = PlanningModel("critic", config.critic_role, recorder, replies, record=self.make_items)
        budget = settings.reply.max_tokens
        members = [
            PlanningModel("judge", m, recorder, replies, reasks=reasks, budget=budget) for m in config.judge.members
        ]
        judge: ChatModel | Panel = members[0] if config.judge.models is None else Panel(members, config.judge.weights)
        return policy, critic, judge

    def writer(self, recorder: Recorder, replies: Replies) -> PlanningModel | None:
        """The stand-in of the checklist writer (a `checklist:` section of source `model`), else None. Its re-asks
        of an unreadable reply (`checklist.max_reasks`) are counted at the high end, as the judge's are."""
        section = self.config.checklist
        if section is None or section.source != "model" or section.model is None:
            return None
        return PlanningModel(
            "checklist", section.model, recorder, replies, reasks=section.max_reasks, items=section.max_items
        )


#: A stand-in item of a checklist a model would write (source `model`): about the length of a written one.
STAND_IN_ITEM = "The response does what this item of the prompt's checklist asks, in a sentence of this length."


def _stand_in_row(index: int, principle_ids: list[str]) -> dict[str, object]:
    """Item `index` of a stand-in writer's reply, naming one of the principles its prompt lists."""
    pid = principle_ids[index % len(principle_ids)]
    return {"id": f"item-{index + 1}", "requirement": STAND_IN_ITEM, "principle_id": pid, "category": "important",
            "reference": None}  # fmt: skip


def forecast_checklist(config: RunConfig, constitution: Constitution, prompt: Prompt) -> Checklist:
    """The checklist a judge call of mode `checklist` would carry for `prompt`: the constitution's criteria, the
    prompt's column, or (source `model`, written during the run) `max_items` stand-in items of a written one's size.
    The writer's own call a prompt is counted apart, under its role (`write_checklist`)."""
    section = config.checklist
    if section is not None and section.source == "criteria":
        return checklist_from_criteria(constitution)
    if section is not None and section.source == "column" and prompt.checklist:
        return checklist_from_rows(prompt.checklist, f"{prompt.prompt_id}.checklist")
    n = section.max_items if section is not None else 8
    items = [ChecklistItem(id=f"item-{i + 1}", requirement=STAND_IN_ITEM, weight=1.0) for i in range(n)]
    return Checklist(items=items, source="model")


def forecast_criteria(walk: Walk, prompt: Prompt) -> ChecklistCriteria | None:
    """The per-prompt criteria the judge's mode needs besides the pair, as its table entry says (`needs_context`):
    the prompt's checklist (`forecast_checklist`) with the `checklist:` section's aggregation; None for a mode that
    judges by the constitution's principles alone. The judge's calls are then the mode's own (`judge_pair` and
    `rank_samples` ask the entry), so a new mode is walked as the run judges it."""
    if not walk.settings.mode_entry.needs_context:
        return None
    section = walk.config.checklist
    aggregation = section.aggregation if section is not None else "explicit"
    return ChecklistCriteria(forecast_checklist(walk.config, walk.constitution, prompt), aggregation)


async def write_checklist(walk: Walk, prompt: Prompt, writer: PlanningModel) -> None:
    """The writer's call for one prompt, as `charter.checklist.store.Checklists` makes it (the checklist
    package's writer, the principles drawn for the prompt)."""
    config, constitution = walk.config, walk.constitution
    assert config.checklist is not None and config.checklist.model is not None
    ids = principles_for(constitution, walk.settings, prompt.prompt_id, config.seed)
    principles = [(pid, constitution.principle(pid).description) for pid in ids]
    await write_for_prompt(writer, prompt.messages, principles, config.checklist, config.checklist.model.params)


async def prompt_calls(walk: Walk, prompt: Prompt, replies: Replies) -> list[Call]:
    """The calls the run would send for one prompt (as `charter.pipeline.work.Work.prompt` makes its items), in the
    order it would send them: the checklist writer's first (source `model`: one call a prompt), then the chain's,
    the samples' and the judge's."""
    config, constitution, settings = walk.config, walk.constitution, walk.settings
    recorder = Recorder(call_cache=config.cache is not None)
    policy, critic, judge = walk.models(recorder, replies)
    writer = walk.writer(recorder, replies)
    if writer is not None:
        await write_checklist(walk, prompt, writer)
    criteria = forecast_criteria(walk, prompt)
    pairs: list[Pair] = []
    if "revision" in config.pairs.kinds:
        chain = await run_chain(
            policy,
            critic,
            constitution,
            prompt.prompt_id,
            prompt.messages,
            config.critique,
            config.policy.params,
            config.critic_role.params,
            config.seed,
            "",
            prompt.tools,
        )
        pair = revision_pair(chain)
        pairs += [pair] if pair else []
    if "samples" in config.pairs.kinds:
        samples = await policy_samples(
            policy,
            constitution,
            prompt.prompt_id,
            prompt.messages,
            config.pairs.k,
            config.samples_params(),
            "",
            prompt.tools,
        )
        if not settings.rates_alone:
            pairs += sample_pairs(prompt.prompt_id, prompt.messages, samples)
        elif walk.judging:
            assert not isinstance(judge, Panel)  # the config refuses mode score for a panel
            ids = principles_for(constitution, settings, prompt.prompt_id, config.seed)
            ranked = await rank_samples(judge, constitution, prompt.messages, samples, ids, settings, criteria)
            if ranked:
                pairs.append(sample_pair(prompt.prompt_id, prompt.messages, ranked[0][0], ranked[-1][0]))
    if walk.judging:

        async def judged(pair: Pair) -> None:
            ids = principles_for(constitution, settings, principle_key(pair, settings), config.seed)
            await judge_pair(judge, constitution, pair, settings, ids, "", criteria)

        await asyncio.gather(*(judged(pair) for pair in pairs))
    return recorder.calls
