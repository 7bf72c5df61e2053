"""The optional training stages of a run: reward_model, dpo, eval (win rate), on this run's data.

The sections are typed parts of the run config (validated when it loads); here they get this run's
directory as their dataset, and the bundled prompt set as the win rate's default prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charter.pipeline.config import TRAINING_STAGES, RunConfig


def section_config(config: RunConfig, stage: str, run_dir: Path) -> Any:
    """One training stage's section with this run's defaults filled in."""
    section = getattr(config, stage)
    if stage == "eval":
        from charter.data import bundled_prompts_path

        updates = {"run_dir": section.run_dir or run_dir, "prompts": section.prompts or str(bundled_prompts_path())}
    else:
        updates = {"dataset": section.dataset or str(run_dir)}
    return section.model_copy(update=updates)


def run_training_stages(config: RunConfig, result: Any) -> None:
    """Run the training stages named in `config.stages`, in order, on this run's preference dataset."""
    for stage in (s for s in TRAINING_STAGES if s in config.stages):
        cfg = section_config(config, stage, result.run_dir)
        if stage == "reward_model":
            from charter.reward_model.train import train_reward_model

            result.training["reward_model"] = train_reward_model(cfg)
        elif stage == "dpo":
            from charter.dpo.train import train_dpo

            result.training["dpo"] = train_dpo(cfg)
        else:
            from charter.dpo.winrate import winrate

            result.training["eval"] = winrate(cfg)
