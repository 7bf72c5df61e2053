"""`charter constitutions test`: a judge that ignores the principle's text is flagged, one that follows it is not;
six principles made of three paraphrases of each of two rules fall into the two groups, and two of them reproduce
the six's labels with a third of the calls."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from charter.cli import app
from charter.constitutions import Constitution
from charter.constitutions.importers import dump_constitution_yaml
from charter.lab.api import check_constitution
from charter.lab.votes import principle_from_text
from charter.testing.lab import RULES, make_pairs, register_lab_models
from tests.support.tiny_models import write_jsonl

register_lab_models()

SIX = Constitution(
    name="six",
    principles=[
        principle_from_text(f"{rule}-{k}", RULES[rule][0][k]) for rule in ("concise", "number") for k in range(3)
    ],
)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("lab") / "pairs.jsonl", make_pairs(300, "number", seed=5, noise=0.05))


def test_a_judge_that_ignores_the_principle_is_flagged_and_one_that_follows_it_is_not(pairs: Path) -> None:
    follows = check_constitution(SIX, pairs, "scripted:lab-judge", cache=None)
    ignores = check_constitution(SIX, pairs, "scripted:lab-ignorer", cache=None)
    for s in follows.sensitivity:
        assert s.negated_flip.value is not None and s.negated_flip.value >= 0.9 and not s.insensitive
    for s in ignores.sensitivity:
        assert s.negated_flip.ci is not None and s.negated_flip.ci[1] < 0.1 and s.insensitive
    assert ignores.flagged == [p.id for p in SIX.principles] and follows.flagged == []


def test_paraphrases_cluster_and_two_principles_reproduce_six(pairs: Path) -> None:
    result = check_constitution(SIX, pairs, "scripted:lab-judge", cache=None)
    red = result.redundancy
    found = {pid: k for k, cluster in enumerate(red.clusters) for pid in cluster}
    truth = [0, 0, 0, 1, 1, 1]
    assert adjusted_rand_score(truth, [found[p.id] for p in SIX.principles]) == 1.0
    assert len(red.subset) == 2 and red.subset_reproduces >= 0.97
    assert red.calls_subset * 3 == red.calls_full
    support = {s.principle: s.verdict for s in result.support or []}
    assert support["number-0"] == "supported" and support["concise-0"] != "supported"


def test_the_command_reports_flags_and_what_an_inferred_constitution_adds(pairs: Path, tmp_path: Path) -> None:
    only_concise = Constitution(name="concise", principles=SIX.principles[:1])
    declared = dump_constitution_yaml(only_concise, tmp_path / "declared.yaml")
    inferred = dump_constitution_yaml(
        Constitution(name="inferred", principles=SIX.principles[3:4]), tmp_path / "i.yaml"
    )
    ran = CliRunner().invoke(
        app,
        [
            "constitutions",
            "test",
            str(declared),
            "--pairs",
            str(pairs),
            "--judge",
            "scripted:lab-ignorer",
            "--inferred",
            str(inferred),
            "--cache",
            "",
            "--json",
            str(tmp_path / "t.json"),
            "--markdown",
            str(tmp_path / "t.md"),
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert "insensitive principles (verdicts that ignore the principle's text): concise-0" in " ".join(
        ran.output.split()
    )
    assert "## Sensitivity" in (tmp_path / "t.md").read_text()
    ran = CliRunner().invoke(
        app,
        [
            "constitutions",
            "test",
            str(declared),
            "--pairs",
            str(pairs),
            "--judge",
            "scripted:lab-judge",
            "--inferred",
            str(inferred),
            "--cache",
            "",
            "--json",
            str(tmp_path / "t.json"),
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert '"lacking": [\n  "number-0"\n ]' in (tmp_path / "t.json").read_text()


def test_a_judge_that_decides_nothing_leaves_every_principle_untested_and_fails_the_gate(pairs: Path) -> None:
    """A judge that picks the first-shown response in both orders abstains on every pair: its flip rates cannot be
    measured, so no principle is shown to be used; the gate counts them, and there is nothing to compress."""
    from charter.judge.settings import ConstitutionTestConfig
    from charter.lab.checks import checks_console, checks_markdown, evaluate_constitution_gate
    from charter.providers import register_script

    register_script("lab-first-shown", lambda m, p: "A", lambda m, options: {"A": 0.9, "B": 0.1})
    result = check_constitution(SIX, pairs, "scripted:lab-first-shown", cache=None)
    assert result.flagged == [] and result.untested == [p.id for p in SIX.principles]
    assert all(s.negated_flip.value is None and s.negated_flip.n == 0 for s in result.sensitivity)
    assert result.redundancy.decided == 0
    console = "\n".join(checks_console(result))
    assert console.count("UNTESTED") == 6 and "decide no pair: there is nothing to compress" in console
    assert "| untested |" in checks_markdown(result)
    gate = evaluate_constitution_gate(result, ConstitutionTestConfig(max_insensitive=0))
    assert not gate.passed and "0 principle(s) flagged insensitive and 6 untested" in gate.message
    follows = check_constitution(SIX, pairs, "scripted:lab-judge", cache=None)
    assert follows.untested == [] and 0 < (follows.redundancy.decided or 0) <= 300  # rules tie where they differ
    assert evaluate_constitution_gate(follows, ConstitutionTestConfig(max_insensitive=0)).passed


def test_the_command_prints_its_plan_and_progress_and_refuses_over_max_calls(
    pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from charter.cli import main

    six = dump_constitution_yaml(SIX, tmp_path / "six.yaml")
    argv = ["constitutions", "test", str(six), "--pairs", str(pairs), "--judge", "scripted:lab-judge", "--cache", ""]
    plan = "7,800 judge calls: 300 pairs x (6 principles, each also negated, + the neutral one) x 2 order(s)"
    assert main([*argv, "--max-calls", "5000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --max-calls: the test plans {plan}, over the bound of 5,000: raise it, or test fewer pairs"
    assert main(argv) == 0  # the default bound (50,000) lets it through
    err = capsys.readouterr().err
    assert f"constitution test of six: {plan}" in err
    assert "testing six: 3900/3900" in err  # progress lines off a terminal, in judgments (two calls each)
