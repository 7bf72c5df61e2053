"""Run config, run store, stage orchestration, resume and the report."""
