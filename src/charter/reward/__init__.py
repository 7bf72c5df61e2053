"""Rewards: the reward function, the judge session, the table of scorings and one combiner, shared by training,
the reward server and every framework adapter."""
