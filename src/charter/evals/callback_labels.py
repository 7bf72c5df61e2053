"""People's verdicts on the comparisons `WinRateCallback` judged, and the human-corrected (PPI) win rate from them.

At each evaluation the callback writes every comparison it judged to OUTPUT_DIR/winrate_eval/step-N.pairs.jsonl
(`pair_id`, `step`, `prompt`, `policy`, `reference`, `p_policy`). A person adds `preferred` (policy, reference or tie)
to the rows they read; the file of labelled rows, passed back as `human_labels`, corrects the judge's win rate at
every later evaluation whose comparison is the same: the same prompt (its last message) and the same policy answer
text, and the same reference answer where the row has one. A row with a `step` applies at that step only; without
one, at any step. Free of transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.errors import DatasetError
from charter.evals.winrate import HumanWinrate, comparison_key, human_estimates, labelled_rows
from charter.records import Pair

#: A person's verdict as the policy's share of the win.
PREFERRED = {"policy": 1.0, "reference": 0.0, "tie": 0.5}
#: The names of the compared answers in the pairs files and the labels.
SIDES = ("policy", "reference")
#: The folder under the trainer's output_dir with the comparisons of each evaluation.
PAIRS_DIR = "winrate_eval"


def pairs_file(output_dir: str | Path, step: int) -> Path:
    """Where the comparisons judged at `step` go, for people to label."""
    return Path(output_dir) / PAIRS_DIR / f"step-{step}.pairs.jsonl"


@dataclass(frozen=True)
class CallbackLabels:
    """People's verdicts from a labels file: (step or None, comparison key, the policy's share of the win)."""

    path: Path
    rows: list[tuple[int | None, str, float]]

    def at(self, step: int) -> dict[str, float]:
        """The verdicts that apply at `step` by comparison key (a row for this step over a row for any step)."""
        return {k: v for s, k, v in sorted(self.rows, key=lambda r: r[0] is not None) if s is None or s == step}

    def estimates(self, step: int, judged: list[tuple[Pair, float]]) -> HumanWinrate:
        """The prediction-powered and people-only win rates at `step`: the judge's P(policy better) on every
        comparison judged, corrected by the labelled ones."""
        labels = self.at(step)
        matched = []
        for pair, p_policy in judged:
            prompt = pair.prompt[-1].content
            share = labels.get(comparison_key(prompt, pair.a, pair.b), labels.get(comparison_key(prompt, pair.a)))
            if share is not None:
                matched.append((p_policy, share))
        return human_estimates([p for _, p in judged], matched, len(labels), self.path)


def read_callback_labels(path: str | Path) -> CallbackLabels:
    """People's verdicts on the callback's comparisons, from a JSONL/parquet file of rows of its pairs files with
    `preferred` (policy, reference or tie) added; `prompt` and `policy` are needed, `reference` and `step` optional.

    Raises:
        DatasetError: The file cannot be read or is empty, or a row lacks prompt or policy, has another
            `preferred`, a `reference` that is not a string, or a `step` that is not a positive whole number.
    """
    path = Path(path)
    rows: list[tuple[int | None, str, float]] = []
    for i, row, share in labelled_rows(path, ("prompt", "policy"), PREFERRED, f"{PAIRS_DIR}/step-N.pairs.jsonl"):
        rows.append((_step(row, path, i), _key(row, path, i), share))
    return CallbackLabels(path, rows)


def _step(row: dict[str, Any], path: Path, i: int) -> int | None:
    step = row.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise DatasetError(f"{path}: row {i}: step: must be a positive whole number or absent, got {step!r}")
    return step


def _key(row: dict[str, Any], path: Path, i: int) -> str:
    reference = row.get("reference")
    if reference is None:
        return comparison_key(row["prompt"], row["policy"])
    if not isinstance(reference, str):
        raise DatasetError(f"{path}: row {i}: reference: must be a string or absent, got {reference!r}")
    return comparison_key(row["prompt"], row["policy"], reference)
