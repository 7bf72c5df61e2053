"""Human-agreement spot checks: sampling, labels, the labeling page, statistics, calibration, the gate."""
