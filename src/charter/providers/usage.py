"""Token usage and cost accounting per role and model, and the budget cap."""

from __future__ import annotations

import threading
from collections.abc import Callable

from pydantic import Field

from charter.errors import BudgetExceeded
from charter.interrupt import StopRequest
from charter.providers.prices import Price, normalise_keys, resolve_price
from charter.records import UsageRow
from charter.yamlio import ConfigModel

__all__ = ["Budget", "Price", "UsageMeter"]


class Budget(ConfigModel):
    """Caps that stop a run cleanly with `BudgetExceeded`, keeping everything done so far."""

    max_cost_usd: float | None = Field(default=None, ge=0)
    """Stop once the priced cost reaches this. The cap sees only what is priced: a config with a cost cap and a role
    whose model has no price (in `prices` or genai-prices) is refused; a free one is declared with a price of 0
    (`{input: 0, output: 0}`), and a model run in this process (`local:`, `scripted:`) needs none."""
    max_tokens: int | None = Field(default=None, ge=0)
    """Stop once total tokens (all roles, cache hits excluded) reach this."""


#: The fields of a `UsageRow` that are counts (every one but role and model).
COUNTS: tuple[str, ...] = tuple(name for name in UsageRow.model_fields if name not in ("role", "model"))


Sink = Callable[[UsageRow], None]


class UsageMeter:
    """Counts tokens and cost per (role, model id); checks the budget before each call.

    With a `sink`, every call is also handed over as it is counted (a one-call `UsageRow`), so that a run
    can keep its usage durably, call by call, and a killed process loses none of what it paid for.
    """

    def __init__(
        self, prices: dict[str, Price] | None = None, budget: Budget | None = None, sink: Sink | None = None
    ) -> None:
        self.prices = normalise_keys(prices or {})
        self._price_of: dict[str, Price] = {}
        self.budget = budget or Budget()
        self.sink = sink
        self._sums: dict[tuple[str, str], list] = {}
        """The running counts of each (role, model), in `COUNTS` order: plain numbers added into on every call (ten
        attribute writes on a `UsageRow` cost more than the rest of counting a call)."""
        self._lock = threading.Lock()
        self.prior_cost = 0.0
        """Cost spent by earlier processes of the same run (resume), counted against the budget."""
        self.prior_tokens = 0
        """Tokens spent by earlier processes of the same run (resume), counted against the budget."""
        self.stop: StopRequest | None = None
        """A run's stop request (Ctrl-C, SIGTERM): once asked for, no new call starts (`check` raises), while the
        calls in flight finish into the cache."""

    def price_of(self, model_id: str) -> Price:
        """The model's price: the config's (under its id or bare name), else genai-prices', else zero."""
        price = self._price_of.get(model_id)
        if price is None:  # looked up once a model: every call is counted here
            price = self._price_of[model_id] = resolve_price(self.prices, model_id)[0]
        return price

    def record(
        self,
        role: str,
        model_id: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached: bool,
        estimated: bool = False,
        batched: bool = False,
        cache_read: int = 0,
        cache_write: int = 0,
    ) -> None:
        """Count one call. `prompt_tokens` is every input token; `cache_read` and `cache_write` are the ones of
        them the provider read from or wrote to its prompt cache (billed at their own prices)."""
        with self._lock:
            if cached:
                event = UsageRow(role=role, model=model_id, cached=1)
            else:
                price = self.price_of(model_id)
                share = price.batch if batched else 1.0
                event = UsageRow(
                    role=role,
                    model=model_id,
                    calls=1,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cost_usd=price.cost(prompt_tokens, completion_tokens, cache_read, cache_write) * share,
                    estimated=int(estimated),
                    cache_read_tokens=cache_read,
                    cache_write_tokens=cache_write,
                    cache_saved_usd=price.saved(cache_read, cache_write) * share,
                )
            self._count(event)
        if self.sink is not None:
            self.sink(event)

    def record_retry(self, role: str, model_id: str) -> None:
        """Count a request sent again after a failure worth retrying."""
        event = UsageRow(role=role, model=model_id, retries=1)
        with self._lock:
            self._count(event)
        if self.sink is not None:
            self.sink(event)

    def _count(self, event: UsageRow) -> None:
        """Add one event's counts into its (role, model)'s tally (under the lock)."""
        key = (event.role, event.model)
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = [getattr(event, name) * 0 for name in COUNTS]
        for i, name in enumerate(COUNTS):
            sums[i] += getattr(event, name)

    @property
    def tallies(self) -> dict[tuple[str, str], UsageRow]:
        """The running counts of each (role, model) so far, as `UsageRow`s (made on each read)."""
        return {
            key: UsageRow(role=key[0], model=key[1], **dict(zip(COUNTS, sums, strict=True)))
            for key, sums in list(self._sums.items())
        }

    def _total(self, *names: str) -> float:
        at = [COUNTS.index(name) for name in names]
        return sum(sums[i] for sums in list(self._sums.values()) for i in at)

    def describe(self) -> str:
        """Calls, cache hits, retries and cost so far, in a few words (for progress lines)."""
        tallies = list(self.tallies.values())
        calls, cached = sum(t.calls for t in tallies), sum(t.cached for t in tallies)
        return (
            f"{calls} calls ({cached} cached), {sum(t.retries for t in tallies)} retries, "
            f"${self.prior_cost + self.total_cost:.4f}"
        )

    @property
    def total_retries(self) -> int:
        return int(self._total("retries"))

    @property
    def total_cost(self) -> float:
        return float(self._total("cost_usd"))

    @property
    def total_tokens(self) -> int:
        return int(self._total("prompt_tokens", "completion_tokens"))

    def check(self) -> None:
        """Before a call: raise `Interrupted` once a stop is requested, `BudgetExceeded` if a cap is reached."""
        if self.stop is not None and self.stop.requested:
            raise self.stop.error()
        cap = self.budget
        if cap.max_cost_usd is not None:
            cost = self.prior_cost + self.total_cost
            if cost >= cap.max_cost_usd:
                raise BudgetExceeded(f"budget reached: ${cost:.4f} of ${cap.max_cost_usd:.4f}; what is done is kept")
        if cap.max_tokens is not None:
            tokens = self.prior_tokens + self.total_tokens
            if tokens >= cap.max_tokens:
                raise BudgetExceeded(f"budget reached: {tokens} of {cap.max_tokens} tokens; what is done is kept")

    def rows(self) -> list[UsageRow]:
        """One row per (role, model) for reports and the run store."""
        return [t.model_copy() for _, t in sorted(self.tallies.items())]
