"""The gold monitor: held-out evaluation beside judge-rewarded training, the reward-gold gap and hack signatures."""
