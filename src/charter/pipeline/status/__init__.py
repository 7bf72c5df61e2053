"""Where a run stands: the status record read from the run store, and its text and JSON views."""
