"""Iterated constitutional rounds (Self-Rewarding style) with a model-collapse monitor: `charter iterate`."""
