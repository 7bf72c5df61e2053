"""Estimators: intervals for proportions, agreement (kappa, Krippendorff's alpha) with cluster-bootstrap intervals,
prediction-powered means, the length-controlled win rate and flip rates. Pure functions over arrays and small
records; nothing here reads a run."""
