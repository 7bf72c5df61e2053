"""Mixing training sources per target subtask: the score table, the plan, the build, the probes, and `charter.mix`."""
