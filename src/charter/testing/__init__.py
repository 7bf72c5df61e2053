"""Test and benchmark helpers that ship with charter: `loopback` (an HTTP server speaking the providers' wire
formats: `from charter.testing.loopback import LoopbackServer`), `faults` (the same server injecting faults),
`batches` (the providers' batch APIs), `judges` and `lab` (scripted judges and lab models), `embeddings` (a
hashed stand-in for an embedding model)."""
