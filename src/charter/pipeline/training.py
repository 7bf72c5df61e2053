"""The optional training stages of a run: reward_model, dpo, eval (win rate).

Each stage's section of the run config is validated before any model call (`validate_sections`), with
this run's directory as its dataset, so a typo fails in a second, not after an hour of generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charter.errors import ConfigError
from charter.yamlio import model_from_data

TRAINING_STAGES = ("reward_model", "dpo", "eval")


def _section_model(stage: str) -> type:
    if stage == "reward_model":
        from charter.reward_model.config import RewardModelConfig

        return RewardModelConfig
    if stage == "dpo":
        from charter.dpo.config import DPOConfigModel

        return DPOConfigModel
    from charter.dpo.config import WinrateConfig

    return WinrateConfig


def section_config(config: Any, stage: str, run_dir: Path) -> Any:
    """The validated config of one training stage, defaulting its data to this run."""
    section = getattr(config, stage)
    if section is None:
        raise ConfigError(f"stages: '{stage}' is listed but the run config has no '{stage}:' section")
    defaults: dict[str, Any] = {"run_dir": str(run_dir)} if stage == "eval" else {"dataset": str(run_dir)}
    if stage == "eval" and "prompts" not in section:
        from charter.data import bundled_prompts_path

        defaults["prompts"] = str(bundled_prompts_path())
    return model_from_data(_section_model(stage), {**defaults, **section}, f"run config: {stage}")


def validate_sections(config: Any, run_dir: Path) -> None:
    """Check every listed training stage's section (one-line errors, before any model call)."""
    for stage in config.stages:
        if stage in TRAINING_STAGES:
            section_config(config, stage, run_dir)


def run_training_stages(config: Any, result: Any) -> None:
    """Run the training stages named in `config.stages`, in order, on this run's preference dataset."""
    for stage in (s for s in TRAINING_STAGES if s in config.stages):
        cfg = section_config(config, stage, result.run_dir)
        if stage == "reward_model":
            from charter.reward_model.train import train_reward_model

            result.counts["reward_model"] = train_reward_model(cfg)
        elif stage == "dpo":
            from charter.dpo.train import train_dpo

            result.counts["dpo"] = train_dpo(cfg)
        else:
            from charter.dpo.winrate import winrate

            result.counts["eval"] = winrate(cfg)
