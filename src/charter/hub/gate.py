"""A thin adapter over the agreement gate (charter.agreement.gate), so publishing works before and without it.

No `agreement` section in the run config (or no gate module installed) means no gate: publishing is allowed
and the card says so. A failing gate raises `GateFailed` unless overridden; the override is recorded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NO_GATE = "no agreement gate was configured"


@dataclass(frozen=True)
class GateOutcome:
    """What the card says about the gate."""

    configured: bool
    passed: bool
    overridden: bool = False
    message: str = NO_GATE
    figure: str | None = None
    value: float | None = None
    bar: float | None = None


def _import(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):  # the module (or its package) is not written/installed
            return None
        raise


def check_gate(run_dir: str | Path, run_config: dict[str, Any], override: bool = False) -> GateOutcome:
    """Apply the agreement gate configured for the run; raises `GateFailed` when it fails and is not overridden."""
    section = (run_config or {}).get("agreement")
    gate_module = _import("charter.agreement.gate")
    config_module = _import("charter.agreement.config")
    if not section or gate_module is None or config_module is None:
        return GateOutcome(configured=False, passed=True)
    config = config_module.config_from_run(run_config)
    result = gate_module.require_gate(Path(run_dir), config, override=override)
    if result.passed and getattr(result, "figure", None) in (None, "none"):  # a section without a bar
        return GateOutcome(configured=False, passed=True)
    return GateOutcome(
        configured=True,
        passed=bool(result.passed),
        overridden=bool(getattr(result, "overridden", False)),
        message=str(result.message),
        figure=getattr(result, "figure", None),
        value=getattr(result, "value", None),
        bar=getattr(result, "bar", None),
    )
