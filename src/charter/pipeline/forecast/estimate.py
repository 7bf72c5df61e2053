"""The cost before the run: calls, tokens and cost per role and model, with a range, from the config, the prompts
and a token count, before anything is called (`charter run --dry-run`, `charter.estimate`; a run stores its own
forecast when it starts, and its report shows it beside what was billed).

Every prompt counted is walked through the stages' own functions (`calls`), so the calls are those the
run would send; their input is laid against the providers' prompt caches (`cache`) and priced with the
table the run prices its calls with (`prices`, else genai-prices; batch roles at the batch price). Three figures:

- low: text replies at `forecast.output_share_low` of their `max_tokens`; a cached prefix read by every call sent
  after it;
- expected: replies at `forecast.output_share`; a prefix read by the calls sent after it was answered (through a
  batch API, which gathers a step's calls of many prompts into one batch: by the later steps' batches only), and,
  where a heuristic counts the tokens, cached only as far as the provider's count may reach the cache's minimum
  (`forecast.heuristic_error`);
- high: replies at their whole `max_tokens`, no prefix read from a cache, and every judge re-ask
  (`judge.max_reasks`) made.

The forecast is shown as a table before a run (`charter run --dry-run`), and in the run's report beside what the
run was billed (the forecast it stored when it started, `meta.forecast`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from charter.constitutions import Constitution
from charter.pipeline.config import RoleConfig, RunConfig
from charter.pipeline.forecast.calls import Call, Replies, Walk, prompt_calls
from charter.pipeline.forecast.tokens import PromptCache, Seen, TokenCounter, cache_rules, counter_for
from charter.prompts import PromptSet
from charter.providers.config import cap_sight, role_names
from charter.providers.prices import CapSight, PriceSource, model_id_of, normalise_keys, resolve_price
from charter.providers.usage import Budget
from charter.records import Prompt, UsageRow
from charter.runs.items import count_prompts, prompt_records
from charter.runs.store import RunStore, open_store
from charter.runs.usage import stored_usage

T = TypeVar("T")
N = TypeVar("N", int, float)

#: The three figures: the `forecast` field giving the share of its budget a text reply takes (none: all of its
#: `max_tokens`), which cached prefixes a call reads, and whether it is the worst case (every re-ask made, every
#: reply as long as `max_tokens` allows).
SCENARIOS: dict[str, tuple[str, Seen, bool]] = {
    "low": ("output_share_low", "sent", False),
    "expected": ("output_share", "answered", False),
    "high": ("", "none", True),
}
_FIGURES = ("calls", "prompt_tokens", "cache_read_tokens", "cache_write_tokens", "completion_tokens", "cost_usd")
#: Where the run makes calls the forecast does not count.
_SIDE_WORK = {
    "synth": "the synth stage's prompt writer",
    "eval": "the win-rate evaluation (eval)",
}


class _Range(BaseModel, Generic[N]):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    low: N
    """With text replies at `forecast.output_share_low` of their budget, and a cached prefix read by every call sent
    after it."""
    expected: N
    """With text replies at `forecast.output_share` of their budget, and a cached prefix read by the calls sent after
    it was answered (through a batch API: after it was sent)."""
    high: N
    """With every reply as long as its `max_tokens` allows, nothing read from a cache, and every judge re-ask made."""


class Span(_Range[int]):
    """A count at the low end, expected, and at the high end."""


class CostSpan(_Range[float]):
    """A cost in USD at the low end, expected, and at the high end."""


class Figures(BaseModel):
    """Calls, tokens and cost, each low, expected and high. `prompt_tokens` counts every input token;
    `cache_read_tokens` and `cache_write_tokens` are those of them read from or written to the provider's prompt cache
    (billed at their own prices), as `UsageRow` counts them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    calls: Span
    """Calls the provider answers (re-asks of an unreadable judge reply at the high end only)."""
    prompt_tokens: Span
    """Input tokens, cached and written ones included."""
    cache_read_tokens: Span
    """Input tokens read from the provider's prompt cache."""
    cache_write_tokens: Span
    """Input tokens written to the provider's prompt cache (Anthropic)."""
    completion_tokens: Span
    """Output tokens."""
    cost_usd: CostSpan
    """USD at the run's prices (batch roles at the batch share)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    role: str
    """checklist (the checklist writer), policy, critic or judge, as the run's usage names it."""
    model: str
    """Model id."""
    counter: str
    """What counted its tokens: its tokenizer, or the heuristic (`forecast.counter`)."""
    price_source: PriceSource
    """What prices it: the config's `prices`, genai-prices' bundled table, or nothing (0)."""
    prompt_cache: str | None
    """Whose prompt-cache rules its input is laid against (openai, anthropic), or none."""
    batched: bool
    """Its calls go through the provider's batch API, at the batch price."""


class ForecastRow(Figures, _Model):
    """The forecast of one role and model (a judge panel: one row a member)."""


class Forecast(BaseModel):
    """A run's forecast calls, tokens and cost, before anything is called (`charter run --dry-run --json`)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    prompts: int
    """Prompts the forecast is for."""
    counted_prompts: int
    """Prompts walked and counted (spread over the set; the figures are scaled to `prompts`)."""
    stages: list[str]
    """The run's stages."""
    rows: list[ForecastRow]
    """One row per role and model."""
    total: Figures
    """The rows' sums."""
    assumptions: list[str]
    """What the figures take for granted, in words."""
    not_forecast: list[str]
    """Calls the run makes that the figures leave out."""
    budget: str | None = None
    """The warning when `budget.max_cost_usd` or `budget.max_tokens` is below the forecast (null: no cap is)."""
    budget_sees: list[CapSight] = []
    """With `budget.max_cost_usd`: how the cap sees each model role (what prices it, or why it is free); empty
    without a cost cap."""


def spread(items: Iterable[T], count: int, sample: int) -> list[T]:
    """`sample` of `count` items, evenly spread (all of them where there are no more than `sample`)."""
    if count <= sample:
        return list(items)
    picks = {i * count // sample for i in range(sample)}
    return [item for index, item in enumerate(items) if index in picks]


def _reply_tokens(budget: int, share: float) -> int:
    return max(1, round(budget * share))


class _Tally:
    """The sums of one role and model, per figure."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = {s: dict.fromkeys(_FIGURES, 0.0) for s in SCENARIOS}

    def add(self, scenario: str, **values: float) -> None:
        for name, value in values.items():
            self.sums[scenario][name] += value

    def figures(self, scale: float) -> Figures:
        return figures(lambda name, scenario: self.sums[scenario][name] * scale)


def figures(value: Callable[[str, str], float]) -> Figures:
    """The figures whose `value(figure, scenario)` is given: counts rounded to whole ones, costs to 6 places."""

    def span(name: str) -> Span:
        return Span(
            low=round(value(name, "low")), expected=round(value(name, "expected")), high=round(value(name, "high"))
        )

    def cost(name: str) -> CostSpan:
        return CostSpan(
            low=round(value(name, "low"), 6),
            expected=round(value(name, "expected"), 6),
            high=round(value(name, "high"), 6),
        )

    return Figures(
        calls=span("calls"),
        prompt_tokens=span("prompt_tokens"),
        cache_read_tokens=span("cache_read_tokens"),
        cache_write_tokens=span("cache_write_tokens"),
        completion_tokens=span("completion_tokens"),
        cost_usd=cost("cost_usd"),
    )


class _Pricer:
    """Counters, caches and prices of the run's models, and the tally of every call laid against them."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.prices = normalise_keys(config.prices)
        self.counters: dict[str, TokenCounter] = {}
        self.caches: dict[tuple[str, str, bool], PromptCache] = {}
        self.tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
        self.specs: dict[tuple[str, str], RoleConfig] = {}

    def counter(self, spec: RoleConfig) -> TokenCounter:
        if spec.model not in self.counters:
            self.counters[spec.model] = counter_for(spec.model, self.config.forecast)
        return self.counters[spec.model]

    def cache(self, scenario: str, spec: RoleConfig) -> PromptCache:
        """The model's prompt cache in a scenario. A batch API gathers a step's calls of many prompts into one batch
        and runs them in no stated order (`lockstep`): a batched call reads only what an earlier step's batch
        cached."""
        batched = self.config.batch.for_role(spec)
        key = (scenario, spec.model, batched)
        if key not in self.caches:
            rules, seen = cache_rules(spec.model, spec.options), SCENARIOS[scenario][1]
            self.caches[key] = PromptCache(rules, seen, self.counter(spec), lockstep=batched)
        return self.caches[key]

    def lay(self, scenario: str, calls: list[Call], lengths: dict[str, int], share: float, tally: bool) -> None:
        """Bill each call of a prompt in one scenario (`tally`: count it; False primes the caches only)."""
        worst = SCENARIOS[scenario][2]
        for call in calls:
            billed = self.cache(scenario, call.spec).bill(call, lengths)
            if not tally:
                continue
            output = 1 if call.logprobs else _reply_tokens(call.max_tokens if worst else call.budget, share)
            times = 1 + (call.reasks if worst else 0)
            model = model_id_of(call.spec.model)
            price = resolve_price(self.prices, model)[0]
            cost = price.cost(billed.prompt_tokens, output, billed.cache_read, billed.cache_write)
            cost *= price.batch if self.config.batch.for_role(call.spec) else 1.0
            key = (call.role, model)
            self.specs.setdefault(key, call.spec)
            self.tallies[key].add(
                scenario,
                calls=times,
                prompt_tokens=billed.prompt_tokens * times,
                cache_read_tokens=billed.cache_read * times,
                cache_write_tokens=billed.cache_write * times,
                completion_tokens=output * times,
                cost_usd=cost * times,
            )
        for (name, _, _), cache in self.caches.items():
            if name == scenario:
                cache.next_prompt()

    def rows(self, scale: float) -> list[ForecastRow]:
        out = []
        order = {role: index for index, role in enumerate(("checklist", "policy", "critic", "judge"))}
        for (role, model), tally in sorted(self.tallies.items(), key=lambda item: (order[item[0][0]], item[0][1])):
            spec = self.specs[(role, model)]
            out.append(
                ForecastRow(
                    role=role,
                    model=model,
                    counter=self.counter(spec).name,
                    price_source=resolve_price(self.prices, model)[1],
                    prompt_cache=cache_rules(spec.model, spec.options),
                    batched=self.config.batch.for_role(spec),
                    **dict(tally.figures(scale)),
                )
            )
        return out


async def _walk(config: RunConfig, constitution: Constitution, prompts: list[Prompt], primer: Prompt | None) -> _Pricer:
    """Walk the prompts (after the primer, which warms the caches uncounted) and lay their calls in each scenario."""
    walk, replies, pricer = Walk.of(config, constitution), Replies(), _Pricer(config)
    shares = {name: getattr(config.forecast, field) if field else 1.0 for name, (field, _, _) in SCENARIOS.items()}
    for index, prompt in enumerate(itertools.chain([primer] if primer else [], prompts)):
        calls = await prompt_calls(walk, prompt, replies)
        for scenario, share in shares.items():
            lengths = {marker: _reply_tokens(budget, share) for marker, budget in replies.budgets.items()}
            pricer.lay(scenario, calls, lengths, share, tally=primer is None or index > 0)
        replies.budgets.clear()
    return pricer


def _total(rows: list[ForecastRow]) -> Figures:
    return figures(lambda name, scenario: sum(getattr(getattr(row, name), scenario) for row in rows))


def assumptions(config: RunConfig) -> list[str]:
    """What the figures take for granted, in words."""
    share, low = config.forecast.output_share, config.forecast.output_share_low
    return [
        f"text replies take {share:.0%} of their max_tokens ({low:.0%} at the low end, all of it at the high end); "
        "a next-token-probability answer is 1 token",
        "prompt caches (openai: prefixes of 1,024+ tokens in 128-token steps; anthropic: up to charter's "
        "breakpoints): expected, a call reads what calls answered before it was sent cached (a batch: what earlier "
        "batches cached); low, what any call sent before it cached; high, nothing",
        f"a heuristic's token count is within {config.forecast.heuristic_error:.0%} of the provider's either way: a "
        "prefix near a cache's 1,024-token minimum is cached, expected, as far as that range reaches it; at the low "
        "end, wherever it can",
        "the judge's re-asks of a reply it cannot read (judge.max_reasks, and the checklist writer's "
        "checklist.max_reasks) are made at the high end only; "
        "transport retries (429, 5xx) are not billed",
        "nothing is reused: the call cache and the run directory hold none of these calls",
        "every pair the config can make is made (a revision the same as its response, or samples that repeat "
        "each other, make fewer)",
    ]


def not_forecast(config: RunConfig) -> list[str]:
    """The calls of the run that the figures leave out."""
    found = [text for stage, text in _SIDE_WORK.items() if stage in config.stages]
    if "judge" in config.stages and config.judge.audit is not None:
        found.append("the judge audit (judge.audit)")
    if "judge" in config.stages and config.judge.constitution_test is not None:
        found.append("the constitution test (judge.constitution_test)")
    return found


def budget_warning(total: Figures, budget: Budget) -> str | None:
    """One line when a budget cap is below the forecast (expected, or its high end), else None."""
    cost, tokens = total.cost_usd, total.prompt_tokens.high + total.completion_tokens.high
    if budget.max_cost_usd is not None and budget.max_cost_usd < cost.high:
        odds = "will likely stop" if budget.max_cost_usd < cost.expected else "may stop"
        return (
            f"budget.max_cost_usd ${budget.max_cost_usd:.4f} is below the forecast (expected ${cost.expected:.4f}, "
            f"high ${cost.high:.4f}): the run {odds} at the budget before it is done"
        )
    expected = total.prompt_tokens.expected + total.completion_tokens.expected
    if budget.max_tokens is not None and budget.max_tokens < tokens:
        odds = "will likely stop" if budget.max_tokens < expected else "may stop"
        return (
            f"budget.max_tokens {budget.max_tokens} is below the forecast (expected {expected:.0f} tokens, high "
            f"{tokens:.0f}): the run {odds} at the budget before it is done"
        )
    return None


async def forecast(
    config: RunConfig,
    constitution: Constitution,
    prompts: Iterator[Prompt] | Iterable[Prompt],
    available: int,
    count: int,
) -> Forecast:
    """The forecast of a run over `count` prompts, from `available` prompts like them (`prompts`), of which
    `config.forecast.sample` are walked, spread evenly, and scaled to `count`."""
    picked = spread(prompts, available, config.forecast.sample)
    primer = picked[-1] if len(picked) < count and picked else None
    pricer = await _walk(config, constitution, picked, primer)
    rows = pricer.rows(count / len(picked) if picked else 0.0)
    total = _total(rows)
    return Forecast(
        prompts=count,
        counted_prompts=len(picked),
        stages=list(config.stages),
        rows=rows,
        total=total,
        assumptions=assumptions(config),
        not_forecast=not_forecast(config),
        budget=budget_warning(total, config.budget),
        budget_sees=cap_sight(config.prices, role_names(config)) if config.budget.max_cost_usd is not None else [],
    )


def _synthesized(config: RunConfig) -> tuple[list[Prompt], int]:
    """The seed prompts standing for a synth stage's prompt set, and the size of that set."""
    from charter.pipeline.prompts import seeds_config
    from charter.prompts import load_prompts

    assert config.synth is not None
    seeds = load_prompts(seeds_config(config)).rows
    return seeds, config.synth.n + (len(seeds) if config.synth.include_seeds else 0)


def _stored(store: RunStore, sample: int) -> tuple[list[Prompt], int]:
    """A spread of the run's stored prompt set (only those read back), and its size."""
    count = count_prompts(store)
    picked = spread(prompt_records(store), count, sample)
    return [Prompt.model_validate_json(record) for _, record in picked], count


async def run_forecast(
    config: RunConfig, constitution: Constitution, loaded: PromptSet | None = None, store: RunStore | None = None
) -> Forecast:
    """A run's forecast over its prompt set: the synth stage's (its seeds stand for it), the one `loaded` from the
    source, or the one in `store` (else in the run directory's store)."""
    if "synth" in config.stages and config.synth is not None:
        seeds, count = _synthesized(config)
        return await forecast(config, constitution, seeds, len(seeds), count)
    if loaded is not None:
        rows = loaded.rows
        return await forecast(config, constitution, rows, len(rows), len(rows))
    if store is None:
        with open_store(config.run_dir(), read_only=True) as opened:
            return await run_forecast(config, constitution, store=opened)
    picked, count = _stored(store, config.forecast.sample)
    return await forecast(config, constitution, picked, len(picked), count)


#: The forecast's figures the report sets beside the billed ones (UsageRow's names).
COMPARED = ("calls", "prompt_tokens", "cache_read_tokens", "cache_write_tokens", "completion_tokens")


def forecast_table(forecast: Forecast) -> Any:
    """A rich table of the forecast: the expected figures per role and model, the cost with its range."""
    from rich.table import Table

    table = Table(title=f"forecast: {forecast.prompts} prompts ({forecast.counted_prompts} counted)", show_edge=False)
    # nothing is cut: where the terminal is narrow, a model name is folded and a cost's range goes under it, whole
    ranges = {id(f): f"({f.cost_usd.low:.4f}-{f.cost_usd.high:.4f})" for f in [*forecast.rows, forecast.total]}
    table.add_column("role", overflow="fold")
    table.add_column("model", min_width=8, overflow="fold")
    for name in ("calls", "input", "cached\ninput", "cache\nwrites", "output"):
        table.add_column(name, justify="right", overflow="fold")
    table.add_column("USD (low-high)", justify="right", min_width=max(map(len, ranges.values())))
    for row in [*forecast.rows, None]:
        figures = forecast.total if row is None else row
        table.add_row(
            "total" if row is None else row.role,
            "" if row is None else row.model + (" (batch)" if row.batched else ""),
            *(f"{getattr(figures, name).expected:,}" for name in COMPARED),
            f"{figures.cost_usd.expected:.4f} {ranges[id(figures)]}",
        )
    return table


#: How a cost cap sees a role, in words.
_SEEN_AS = {
    "config": "priced by the config",
    "genai-prices": "priced by genai-prices",
    "free": "declared free",
    "in-process": "free, runs in this process",
    "unpriced": "unpriced",
}


def forecast_notes(forecast: Forecast) -> list[str]:
    """What counted and priced each model, and what the forecast leaves out, in a few lines."""
    seen: dict[str, str] = {}
    for row in forecast.rows:
        priced = "not priced (0)" if row.price_source == "unpriced" else f"priced by {row.price_source}"
        seen.setdefault(row.model, f"{row.model}: tokens by {row.counter}; {priced}")
    notes = list(seen.values())
    if forecast.budget_sees:
        sights = ", ".join(f"{s.role} ({s.model}: {_SEEN_AS[s.seen_as]})" for s in forecast.budget_sees)
        notes.append(f"the cost cap sees {sights}")
    if forecast.not_forecast:
        notes.append(f"not forecast: {', '.join(forecast.not_forecast)}")
    notes.append("expected figures; --json gives each one's low and high ends, and what they assume")
    return notes


def _served_as(billed: Mapping[tuple[str, str], Any], role: str, model: str) -> tuple[str, str]:
    """The billed (role, model) of a forecast row: the same model string, or the model as it was served (a local
    model names its precision once loaded: `local:NAME` runs as `local:NAME@bfloat16`)."""
    if (role, model) in billed:
        return role, model
    return next(((r, m) for r, m in billed if r == role and m.split("@")[0] == model), (role, model))


def _billed(rows: list[UsageRow]) -> dict[tuple[str, str], dict[str, float]]:
    billed: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        sums = billed.setdefault((row.role, row.model), dict.fromkeys((*COMPARED, "cost_usd"), 0.0))
        for name in sums:
            sums[name] += getattr(row, name)
    return billed


def forecast_section(store: RunStore) -> dict[str, Any] | None:
    """The forecast the run stored at its start beside what it was billed, per role and model and in all (None: the
    run stored none, or one of no call)."""
    forecast = store.meta_record("forecast", Forecast)
    if forecast is None or not forecast.rows:  # none stored, or a run that makes no call (training alone)
        return None
    billed = _billed(stored_usage(store))
    rows = []
    for row in forecast.rows:
        actual = billed.pop(_served_as(billed, row.role, row.model), dict.fromkeys((*COMPARED, "cost_usd"), 0.0))
        rows.append(_compared(row.role, row.model, row, actual))
    others = {name: sum(found[name] for found in billed.values()) for name in (*COMPARED, "cost_usd")}
    total = {name: sum(r["billed"][name] for r in rows) for name in (*COMPARED, "cost_usd")}
    expected = forecast.total.cost_usd.expected
    return {
        "prompts": forecast.prompts,
        "rows": rows,
        "total": _compared("total", "", forecast.total, total),
        "others": others if billed else None,
        "other_roles": sorted({role for role, _ in billed}),
        "ratio": total["cost_usd"] / expected if expected else None,
        "local": sorted({row.model for row in forecast.rows if row.model.startswith("local:")}),
        "not_forecast": forecast.not_forecast,
    }


def _compared(role: str, model: str, figures: Any, billed: Mapping[str, float]) -> dict[str, Any]:
    cost = figures.cost_usd
    return {
        "role": role,
        "model": model,
        "forecast": {name: getattr(figures, name).expected for name in COMPARED},
        "billed": billed,
        "cost": {"low": cost.low, "expected": cost.expected, "high": cost.high},
    }
