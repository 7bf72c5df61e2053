"""Evaluations of any policy: the win rate against a base model, judged against a constitution."""
