"""Test and benchmark helpers that ship with charter: a loopback server speaking the providers' wire formats.

Imported lazily, so that `python -m charter.testing.loopback` runs the module only once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charter.testing.loopback import Behaviour, LoopbackServer, Recorded, drop, garbage, ok, slow, status

_NAMES = ("Behaviour", "LoopbackServer", "Recorded", "drop", "garbage", "ok", "slow", "status")
__all__ = ["Behaviour", "LoopbackServer", "Recorded", "drop", "garbage", "ok", "slow", "status"]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        from charter.testing import loopback

        return getattr(loopback, name)
    raise AttributeError(f"module 'charter.testing' has no attribute {name!r}")
