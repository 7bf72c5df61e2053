"""The optional training stages of a run: reward_model, dpo, eval (win rate)."""

from __future__ import annotations

from typing import Any

from charter.errors import ConfigError


def run_training_stages(config: Any, result: Any) -> None:
    """Run the training stages named in `config.stages`, each on this run's preference dataset."""
    stages = [s for s in config.stages if s in ("reward_model", "dpo", "eval")]
    for stage in stages:
        section = getattr(config, stage)
        if section is None:
            raise ConfigError(f"stages: '{stage}' is listed but the run config has no '{stage}:' section")
        runner = _STAGE_RUNNERS[stage]
        runner(section, result)


def _reward_model(section: dict, result: Any) -> None:
    from charter.reward_model.config import RewardModelConfig
    from charter.reward_model.train import train_reward_model

    cfg = RewardModelConfig.model_validate({"dataset": str(result.run_dir), **section})
    result.counts["reward_model"] = str(train_reward_model(cfg))


def _dpo(section: dict, result: Any) -> None:
    from charter.dpo.config import DPOConfigModel
    from charter.dpo.train import train_dpo

    cfg = DPOConfigModel.model_validate({"dataset": str(result.run_dir), **section})
    result.counts["dpo"] = str(train_dpo(cfg))


def _eval(section: dict, result: Any) -> None:
    from charter.dpo.config import WinrateConfig
    from charter.dpo.winrate import winrate

    cfg = WinrateConfig.model_validate(section)
    result.counts["eval"] = str(winrate(cfg))


_STAGE_RUNNERS = {"reward_model": _reward_model, "dpo": _dpo, "eval": _eval}
