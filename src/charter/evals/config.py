"""The `eval:` config section (also a whole file for `charter eval winrate`): the win rate of a trained policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from charter.judge.settings import PairwiseMode
from charter.yamlio import ConfigModel

# The checklist scoring's fields, shared by the win rate and the arena (the description is each field's schema text).
Scoring = Annotated[
    Literal["pair", "checklist"],
    Field(
        description="`pair`: the judge compares the two answers (`judge_mode`, both orders); `checklist`: each answer "
        "is checked against its prompt's checklist (the prompts file's `checklist_column`, else the constitution's "
        "criteria) in one call, and P(a better) is 0.5 plus half the difference of their scores (a comparison where "
        "either answer has no score is a failed judgment, left out and counted)."
    ),
]
ChecklistColumn = Annotated[
    str,
    Field(
        description="`checklist` scoring: the prompts file's column with each prompt's checklist (a list of items or "
        "its JSON)."
    ),
]
Aggregation = Annotated[
    Literal["explicit", "implicit"],
    Field(
        description="`checklist` scoring: the items' weights and gates, or the judge's overall score given the "
        "checklist."
    ),
]


class WinrateConfig(ConfigModel):
    """Compare a candidate policy with a base policy on held-out prompts, judged against a constitution."""

    base: str = "local:smollm2-135m-instruct"
    """The model before training (a model string for charter.providers.get_model)."""
    candidate: str | None = None
    """The trained model, e.g. `local:runs/x/dpo`; default `local:RUN_DIR/dpo` when run_dir is set."""
    prompts: str | None = None
    """Held-out prompts: a JSONL/parquet file (a `prompt` string or `messages` list per row), or a run
    directory's preference file (its prompts). Required, except in a run config, where it defaults to
    charter's bundled prompt set."""
    judge: str = "local:smollm2-135m-instruct"
    """The judge model string."""
    base_api_key_env: str | None = None
    """The environment variable holding the base model's key (a host other than api.openai.com/api.anthropic.com)."""
    candidate_api_key_env: str | None = None
    """The environment variable holding the candidate model's key (likewise)."""
    judge_api_key_env: str | None = None
    """The environment variable holding the judge's key (likewise)."""
    constitution: str = "harmless"
    """Constitution name or YAML path the judge compares against."""
    reward_model: Path | None = None
    """A reward model folder; its mean score of both models' answers is reported too."""
    limit: int | None = Field(default=50, gt=0)
    """Use at most this many prompts (None: all)."""
    max_tokens: int = Field(default=128, gt=0)
    """Most tokens per answer."""
    temperature: float = Field(default=0.0, ge=0)
    """Sampling temperature for both models' answers (0: greedy)."""
    judge_mode: PairwiseMode = "logprobs"
    """How the judge answers (see charter.judge.pairwise); both orders are always asked."""
    principles_per_pair: int = Field(default=1, gt=0)
    """Principles sampled per comparison."""
    scoring: Scoring = "pair"
    checklist_column: ChecklistColumn = "checklist"
    aggregation: Aggregation = "explicit"
    seed: int = 0
    """Seed for prompt sampling and principle choice."""
    tie_band: float = Field(default=0.0, ge=0, lt=0.5)
    """|p - 0.5| at or below this counts as a tie (half a win)."""
    run_dir: Path | None = None
    """A run directory: the summary goes to RUN_DIR/report/winrate.json (+ .md) for the run report."""
    out: Path | None = None
    """Where to write the JSON summary (a .md beside it); overrides run_dir's report path."""
    concurrency: int = Field(default=16, gt=0)
    """Judge calls in flight at once."""
    human_labels: Path | None = None
    """People's verdicts on some of the comparisons: a JSONL file of rows from `winrate.pairs.jsonl` (prompt,
    candidate, base) with `preferred`: candidate, base or tie. The win rate is then also given prediction-powered
    (the judge's P(candidate better) on every prompt, corrected by the labelled ones) and from the labels alone.
    Label a random subset: the estimates assume one."""
