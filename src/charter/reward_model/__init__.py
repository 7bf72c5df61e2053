"""Reward models: TRL's RewardTrainer on charter preference data, with evaluation and a model card."""
