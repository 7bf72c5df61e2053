"""The forecast shown: as a table before a run (`charter run --dry-run`), and in the run's report beside what the
run was billed (the forecast it stored when it started, `meta.forecast`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from charter.pipeline.forecast.estimate import Forecast
from charter.records import UsageRow
from charter.runs.store import RunStore
from charter.runs.usage import stored_usage

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
