"""Test and benchmark helpers that ship with charter: `loopback` (HTTP servers speaking the providers' wire formats,
chat and batch: `from charter.testing.loopback import BatchServer, LoopbackServer`), `faults` (the same server
injecting faults), `judges` and `lab` (scripted judges and lab models). The oracles that check charter's own figures
(the billing server the cost forecast is checked against) live with the tests instead."""
