"""Test and benchmark helpers that ship with charter: a loopback server speaking the providers' wire formats."""

from charter.testing.loopback import Behaviour, LoopbackServer, Recorded, drop, ok, slow, status

__all__ = ["Behaviour", "LoopbackServer", "Recorded", "drop", "ok", "slow", "status"]
