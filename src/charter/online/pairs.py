"""Online DPO's preferences: charter's pairwise judge on the two completions of each prompt, and the DPO loss with
the pairs the judge did not decide masked out.

A pair is trained on only when its judgment is decided: it did not fail, the two presentation orders pick the same
winner (when both are asked), and |P(first better) - 0.5| reaches `min_confidence`. A failed pair is masked with
reason `failed`, any other undecided one with reason `undecided`; a masked pair adds nothing to the loss and nothing
to its gradient (the loss is the mean over the decided pairs), never a made-up preference.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from charter.checklist.aggregate import TIE_EPS, preference
from charter.checklist.check import check_response
from charter.constitutions import Constitution
from charter.errors import ConfigError
from charter.judge.panel import Panel
from charter.judge.settings import JudgeSettings
from charter.logistic import sigmoid
from charter.online.mitigate import (
    MITIGATIONS_KEY,
    Mitigations,
    capped,
    length_penalty,
    shows_signature,
    words,
)
from charter.providers import ManagedModel
from charter.providers.usage import UsageMeter
from charter.records import Failure, Judgment, Message, RewardRecord, UsageRow, as_dicts, fingerprint
from charter.reward.checklisted import (
    CHECKLIST,
    NoChecklist,
    checklist_fingerprint,
    prompt_checklist,
    reward_checklist,
    with_dropout,
)
from charter.reward.function import comparing_misfit
from charter.reward.scoring import ScoringOptions
from charter.reward.session import JudgeSession, SessionView, prompt_messages, reward_fingerprint, text_of


def _score_rules(mitigations: Mitigations | None) -> dict[str, Any]:
    """The mitigations that change a checklist-scored pair's P (the length penalty, the signature cap), as the
    reward fingerprint names them; {} for none."""
    if mitigations is None:
        return {}
    settings = mitigations.settings()
    return {k: settings[k] for k in ("length_control", "signature_cap") if k in settings}


@dataclass(frozen=True)
class Decision:
    """The judge's decision on one pair of completions."""

    first_wins: bool | None
    """True: the first completion is preferred; False: the second; None: masked."""
    masked: str | None
    """None for a decided pair, else `failed` or `undecided`."""


def decide(judgment: Judgment, min_confidence: float) -> Decision:
    """Whether a judgment decides its pair: not failed, the orders agreeing, confident enough."""
    if judgment.status != "ok" or judgment.p_a is None:
        return Decision(None, "failed")
    return decide_p(judgment.p_a, judgment.position_consistent is not False, min_confidence)


def decide_p(p: float, consistent: bool, min_confidence: float) -> Decision:
    """Whether P(first better) decides its pair: the judge's orders agreeing, |p - 0.5| at least min_confidence."""
    if not consistent or abs(p - 0.5) < max(min_confidence, 1e-12):
        return Decision(None, "undecided")
    return Decision(p > 0.5, None)


@dataclass(frozen=True)
class RewardModelVote:
    """A reward model beside (or instead of) the judge in online DPO: its P(first better) is the Bradley–Terry
    probability of its two scores, sigmoid(r_first - r_second), pooled with the judge's P by weight."""

    scorer: Any
    """A `charter.reward_model.scorer.RewardScorer`."""
    source: str
    """The reward model's folder or Hub id (in the fingerprint and, without the judge, as the records' model)."""
    weight: float
    """Its weight in the pool."""
    judge_weight: float
    """The judge's weight in the pool (0: the judge is not asked)."""

    def p_first(
        self, prompts: Sequence[list[Message]], firsts: Sequence[str], seconds: Sequence[str]
    ) -> list[float | None]:
        """sigmoid(r_first - r_second) of each pair, the model scoring prompt + completion as one conversation; None
        where a score is not a finite number."""

        def chats(texts: Sequence[str]) -> list[list[dict[str, str]]]:
            return [[*as_dicts(prompt), {"role": "assistant", "content": t}] for prompt, t in zip(prompts, texts)]

        scores = self.scorer.score(chats(firsts) + chats(seconds))
        n = len(firsts)
        return [sigmoid(a - b) if math.isfinite(a - b) else None for a, b in zip(scores[:n], scores[n:])]

    def pool(self, judge_p: float | None, model_p: float) -> float:
        """The weighted mean of the judge's P (when asked) and the reward model's."""
        if judge_p is None or not self.judge_weight:
            return model_p
        return (self.judge_weight * judge_p + self.weight * model_p) / (self.judge_weight + self.weight)


def masked_dpo_loss(
    chosen: Any, rejected: Any, ref_chosen: Any, ref_rejected: Any, trained: Any, beta: float, loss_type: str
) -> Any:
    """TRL's online DPO loss (sigmoid or IPO) over the pairs where `trained` is true, averaged over them; zero with
    a gradient of zero when no pair is trained. The arguments are per-pair sums of log-probabilities."""
    import torch.nn.functional as F

    # a masked pair's logit is replaced before the loss, so that its value (even inf or NaN) reaches neither the
    # loss nor its gradient
    logits = ((chosen - rejected) - (ref_chosen - ref_rejected)).where(trained, chosen.new_zeros(()))
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"invalid loss type {loss_type}")
    weights = trained.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


class MeteredPanel(Panel):
    """A panel of judge models that share one usage meter and call cache, so that it stands where one judge model
    stands in the reward machinery (its meter's budget, its cache's flush)."""

    def __init__(
        self, members: Sequence[ManagedModel], weights: Sequence[float] | None, meter: UsageMeter, cache: Any
    ) -> None:
        super().__init__(members, weights)
        self.meter, self.cache = meter, cache


class PairJudge(SessionView):
    """The pairwise judge of online DPO: each pair judged (both orders, the settings' mode), stored in the reward
    store (scoring `pair`, the first completion with P(it is better), the second as `reference`), and decided.

    With `checklist` options, each completion is instead checked against its prompt's checklist (one call each) and
    the pair's P(first better) is the checklists' preference (`charter.checklist.preference`): 0.5 plus half the
    score difference; a pair where either completion has no score is masked as failed.

    It owns a judge session (`session`, basis `pair`); `judge`, `constitution`, `store`, `rank`, `ranks` and `close`
    are the session's (`SessionView`)."""

    def __init__(
        self,
        judge: ManagedModel,
        constitution: Constitution,
        settings: JudgeSettings,
        basis: Literal["pair"],
        store_dir: Path,
        *,
        seed: int = 0,
        max_failures: float = 0.1,
        concurrency: int = 64,
        min_confidence: float = 0.0,
        reward_model: RewardModelVote | None = None,
        checklist: ScoringOptions | None = None,
        mitigations: Mitigations | None = None,
    ) -> None:
        misfit = None if checklist is not None else comparing_misfit(settings, f"scoring {basis}")
        if misfit:
            raise ConfigError(misfit)
        extra = checklist_fingerprint(checklist) if checklist is not None else {}
        scored = _score_rules(mitigations)
        if scored:  # the stored P is the mitigated one: a store of the judge's own P is not reused for it
            extra["mitigations"] = scored
        judged = reward_fingerprint(judge, constitution, settings, seed, basis, **extra)
        fp = judged
        if reward_model is not None:  # a stored decision is reused only with the model and weights it was made with
            fp = fingerprint([judged, reward_model.source, reward_model.weight, reward_model.judge_weight])
        session = JudgeSession(
            judge,
            constitution,
            settings,
            store_dir,
            basis=basis,
            fingerprint=fp,
            run_id=f"rewards-{judged[:8]}",
            seed=seed,
            max_failures=max_failures,
            concurrency=concurrency,
            on_usage=self._count_step,
        )
        super().__init__(session)
        self.min_confidence, self.reward_model, self.checklist = min_confidence, reward_model, checklist
        self.mitigations = mitigations if scored or (checklist is not None and checklist.dropout) else None
        #: What the mitigations did, per step (this process): completions over the reference length, their words,
        #: completions capped.
        self.mitigated: dict[int | None, dict[str, float]] = {}
        self._step: int | None = None
        #: Judge calls answered, from the cache, and their cost, per training step (this process).
        self.calls_by_step: dict[int | None, dict[str, Any]] = {}

    @property
    def asks_judge(self) -> bool:
        """Whether the judge is asked (not with a reward model alone, judge weight 0)."""
        return self.reward_model is None or self.reward_model.judge_weight > 0

    def judge_pairs(
        self,
        prompts: Sequence[Any],
        firsts: Sequence[Any],
        seconds: Sequence[Any],
        step: int | None,
        checklists: Sequence[Any] | None = None,
    ) -> list[Decision]:
        """Judge each (prompt, first, second) and return the decisions, in order; stores every judgment and
        raises `TooManyFailures` past `max_failures`. `checklists`: each prompt's checklist column value, for
        checklist judging (None: the constitution's criteria, or the writer's)."""
        self._step = step
        self._checklists = list(checklists) if checklists is not None else [None] * len(prompts)
        messages = prompt_messages(prompts)
        a, b = [text_of(t) for t in firsts], [text_of(t) for t in seconds]
        model_ps: list[float | None] = (
            self.reward_model.p_first(messages, a, b) if self.reward_model else [None] * len(a)
        )
        records = self.session.run(self._judge_all(messages, a, b, model_ps, step))
        self.session.finish(records, step)
        self._record_mitigations(step)
        self.session.check_failures()
        return [Decision(None if r.masked else bool((r.reward or 0) > 0.5), r.masked) for r in records]

    def preferences(
        self,
        prompts: Sequence[Any],
        firsts: Sequence[Any],
        seconds: Sequence[Any],
        checklists: Sequence[Any] | None = None,
    ) -> list[float | None]:
        """P(first better) of each pair as `judge_pairs` judges it (the judge, cache and budget of training), neither
        stored nor tallied to a step: pairs that are not trained on (the gold monitor's held-out prompts). None for a
        pair whose judgment failed; 0.5, with no call, for two equal completions."""
        self._step = None
        self._checklists = list(checklists) if checklists is not None else [None] * len(prompts)
        messages = prompt_messages(prompts)
        a, b = [text_of(t) for t in firsts], [text_of(t) for t in seconds]
        model_ps: list[float | None] = (
            self.reward_model.p_first(messages, a, b) if self.reward_model else [None] * len(a)
        )
        records = self.session.run(self._judge_all(messages, a, b, model_ps, None))
        return [r.reward for r in records]

    async def _judge_all(
        self, prompts: list[list[Message]], firsts: list[str], seconds: list[str], model_ps: list[float | None],
        step: int | None,
    ) -> list[RewardRecord]:  # fmt: skip
        if self.checklist is not None:
            rows = enumerate(zip(prompts, firsts, seconds))
            return list(await asyncio.gather(*(self._checklist_pair(i, p, a, b, step) for i, (p, a, b) in rows)))
        work = (self._pair(*args, step) for args in zip(prompts, firsts, seconds, model_ps))
        return list(await asyncio.gather(*work))

    async def _checklist_pair(
        self, index: int, prompt: list[Message], first: str, second: str, step: int | None
    ) -> RewardRecord:
        """A pair judged by checklist: each completion checked (one call each), the preference of their scores."""
        session, options = self.session, self.checklist
        assert options is not None
        checklist = await prompt_checklist(session, options, prompt, self._checklists[index], index)
        if options.dropout is not None and not isinstance(checklist, NoChecklist):  # both completions, the same items
            checklist = with_dropout(options.dropout, checklist, session.seed, step, prompt)
        asked = [m.model_dump() for m in prompt]
        if isinstance(checklist, NoChecklist):
            key = session.key(self.min_confidence, asked, first, second, None)
            return self._record(key, step, prompt, first, None, principle_ids=[], reference=second,
                                failure=checklist.failure, masked="failed")  # fmt: skip
        key = session.key(self.min_confidence, asked, first, second, checklist.fingerprint, options.aggregation)
        ids = sorted({i.principle_id for i in checklist.items if i.principle_id})
        if first.strip() == second.strip():
            return self._record(key, step, prompt, first, 0.5, principle_ids=ids, reference=second, comparisons=0,
                                masked="undecided")  # fmt: skip
        reused = session.stored(key, step)
        if reused is not None:
            return reused
        check = lambda text: session.limited(  # noqa: E731
            check_response(session.judge, prompt, text, checklist, options.aggregation, session.settings.params)
        )
        a, b = await asyncio.gather(check(first), check(second))
        verdicts: dict[str, Any] = dict(principle_ids=ids, reference=second, comparisons=1,
                                        checklist=reward_checklist(a), other_checklist=reward_checklist(b),
                                        cached=a.cached and b.cached)  # fmt: skip
        if a.reward is None or b.reward is None:
            why = a.failure if a.reward is None else f"the other completion: {b.failure}"
            failure = Failure(kind=CHECKLIST.name, message=why or "no checklist score")
            return self._record(key, step, prompt, first, None, failure=failure, masked="failed", **verdicts)
        pref = preference(a.scored(), b.scored())
        p = pref.p_a
        assert p is not None and pref.score_a is not None and pref.score_b is not None
        if _score_rules(self.mitigations):
            verdicts["judge_p"] = p  # the judge's own preference, beside the mitigated one trained on
            p = self._mitigated(prompt, (first, second), (pref.score_a, pref.score_b), checklist, step)
        decision = decide_p(p, True, self.min_confidence)
        return self._record(key, step, prompt, first, p, masked=decision.masked, **verdicts)

    def _mitigated(
        self,
        prompt: list[Message],
        texts: tuple[str, str],
        scores: tuple[float, float],
        checklist: Any,
        step: int | None,
    ) -> float:
        """P(first better) from the two completions' checklist scores after the length penalty and the signature
        cap (`charter.online.mitigate`'s rules, each completion's score alone), as the checklist preference takes it:
        0.5 plus half their difference, cut to 0..1 (a tie within the preference's margin is 0.5)."""
        m = self.mitigations
        assert m is not None
        values: list[float | None] = list(scores)
        lengths = [words(t) for t in texts]
        done = self.mitigated.setdefault(step, {"completions": 0.0, "words": 0.0, "over_reference": 0.0,
                                                "capped": 0.0})  # fmt: skip
        done["completions"] += 2
        done["words"] += sum(lengths)
        if m.length_control is not None:
            lc = m.length_control
            values = length_penalty(values, lengths, lc.per_word, lc.reference_words)
            done["over_reference"] += sum(n > lc.reference_words for n in lengths)
        if m.signature_cap is not None:
            requirements = [{"requirement": item.requirement} for item in checklist.items]
            asked = prompt[-1].content if prompt else ""
            shows = shows_signature([asked] * 2, list(texts), [requirements] * 2, m.signature_cap.signatures)
            values = capped(values, shows, m.signature_cap.value)
            done["capped"] += sum(shows)
        s_a, s_b = (float(v) for v in values if v is not None)
        gap = s_a - s_b
        return 0.5 if abs(gap) < TIE_EPS else min(max(0.5 + gap / 2, 0.0), 1.0)

    def _record_mitigations(self, step: int | None) -> None:
        """What the mitigations did at a training step, into the reward store's meta `mitigations` (as GRPO's)."""
        if self.mitigations is None or step is None:
            return
        entry: dict[str, Any] = {"step": step}
        done = self.mitigated.pop(step, None)
        m = self.mitigations
        if done and m.length_control is not None:
            mean = done["words"] / done["completions"] if done["completions"] else None
            entry["length_control"] = {"over_reference": int(done["over_reference"]), "mean_words": mean}
        if done and m.signature_cap is not None:
            entry["signature_cap"] = {"capped": int(done["capped"])}
        dropout = self.checklist.dropout if self.checklist is not None else None
        if dropout is not None:
            entry["rubric_dropout"] = dropout.drawn.pop(step, {})
        kept = [e for e in self.store.meta(MITIGATIONS_KEY, []) if e.get("step") != step]
        self.store.set_meta(**{MITIGATIONS_KEY: [*kept, entry]})  # a step taken again replaces its entry

    async def _pair(
        self, prompt: list[Message], first: str, second: str, model_p: float | None, step: int | None
    ) -> RewardRecord:
        session = self.session
        ids = session.principles(prompt)
        # the key holds min_confidence: a stored decision is reused only under the threshold it was made with
        key = session.key(self.min_confidence, [m.model_dump() for m in prompt], first, second)
        record: dict[str, Any] = dict(principle_ids=ids, reference=second)
        if self.reward_model is not None:
            record["reward_model_p"] = model_p
        if first.strip() == second.strip():  # nothing to prefer: no call, no gradient
            return self._record(key, step, prompt, first, 0.5, comparisons=0, masked="undecided", **record)
        reused = session.stored(key, step)
        if reused is not None:
            return reused
        if self.reward_model is not None and model_p is None:
            failure = Failure(kind="reward_model", message="the reward model's score is not a finite number")
            return self._record(key, step, prompt, first, None, failure=failure, masked="failed", **record)
        if not self.asks_judge:
            assert self.reward_model is not None and model_p is not None
            decision = decide_p(model_p, True, self.min_confidence)
            return self._record(key, step, prompt, first, model_p, comparisons=0, masked=decision.masked, **record)
        judgment = await session.judge_pair(prompt, first, second, ids)
        decision = decide(judgment, self.min_confidence)
        if decision.masked == "failed" or judgment.p_a is None:
            failure = judgment.failure or Failure(kind="no_judgment", message="the judgment gave no p")
            return self._record(key, step, prompt, first, None, failure=failure, masked="failed", **record)
        p = judgment.p_a
        if self.reward_model is not None and model_p is not None:  # the pooled P decides
            record["judge_p"] = p
            p = self.reward_model.pool(p, model_p)
            decision = decide_p(p, judgment.position_consistent is not False, self.min_confidence)
        return self._record(key, step, prompt, first, p, comparisons=1, masked=decision.masked, **record)

    def _record(
        self, key: str, step: int | None, prompt: list[Message], text: str, reward: float | None, **fields: Any
    ) -> RewardRecord:
        record = self.session.record(key, step, prompt, text, reward, **fields)
        if self.asks_judge or self.reward_model is None:
            return record
        return record.model_copy(update={"judge_model": f"reward model {self.reward_model.source}"})

    def _count_step(self, row: UsageRow) -> None:
        """The judge's calls per training step (called under the session's usage lock)."""
        tally = self.calls_by_step.setdefault(self._step, {"calls": 0, "cached": 0, "cost_usd": 0.0})
        tally["calls"] += row.calls
        tally["cached"] += row.cached
        tally["cost_usd"] += row.cost_usd
