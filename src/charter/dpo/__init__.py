"""DPO on charter preference data with TRL (the win-rate evaluation lives in charter.evals)."""
