"""The run report: report.md and report.html from the run directory alone, with its examples and plots."""
