"""SL-CAI: generate -> critique -> revise chains."""

from charter.critique.chain import few_shot_messages, run_chain

__all__ = ["few_shot_messages", "run_chain"]
