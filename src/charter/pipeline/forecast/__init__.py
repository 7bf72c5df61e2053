"""The cost before the run: the calls walked through the stages, the providers' prompt caches, token counts, the
estimate with its range, and the forecast shown before a run and in its report."""
