"""The run directory: its SQLite store and every file in it. Nothing else reads or writes a run's files."""
