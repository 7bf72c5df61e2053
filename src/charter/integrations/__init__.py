"""charter's judge inside RL frameworks: thin adapters over one reward function.

Each adapter (`verifiers`, `openenv`, `verl`) builds on `Judging`, which wraps a `charter.reward_function` so that every
call, whatever framework and event loop it comes from, goes through the same reward store, call cache, usage meter,
budget and failure limit. A framework is an optional extra, imported only by its own module.
"""
