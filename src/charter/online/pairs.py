"""Online DPO's preferences: charter's pairwise judge on the two completions of each prompt, and the DPO loss with
the pairs the judge did not decide masked out.

A pair is trained on only when its judgment is decided: it did not fail, the two presentation orders pick the same
winner (when both are asked), and |P(first better) - 0.5| reaches `min_confidence`. A failed pair is masked with
reason `failed`, any other undecided one with reason `undecided`; a masked pair adds nothing to the loss and nothing
to its gradient (the loss is the mean over the decided pairs), never a made-up preference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from charter.errors import FatalProviderError
from charter.judge.pairwise import judge_pair
from charter.judge.panel import Panel
from charter.messages import as_messages
from charter.online.inputs import text_of
from charter.online.reward import RewardFunction, _hash
from charter.providers import ManagedModel
from charter.providers.usage import UsageMeter
from charter.records import Failure, Judgment, Message, Pair, RewardRecord, UsageRow


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
    if judgment.position_consistent is False or abs(judgment.p_a - 0.5) < max(min_confidence, 1e-12):
        return Decision(None, "undecided")
    return Decision(judgment.p_a > 0.5, None)


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


class PairJudge(RewardFunction):
    """The pairwise judge of online DPO: each pair judged (both orders, the settings' mode), stored in the reward
    store (scoring `pair`, the first completion with P(it is better), the second as `reference`), and decided."""

    def __init__(self, *args: Any, min_confidence: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_confidence = min_confidence
        self._step: int | None = None
        #: Judge calls answered, from the cache, and their cost, per training step (this process).
        self.calls_by_step: dict[int | None, dict[str, Any]] = {}

    def judge_pairs(
        self, prompts: Sequence[Any], firsts: Sequence[Any], seconds: Sequence[Any], step: int | None
    ) -> list[Decision]:
        """Judge each (prompt, first, second) and return the decisions, in order; stores every judgment and
        raises `TooManyFailures` past `max_failures`."""
        if self._loop is None:
            from charter.online.reward import _Loop

            self._loop = _Loop()
        self._step = step
        messages = [as_messages(p if isinstance(p, str) else list(p), f"prompts[{i}]") for i, p in enumerate(prompts)]
        work = self._judge_all(messages, [text_of(t) for t in firsts], [text_of(t) for t in seconds], step)
        records = self._loop.run(work)
        self._finish_call(records, step, None)
        return [Decision(None if r.masked else bool((r.reward or 0) > 0.5), r.masked) for r in records]

    async def _judge_all(
        self, prompts: list[list[Message]], firsts: list[str], seconds: list[str], step: int | None
    ) -> list[RewardRecord]:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._pair(p, a, b, step) for p, a, b in zip(prompts, firsts, seconds))))

    async def _pair(self, prompt: list[Message], first: str, second: str, step: int | None) -> RewardRecord:
        ids = self._principles(prompt)
        # the key holds min_confidence: a stored decision is reused only under the threshold it was made with
        key = _hash(self.fingerprint, self.min_confidence, [m.model_dump() for m in prompt], first, second)
        record = dict(principle_ids=ids, reference=second)
        if first.strip() == second.strip():  # nothing to prefer: no call, no gradient
            return self._record(key, step, prompt, first, 0.5, comparisons=0, masked="undecided", **record)
        reused = self._reuse(key, step)
        if reused is not None:
            return reused
        pair = Pair(pair_id=_hash("pair", first, second), prompt=prompt, a=first, b=second)
        try:
            judgment = await self._guarded(
                judge_pair(self.judge, self.constitution, pair, self.settings, ids, self.fingerprint)
            )
        except FatalProviderError:
            raise
        decision = decide(judgment, self.min_confidence)
        if decision.masked == "failed":
            failure = judgment.failure or Failure(kind="no_judgment", message="the judgment gave no p")
            return self._record(key, step, prompt, first, None, failure=failure, masked="failed", **record)
        return self._record(key, step, prompt, first, judgment.p_a, comparisons=1, masked=decision.masked, **record)

    # -- the judge's calls per step ----------------------------------------------------------------------------
    def _count_usage(self, row: UsageRow) -> None:
        super()._count_usage(row)
        with self._usage_lock:
            tally = self.calls_by_step.setdefault(self._step, {"calls": 0, "cached": 0, "cost_usd": 0.0})
            tally["calls"] += row.calls
            tally["cached"] += row.cached
            tally["cost_usd"] += row.cost_usd
