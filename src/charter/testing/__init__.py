"""Test and benchmark helpers that ship with charter: `loopback` (an HTTP server speaking the providers' wire
formats: `from charter.testing.loopback import LoopbackServer`), `faults` (the same server injecting faults),
`batches` (the providers' batch APIs), `judges` and `lab` (scripted judges and lab models). The oracles that check
charter's own figures (the billing server the cost forecast is checked against) live with the tests instead."""
