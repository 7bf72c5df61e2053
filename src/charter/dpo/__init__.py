"""DPO on charter preference data with TRL, and win-rate evaluation of the result."""
