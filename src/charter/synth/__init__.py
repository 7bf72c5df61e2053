"""Prompt synthesis: Self-Instruct and red-team prompts, deduplicated, filtered and balanced to a target mix."""
