"""Mitigations against judge gaming in `charter train grpo|rloo`: the `mitigations` section, each mitigation one
setting, off unless set.

A policy trained against a judge learns what the judge rewards by mistake (length, a repeated required word, a
fragment that meets an item's letter). Each mitigation changes the reward by one documented rule:

- `rubric_dropout` (`checklist` scoring): each step, each prompt's checklist is judged on a random subset of its
  items, a share or a count of them left out (at least one kept), drawn from the seed, the step and the prompt; the
  items left out are recorded per step (`reward.checklisted.with_dropout`).
- `panel`: more judges score every completion with the same scoring beside `judge`; the reward is the members' mean
  minus `disagreement_penalty` times their spread (the population standard deviation). A completion any member fails
  to score has no reward (a failure, never a mean of fewer judges).
- `length_control`: `residual` removes the batch's linear length trend, r' = r - b (L - mean L), b the least-squares
  slope of the rewards on the completions' lengths L in words (no change where the lengths do not vary), so the mean
  reward stays and length alone earns nothing; `penalty` takes `per_word` for every word beyond `reference_words`,
  r' = r - per_word * max(0, L - reference_words).
- `signature_cap`: a completion that shows a hack signature (`charter.monitor.signatures`) has its reward capped,
  r' = min(r, value).

They apply in that order (the panel's reward, then length, then the cap). The reward store keeps each judge's own
reward (so a store resumes as before and the gold monitor compares against the judge); the reward TRL trains on is
the mitigated one, and what each mitigation did is recorded per step in the store's meta `mitigations`, in
metrics.json (`mitigations`) and on the card. Settings enter the reward fingerprint only where they change the
stored rewards (rubric dropout changes the checklists judged; a panel member's rewards are in a store of its own).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from charter.monitor.signatures import SIGNATURES, required_phrases
from charter.providers.config import RoleConfig
from charter.reward.function import RewardFunction, reward_for
from charter.reward.session import text_of
from charter.yamlio import ConfigModel, LocatedValueError

#: The store's meta key of what the mitigations did, one entry a step.
MITIGATIONS_KEY = "mitigations"


class PanelPenalty(ConfigModel):
    """A panel of judges whose disagreement costs reward."""

    judges: list[RoleConfig] = Field(min_length=1)
    """The judges beside `judge` (one or more roles), each asked with `judge`'s mode and settings and the same
    scoring; each keeps its rewards in OUTPUT_DIR/panel/judge-N/run.sqlite."""
    disagreement_penalty: float = Field(default=1.0, ge=0)
    """lambda in reward = mean - lambda * spread, the spread the members' population standard deviation."""


class LengthControl(ConfigModel):
    """A reward that length alone does not raise."""

    rule: Literal["residual", "penalty"] = "residual"
    """`residual`: the batch's least-squares length trend taken out of the rewards (the mean kept); `penalty`:
    `per_word` taken for every word beyond `reference_words`."""
    per_word: float = Field(default=0.01, ge=0)
    """`penalty`: the reward taken for each word beyond `reference_words`."""
    reference_words: int = Field(default=50, ge=0)
    """`penalty`: the length, in words, a completion may have without a penalty."""


class SignatureCap(ConfigModel):
    """A cap on the reward of completions that show a hack signature."""

    value: float = Field(ge=0, le=1)
    """The most reward a completion showing a signature gets."""
    signatures: list[str] | None = Field(default=None, min_length=1)
    """The signatures that cap (names of `charter.monitor.signatures.SIGNATURES`: length_padding, repeated_required,
    sycophantic_opener, refusal_collapse, format_only); None: every one."""

    @field_validator("signatures")
    @classmethod
    def _known(cls, names: list[str] | None) -> list[str] | None:
        unknown = [n for n in names or [] if n not in SIGNATURES]
        if unknown:
            raise ValueError(f"unknown signature {unknown[0]!r}: expected one of {', '.join(SIGNATURES)}")
        return names


class Mitigations(ConfigModel):
    """Mitigations against judge gaming, each one setting, none by default (see `charter.online.mitigate`)."""

    rubric_dropout: float | None = Field(default=None, gt=0)
    """`checklist` scoring: the items of each prompt's checklist left out each step, a share (below 1) or a whole
    count; at least one item is kept. Drawn from the seed, the step and the prompt, recorded per step."""
    panel: PanelPenalty | None = None
    """More judges beside `judge`, the reward their mean minus a penalty on their spread."""
    length_control: LengthControl | None = None
    """Rewards controlled for length: the batch's length trend taken out, or a penalty per word beyond a length."""
    signature_cap: SignatureCap | None = None
    """Rewards of completions that show a hack signature capped at a value."""

    @model_validator(mode="after")
    def _whole_count(self) -> Mitigations:
        drop = self.rubric_dropout
        if drop is not None and drop >= 1 and drop != int(drop):
            raise LocatedValueError(f"a share below 1 or a whole count of items, not {drop:g}", ("rubric_dropout",))
        return self

    def settings(self) -> dict[str, Any]:
        """The mitigations set, as the metrics and the card name them."""
        return self.model_dump(mode="json", exclude_none=True)


# -- the rules --------------------------------------------------------------------------------------------------------
def words(text: str) -> int:
    """A completion's length as the length rules count it: whitespace-separated words."""
    return len(text.split())


def panel_reward(rewards: Sequence[float | None], penalty: float) -> tuple[float | None, float | None]:
    """(reward, spread) of one completion from its panel members' rewards: mean - penalty * population sd; (None,
    None) where any member has none."""
    if any(r is None for r in rewards):
        return None, None
    values = np.asarray(rewards, dtype=float)
    spread = float(values.std())
    return float(values.mean()) - penalty * spread, spread


def length_residual(rewards: Sequence[float | None], lengths: Sequence[int]) -> tuple[list[float | None], float]:
    """(rewards with the batch's least-squares length trend taken out, its slope per word): r - b (L - mean L) over
    the completions with a reward; unchanged (slope 0) where fewer than two have one or their lengths are all alike."""
    scored = [(r, n) for r, n in zip(rewards, lengths) if r is not None]
    if len(scored) < 2:
        return list(rewards), 0.0
    r = np.asarray([s[0] for s in scored], dtype=float)
    n = np.asarray([s[1] for s in scored], dtype=float)
    variance = float(((n - n.mean()) ** 2).sum())
    if variance == 0:
        return list(rewards), 0.0
    slope = float(((n - n.mean()) * (r - r.mean())).sum()) / variance
    centre = float(n.mean())
    return [None if v is None else v - slope * (m - centre) for v, m in zip(rewards, lengths)], slope


def length_penalty(
    rewards: Sequence[float | None], lengths: Sequence[int], per_word: float, reference_words: int
) -> list[float | None]:
    """Rewards less `per_word` for each word beyond `reference_words`."""
    return [None if r is None else r - per_word * max(0, n - reference_words) for r, n in zip(rewards, lengths)]


def shows_signature(
    asked: list[str], texts: list[str], checklists: Sequence[Any] | None, names: list[str] | None
) -> list[bool]:
    """Which completions show any of the signatures `names` (None: every one of `SIGNATURES`), each read against its
    prompt and the phrases its prompt or its checklist's items require (`required_phrases`)."""
    detectors = [SIGNATURES[n] for n in (names or SIGNATURES)]
    given = checklists if checklists is not None else [None] * len(texts)
    out = []
    for prompt, text, checklist in zip(asked, texts, given):
        required = required_phrases(" ".join([prompt, *_requirements(checklist)]))
        out.append(any(detect(text, prompt, required) for detect in detectors))
    return out


def _requirements(checklist: Any) -> list[str]:
    """The requirements of a checklist column value (items or their JSON text); [] for none or one unreadable here
    (the reward reads, and refuses, a bad one)."""
    if isinstance(checklist, str):
        try:
            checklist = json.loads(checklist)
        except ValueError:
            return []
    items = checklist if isinstance(checklist, list) else []
    return [str(i["requirement"]) for i in items if isinstance(i, dict) and "requirement" in i]


def capped(rewards: Sequence[float | None], shows: Sequence[bool], value: float) -> list[float | None]:
    """Rewards of the completions that show a signature capped at `value`."""
    return [None if r is None else (min(r, value) if hit else r) for r, hit in zip(rewards, shows)]


# -- the reward TRL trains on -----------------------------------------------------------------------------------------
#: Which completions of a batch show a signature: (prompt texts, completion texts, checklist column or None, names).
Detector = Callable[[list[str], list[str], Sequence[Any] | None, list[str] | None], list[bool]]


def mitigate(
    mitigations: Mitigations,
    judged: Sequence[float | None],
    others: Sequence[Sequence[float | None]],
    texts: list[str],
    asked: list[str],
    checklists: Sequence[Any] | None = None,
    detect: Detector | None = None,
) -> tuple[list[float | None], dict[str, Any]]:
    """The mitigated rewards of a batch and what each mitigation did (see the module's docstring): `judged`, the
    judge's rewards; `others`, each panel member's; `texts` and `asked`, the completions and their prompts' last
    messages; `detect`, which completions show a signature."""
    m, done = mitigations, {}
    rewards = list(judged)
    if m.panel is not None:
        pooled = [panel_reward([r, *(o[i] for o in others)], m.panel.disagreement_penalty)
                  for i, r in enumerate(rewards)]  # fmt: skip
        rewards = [p[0] for p in pooled]
        spreads = [p[1] for p in pooled if p[1] is not None]
        done["panel"] = {"mean_spread": float(np.mean(spreads)) if spreads else None,
                         "failed": sum(p[0] is None for p in pooled)}  # fmt: skip
    if m.length_control is not None:
        lengths = [words(t) for t in texts]
        if m.length_control.rule == "residual":
            rewards, slope = length_residual(rewards, lengths)
            done["length_control"] = {"slope_per_word": slope, "mean_words": float(np.mean(lengths))}
        else:
            lc = m.length_control
            rewards = length_penalty(rewards, lengths, lc.per_word, lc.reference_words)
            over = sum(n > lc.reference_words for n in lengths)
            done["length_control"] = {"over_reference": over, "mean_words": float(np.mean(lengths))}
    if m.signature_cap is not None:
        if detect is None:
            raise ValueError("signature_cap needs the signatures' detector")
        shows = detect(asked, texts, checklists, m.signature_cap.signatures)
        rewards = capped(rewards, shows, m.signature_cap.value)
        done["signature_cap"] = {"capped": sum(shows)}
    return rewards, done


class MitigatedReward:
    """A TRL reward function: the judge's rewards (and the panel's), mitigated as `mitigations` says; what it did is
    written per step to the reward store's meta `mitigations` and logged to TRL as `charter/mitigation/...`."""

    def __init__(
        self,
        reward: RewardFunction,
        mitigations: Mitigations,
        members: Sequence[RewardFunction] = (),
        detect: Detector | None = None,
    ) -> None:
        self.reward, self.mitigations, self.members, self.detect = reward, mitigations, list(members), detect
        self.__name__ = reward.__name__  # TRL's log keys (rewards/NAME/...) stay the judge's

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **kwargs: Any
    ) -> list[float | None]:
        """One reward per completion, in order (None where a judgment failed), mitigated."""
        judged = self.reward(prompts, completions, completion_ids, **kwargs)
        quiet = {k: v for k, v in kwargs.items() if k != "log_metric"}  # the judge's failures are logged once
        others = [m(prompts, completions, completion_ids, **quiet) for m in self.members]
        state = kwargs.get("trainer_state")
        step = int(state.global_step) + 1 if state is not None else None
        texts = [text_of(c) for c in completions]
        asked = [text_of(p) if isinstance(p, str) else text_of(list(p)[-1:]) for p in prompts]
        checklists = kwargs.get(self.reward.options.checklist_column)
        rewards, done = mitigate(self.mitigations, judged, others, texts, asked, checklists, self.detect)
        dropout = self.reward.options.dropout
        if dropout is not None:
            done["rubric_dropout"] = dropout.drawn.pop(step, {})
        self._record(step, done, kwargs.get("log_metric"))
        return rewards

    def _record(self, step: int | None, done: dict[str, Any], log_metric: Any) -> None:
        entry = {"step": step, **done}
        kept = [e for e in self.reward.store.meta(MITIGATIONS_KEY, []) if e.get("step") != step]
        self.reward.store.set_meta(**{MITIGATIONS_KEY: [*kept, entry]})  # a step taken again replaces its entry
        if callable(log_metric):
            for name, value in _numbers(done):
                log_metric(f"charter/mitigation/{name}", value)

    def close(self) -> None:
        """Close the panel members' sessions (the judge's is closed by its owner)."""
        for member in self.members:
            member.close()


def _numbers(done: dict[str, Any]) -> list[tuple[str, float]]:
    return [
        (f"{part}/{key}", float(value))
        for part, values in done.items()
        if part != "rubric_dropout"
        for key, value in values.items()
        if isinstance(value, int | float) and math.isfinite(value)
    ]


def panel_members(config: Any, out: Path) -> list[RewardFunction]:
    """The panel's judges as reward functions of `config`'s scoring, each with the judge's settings and a store of its
    own (OUTPUT_DIR/panel/judge-N)."""
    panel = config.mitigations.panel
    if panel is None:
        return []
    members = []
    for i, role in enumerate(panel.judges, start=1):
        judge = config.judge.model_copy(update={k: getattr(role, k) for k in role.model_fields_set})
        members.append(reward_for(config.model_copy(update={"judge": judge}), out / "panel" / f"judge-{i}"))
    return members


def mitigation_log(mitigations: Mitigations, store: Any) -> dict[str, Any]:
    """What metrics.json keeps of the mitigations: the settings and what they did per step ({} without any)."""
    settings = mitigations.settings()
    if not settings:
        return {}
    return {"settings": settings, "steps": list(store.meta(MITIGATIONS_KEY, [])) if store is not None else []}


__all__ = [
    "MITIGATIONS_KEY",
    "LengthControl",
    "MitigatedReward",
    "Mitigations",
    "PanelPenalty",
    "SignatureCap",
    "capped",
    "length_penalty",
    "length_residual",
    "mitigate",
    "mitigation_log",
    "panel_members",
    "panel_reward",
    "shows_signature",
    "words",
]
