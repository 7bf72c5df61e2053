"""The judge: its settings (`settings`), the table of modes (`modes`), the pairwise and rating judges (`pairwise`,
`score`) and panels of judges (`panel`). Its wire format (prompts written and read back, answers read) is the
ground-floor module `charter.judge_prompt`."""
