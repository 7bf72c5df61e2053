"""The optional training stages of a run: reward_model, dpo, eval (win rate), on this run's data.

The sections are typed parts of the run config (validated when it loads); here they get this run's
directory as their dataset, and the bundled prompt set as the win rate's default prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charter.interrupt import StopRequest
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


def stop_callback(stop: StopRequest) -> Any:
    """A TrainerCallback that ends training at the next step once a stop (Ctrl-C, SIGTERM) is requested, by raising
    `Interrupted`: the trainer writes no model from a training cut short."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if stop.requested:
                raise stop.error()
            return control

    return StopOnSignal()


def run_training_stages(config: RunConfig, result: Any, stop: StopRequest | None = None) -> None:
    """Run the training stages named in `config.stages`, in order, on this run's preference dataset. A stop
    requested meanwhile ends them at the next training step (or before the next stage) with `Interrupted`."""
    for stage in (s for s in TRAINING_STAGES if s in config.stages):
        if stop is not None and stop.requested:
            raise stop.error()
        callbacks = [stop_callback(stop)] if stop is not None and stage != "eval" else []
        cfg = section_config(config, stage, result.run_dir)
        if stage == "reward_model":
            from charter.reward_model.train import train_reward_model

            result.training["reward_model"] = train_reward_model(cfg, callbacks=callbacks)
        elif stage == "dpo":
            from charter.dpo.train import train_dpo

            result.training["dpo"] = train_dpo(cfg, callbacks=callbacks)
        else:
            from charter.evals.winrate import winrate

            result.training["eval"] = winrate(cfg)
