"""Self-BLEU's 95% interval covers the mean self-BLEU of n texts at the n it is shown for: simulated on the shared
red-team prompts (a population of 1,139 real prompts), drawing n of them at a time, as the agreement intervals'
coverage is checked. Below 5 texts no interval is shown at all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from charter.stats.diversity import bleu_figure, self_bleu
from charter.stats.intervals import MIN_SET_ITEMS

#: draws that fix the truth (the mean self-BLEU at n), and draws whose intervals are checked against it
TRUTH_DRAWS, DRAWS = 2000, 600


@pytest.fixture(scope="module")
def prompts(shared_data: Path) -> list[str]:
    texts = []
    for name in ("red_team_donotanswer.jsonl", "red_team_harmbench.jsonl"):
        lines = (shared_data / "prompts" / name).read_text(encoding="utf-8").splitlines()
        texts += [json.loads(line)["prompt"] for line in lines if line.strip()]
    return texts


def _draw(prompts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    return [prompts[i] for i in rng.choice(len(prompts), n, replace=False)]


def _self_bleu(texts: list[str]) -> float:
    value = self_bleu(texts)
    assert value is not None
    return value


@pytest.mark.parametrize("n", [5, 10, 30])
def test_self_bleus_interval_covers_the_mean_at_n(prompts: list[str], n: int) -> None:
    rng = np.random.default_rng(n)
    truth = float(np.mean([_self_bleu(_draw(prompts, n, rng)) for _ in range(TRUTH_DRAWS)]))
    held, shown = 0, 0
    for _ in range(DRAWS):
        figure = bleu_figure(_draw(prompts, n, rng))
        if figure.ci95 is not None and figure.value is not None:
            shown += 1
            held += figure.ci95[0] <= truth <= figure.ci95[1]
            assert 0.0 <= figure.ci95[0] <= figure.value <= figure.ci95[1] <= 1.0
    assert shown >= 0.95 * DRAWS  # an interval nearly always (none only where no text changes the figure)
    assert held / shown >= 0.93, f"covered the mean self-BLEU of {n} prompts ({truth:.4f}) in {held}/{shown} draws"


@pytest.mark.parametrize("n", [2, 3, 4])
def test_no_interval_is_shown_below_the_n_where_it_covers(prompts: list[str], n: int) -> None:
    assert n < MIN_SET_ITEMS
    rng = np.random.default_rng(n)
    for _ in range(50):
        figure = bleu_figure(_draw(prompts, n, rng))
        assert figure.value is not None and figure.ci95 is None and "no interval" in (figure.note or "")
