"""Online RLAIF: the constitutional judge as the reward of TRL's online trainers."""
