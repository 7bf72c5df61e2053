"""The model card of an online-trained policy: what rewarded it, how often the judge failed, what it cost."""

from __future__ import annotations

from typing import Any

from charter._version import __version__
from charter.evals.during import evaluation_lines
from charter.monitor.gold import monitor_lines
from charter.online.config import OnlineConfig
from charter.online.metrics import OnlineMetrics
from charter.reward.function import scoring_entry
from charter.reward.scoring import ScoringOptions
from charter.training.output import base_model


def _scoring(config: OnlineConfig) -> str:
    options = ScoringOptions(
        group_strategy=config.group_strategy, rank_orders=config.rank_orders, aggregation=config.checklist.aggregation
    )
    return scoring_entry(config.scoring).describe(options)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signal(config: OnlineConfig) -> str:
    """What rewarded the policy, in one sentence."""
    if config.judge_weight:
        return "an AI judge rewarded the policy's own samples during training, against a written constitution " + (
            "(beside a reward model distilled from judgments)."
            if config.reward_model
            else "(RLAIF without a reward model)."
        )
    parts = [p for p, on in (("a reward model", config.reward_model), ("a verifier", config.verify)) if on]
    if not parts:
        return "no reward trained the policy (judge weight 0); the AI judge rated its samples as a monitor."
    return " and ".join(parts) + " rewarded the policy's own samples during training (the judge at weight 0)."


def online_card(metrics: OnlineMetrics, config: OnlineConfig, name: str, tags: list[str]) -> Any:
    """A huggingface_hub ModelCard naming the constitution, the judge and the scoring (`name`: the trainer's, as
    "GRPO (TRL GRPOTrainer)"; `tags`: the card's)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", tags=tags, base_model=base_model(config.model))
    verify = f"weight {config.verify.weight}, {config.verify.verifier}" if config.verify else "none"
    reward_model = f"weight {config.reward_model_weight}, {config.reward_model}" if config.reward_model else "none"
    judge = config.judge
    steps = metrics["steps"]
    first, last = (steps[0], steps[-1]) if steps else (None, None)
    usage = metrics["usage"]
    lines = [
        f"# A policy trained online with charter ({name})",
        "",
        f"Trained with charter {__version__} from `{config.model}`: " + _signal(config),
        "",
        "| | |",
        "|---|---|",
        f"| constitution | {metrics['constitution']} |",
        f"| judge | `{metrics['judge']}`, mode {judge.mode}"
        + (f" (scale 1-{judge.scale}, read by {judge.reply_name})" if judge.rates_alone else f", orders {judge.orders}")
        + f", {judge.ensemble()}, weight {config.judge_weight:g}"
        + (" (not asked)" if not (config.judge_weight or config.judge_monitor) else "")
        + (" (a monitor: rated, not trained on)" if not config.judge_weight and config.judge_monitor else "")
        + " |",
        f"| scoring | {config.scoring}: {_scoring(config)} |",
        f"| verifiable reward | {verify} |",
        f"| reward model | {reward_model} |",
        f"| steps | {metrics['training']['global_step']} ({metrics['stopped']}) |",
        f"| rewards | {metrics['rewards']}, of which {metrics['failures']} failed judgments (no reward) |",
        f"| mean reward, first and last step | {_fmt(first['mean'] if first else None)} -> "
        f"{_fmt(last['mean'] if last else None)} |",
        f"| judge calls | {usage['calls']} paid, {usage['cached']} from the cache, ${usage['cost_usd']:.4f} |",
        "",
        "The judge's rewards are not human judgments: how far people agree with this judge is measured with "
        "`charter agreement` on its offline labels, not here. Every reward is in the reward store (`run.sqlite`, "
        "table `rewards`) with the prompt, the completion, the scores or votes and the training step.",
        "",
        *evaluation_lines(metrics.get("winrate_eval", [])),
        *checklist_version_lines(metrics.get("checklist_versions", [])),
        *mitigation_lines(metrics.get("mitigations", {})),
        *monitor_lines(metrics.get("monitor"), metrics["training"]["global_step"]),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


#: Each mitigation's rule, as the card states it.
_RULES = {
    "rubric_dropout": "each step, each prompt's checklist judged on a seeded random subset of its items ({})",
    "panel": "reward = mean of the judges' rewards - {} x their spread (population sd); a failed judge fails it",
    "length_control": "rewards controlled for length ({})",
    "signature_cap": "a completion showing a hack signature gets at most {}",
}


def _rule(name: str, setting: Any) -> str:
    if name == "rubric_dropout":
        return _RULES[name].format(f"share {setting:g} left out" if setting < 1 else f"{setting:g} item(s) left out")
    if name == "panel":
        return _RULES[name].format(f"{setting['disagreement_penalty']:g}") + (
            f"; judges beside the judge: {', '.join(j['model'] for j in setting['judges'] if 'model' in j)}"
        )
    if name == "length_control":
        lc = setting
        said = (
            "the batch's length trend taken out"
            if lc["rule"] == "residual"
            else (f"{lc['per_word']:g} a word beyond {lc['reference_words']} words")
        )
        return _RULES[name].format(said)
    return _RULES[name].format(f"{setting['value']:g}")


def mitigation_lines(log: dict[str, Any]) -> list[str]:
    """The mitigations against judge gaming the run set (`mitigations`), a row each with its rule."""
    settings = log.get("settings") or {}
    if not settings:
        return []
    lines = ["## Mitigations against judge gaming", "", "| mitigation | rule |", "|---|---|"]
    lines += [f"| {name} | {_rule(name, value)} |" for name, value in settings.items()]
    return [*lines, "", "What each did per step is in metrics.json (`mitigations.steps`).", ""]


def checklist_version_lines(versions: list[dict[str, Any]]) -> list[str]:
    """The checklist's refreshes during training (`refresh_every`): a line per refresh, the items it added."""
    if not versions:
        return []
    lines = ["## The checklist during training", "", "| after step | version | items added |", "|---|---|---|"]
    for refresh in versions:
        added = "; ".join(f"`{i['id']}`: {i['requirement']}" for i in refresh["accepted"])
        lines.append(f"| {refresh['step']} | {refresh['version']} | {added or refresh.get('note') or 'none'} |")
    return [*lines, "", "Each reward in the store names the checklist version it used (`checklist.version`).", ""]


def _dpo_judge(config: Any, judge: str) -> str:
    """Online DPO's judge, in one cell."""
    if config.reward_model and not config.judge_weight:
        return "not asked (judge_weight 0): the reward model alone decides"
    settings = config.judge
    return f"`{judge}`, mode {settings.mode}, orders {settings.orders}, {settings.ensemble()}" + (
        f", weight {config.judge_weight:g}" if config.reward_model else ""
    )


def online_dpo_card(metrics: Any, config: Any, name: str, tags: list[str]) -> Any:
    """The model card of an online-DPO policy: the judge, the pairs trained on and those masked, the cost (`name`:
    the trainer's, "online DPO"; `tags`: the card's)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", tags=tags, base_model=base_model(config.model))
    usage, masked = metrics["usage"], metrics["masked"]
    lines = [
        f"# A policy trained with {name} by charter (TRL OnlineDPOTrainer)",
        "",
        f"Trained with charter {__version__} from `{config.model}`: two completions per prompt from the policy, "
        "compared by an AI judge against a written constitution, a DPO step on the pairs it decided (OAIF).",
        "",
        "| | |",
        "|---|---|",
        f"| constitution | {metrics['constitution']} |",
        f"| judge | {_dpo_judge(config, metrics['judge'])} |",
        *(
            [
                f"| reward model | `{config.reward_model}`, weight {config.reward_model_weight:g}: P(first better) = "
                f"sigmoid(r_first - r_second), pooled with the judge's by weight |"
            ]
            if config.reward_model
            else []
        ),
        f"| steps | {metrics['training']['global_step']} ({metrics['stopped']})"
        + (
            f", {metrics['skipped_steps']} skipped: every pair masked, no optimizer step"
            if metrics["skipped_steps"]
            else ""
        )
        + " |",
        f"| pairs | {metrics['pairs']}: {metrics['trained']} trained on, {masked['failed']} masked (judgment failed), "
        f"{masked['undecided']} masked (undecided: orders disagreed or |P - 0.5| < {config.min_confidence:g}) |",
        f"| judge calls | {usage['calls']} paid, {usage['cached']} from the cache, ${usage['cost_usd']:.4f} |",
        "",
        "A masked pair adds nothing to the loss: no preference is made up for a pair the judge did not decide, and "
        "a step whose pairs were all masked moved nothing (no optimizer step, the learning-rate schedule held). "
        "The judge's preferences are not human judgments; every pair is in the reward store (`run.sqlite`, table "
        "`rewards`, scoring `pair`) with its P(first better) and why it was masked.",
        "",
        *evaluation_lines(metrics.get("winrate_eval", [])),
        *mitigation_lines(metrics.get("mitigations", {})),
        *monitor_lines(metrics.get("monitor"), metrics["training"]["global_step"]),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def unfinished_online_dpo_card(config: Any, judge: str, constitution: str, step: int, max_steps: int) -> Any:
    """The card an online-DPO output folder holds while its run has not finished (written with each checkpoint, in
    place of TRL's placeholder; the run's own card replaces it when training ends)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="transformers", tags=["charter", "online-dpo", "unfinished"], base_model=base_model(config.model)
    )
    lines = [
        "# An online-DPO run by charter that has not finished",
        "",
        f"This folder holds the checkpoints of `charter train online-dpo` from `{config.model}`, a run that has not "
        f"finished: it is still training, or it stopped before its end. Training had reached step {step} of "
        f"{max_steps} when this card was written, as `checkpoint-{step}` was saved. No trained policy is described "
        "here: the policy, `metrics.json` and the run's card are written when training ends. With `resume: true` (the "
        "default), running the same command again continues from the newest checkpoint.",
        "",
        "| | |",
        "|---|---|",
        f"| constitution | {constitution} |",
        f"| judge | {_dpo_judge(config, judge)} |",
        "| pairs so far | in the reward store (`run.sqlite`, table `rewards`, scoring `pair`; under several processes "
        "each one's store is under `ranks/` until training ends) |",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
