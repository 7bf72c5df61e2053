"""The judge: its settings (`settings`), the table of modes (`modes`, one entry a mode, made of the parts in `entry`),
the pairwise and rating judges (`pairwise`, `score`), what every judgment does alike (`asking`) and panels of judges
(`panel`). Its wire format (prompts written and read back, answers read) is the ground-floor module
`charter.judge_prompt`."""
