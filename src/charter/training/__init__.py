"""The base the trainers stand on (reward model, DPO, online GRPO/RLOO): preference data, models and tokenizers,
LoRA, TRL arguments, several processes, output folders, summaries and model cards."""
