"""What the two learners share: the seeded split, the tally's checks, and the estimates as the reports print them."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter.errors import ArgumentError
from charter.lab.api import learn_rubrics
from charter.lab.infer import HeldOut
from charter.lab.learner import LabReport, LearnerRun, LearnOptions, estimate_text, split
from charter.lab.rubrics import Gain, Share
from charter.lab.votes import read_pairs
from charter.testing.lab import make_pairs, register_lab_models
from tests.support.tiny_models import write_jsonl

register_lab_models()


def test_an_estimate_prints_with_its_interval_and_n_or_as_not_available() -> None:
    assert estimate_text(HeldOut(value=0.8125, ci=[0.7, 0.9], n=40)) == "0.812 [0.700, 0.900] (n=40)"
    assert estimate_text(Share(value=1.0, ci=None, n=3, failed=1)) == "1.000 (n=3)"
    assert estimate_text(Gain(value=0.25, ci=[-0.1, 0.5], n=18), signed=True) == "+0.250 [-0.100, +0.500] (n=18)"
    assert estimate_text(Share(value=None, ci=None, n=0)) == estimate_text(None) == "n/a"


def test_the_split_is_seeded_and_holds_out_at_least_one_pair(tmp_path: Path) -> None:
    pairs = read_pairs(write_jsonl(tmp_path / "pairs.jsonl", make_pairs(20, "number", seed=1)), 0)
    train, test = split(pairs, 0.3, seed=4)
    assert (train, test) == split(pairs, 0.3, seed=4) and len(test) == 6
    assert sorted(train + test) == list(range(20))
    assert len(split(pairs, 0.01, seed=4)[1]) == 1


def test_the_pairs_asked_about_are_a_seeded_sample_of_the_training_pairs_in_order(tmp_path: Path) -> None:
    pairs = read_pairs(write_jsonl(tmp_path / "pairs.jsonl", make_pairs(30, "number", seed=1)), 0)
    run = LearnerRun.start(pairs, LearnOptions(5, 3, 0.3, 2, 8, "x"), "learning")
    asked = run.ask()
    assert len(asked) == 5 and run.asked == sorted(run.asked) and set(run.asked) <= set(run.train)
    assert [lp.pair.pair_id for lp in asked] == [pairs[i].pair.pair_id for i in run.asked]
    assert run.report_fields("p", "j", None)["constitution_hash"] == ""


def test_too_few_pairs_are_refused_naming_the_learner(tmp_path: Path) -> None:
    few = write_jsonl(tmp_path / "few.jsonl", make_pairs(5, "number", seed=1))
    with pytest.raises(ArgumentError, match="^pairs: 5 labelled pairs: learning a rubric needs at least 10$"):
        learn_rubrics(few, "scripted:rubric-proposer", judge="scripted:checklist-judge", cache=None)


def test_the_common_report_is_abstract() -> None:
    with pytest.raises(TypeError):
        LabReport()  # type: ignore[abstract]
