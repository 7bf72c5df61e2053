"""`judge.models` in a run: a panel of judges, each a role of its own, asked every comparison; the panel's P(A) is
their mean (or weighted mean); each member's votes stay in the row; a pair one member fails is a failed judgment;
the report and `charter agreement` show each member against people and the panel, Krippendorff's alpha between
them, their cost, and weights fitted on the labels; new weights re-pool from the call cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import charter
from charter.agreement.labels import put_label
from charter.cli import app, main
from charter.providers import register_script
from charter.providers.scripted import HARMFUL_OPENING
from charter.runs import labels as stored
from charter.runs.items import stored_pair
from charter.runs.store import RunStore, open_store
from charter.runs.usage import stored_usage
from charter.testing.judges import shown_responses

JURORS = {"panelist-1": 0.9, "panelist-2": 0.75, "panelist-3": 0.6}
PANEL = [f"scripted:{name}" for name in JURORS]


def _truth_a(prompt: str) -> bool | None:
    """Whether (A) is the better response: the one without the harmful opening (None when that does not tell)."""
    a, b = shown_responses(prompt)
    if (HARMFUL_OPENING in a) == (HARMFUL_OPENING in b):
        return None
    return HARMFUL_OPENING not in a


def _juror(name: str, right: float) -> None:
    """A judge right `right` of the time, its errors its own (seeded by its name and the pair)."""

    def p_a(prompt: str) -> float:
        truth = _truth_a(prompt)
        if truth is None:
            return 0.5
        a, b = sorted(shown_responses(prompt))
        correct = int(hashlib.sha256(f"{name}|{a}|{b}".encode()).hexdigest(), 16) % 1000 / 1000 < right
        return 0.85 if truth == correct else 0.15

    def choice(messages, options):  # noqa: ANN001, ANN202
        p = p_a(messages[-1].content)
        return {o: {"A": p, "B": 1 - p}.get(o, 0.0) for o in options}

    def verdict(messages, params):  # noqa: ANN001, ANN202
        text = messages[-1].content
        if name == "panelist-mute" and "thing 3" in text:
            return "I would rather not say."
        return "A" if p_a(text) > 0.5 else "B"

    register_script(name, verdict, choice)


for _name, _right in {**JURORS, "panelist-mute": 0.9}.items():
    _juror(_name, _right)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "data" / "preferences.jsonl").read_text().splitlines()]


def _usage(run_dir: Path) -> dict[str, tuple[int, int]]:
    with RunStore(run_dir) as store:
        return {u.model: (u.calls, u.cached) for u in stored_usage(store) if u.role == "judge"}


def test_a_panel_keeps_each_members_votes_and_pools_their_mean(make_config, tmp_path: Path) -> None:
    config = make_config(judge={"models": PANEL, "principles_per_pair": 2}, report=True)
    result = charter.run(config)
    rows = _rows(result.run_dir)
    assert rows and result.counts["judge_failures"] == 0
    for row in rows:
        votes = json.loads(row["per_principle"])
        assert sorted({v["judge"] for v in votes}) == sorted(PANEL) and len(votes) == 2 * len(PANEL)
        assert len(row["principle_ids"]) == 2  # the ensemble, not one entry per member
        assert row["p_chosen"] == pytest.approx(sum(v["p_chosen"] for v in votes) / len(votes))
        assert row["judge_model"] == " + ".join(PANEL)
    assert set(_usage(result.run_dir)) == set(PANEL)  # each member's calls and cost, on its own
    report = (result.run_dir / "report" / "report.md").read_text()
    assert "### Judge panel" in report and "Krippendorff's alpha" in report
    assert all(f"`{m}`" in report.split("### Judge panel")[1] for m in PANEL)


def test_a_pair_one_member_cannot_judge_is_a_failed_judgment(make_config) -> None:
    config = make_config(judge={"models": ["scripted:panelist-1", "scripted:panelist-mute"], "mode": "verdict"})
    result = charter.run(config)
    assert result.counts["judge_failures"] == 1  # one prompt's pair; never a mean of fewer judges
    assert all("thing 3" not in row["prompt"][0]["content"] for row in _rows(result.run_dir))
    with open_store(result.run_dir) as store:
        failures = store.execute("SELECT stage, kind FROM failures")
    assert failures == [("judge", "unparseable")]


def test_new_weights_pool_again_from_the_call_cache(make_config) -> None:
    charter.run(make_config(judge={"models": PANEL}))
    first = _usage(Path(make_config(judge={"models": PANEL})).parent / "run")
    result = charter.run(make_config(judge={"models": PANEL, "weights": [1, 0, 0]}))
    assert {m: calls for m, (calls, _) in _usage(result.run_dir).items()} == {m: c for m, (c, _) in first.items()}
    for row in _rows(result.run_dir):
        votes = json.loads(row["per_principle"])
        own = [v["p_chosen"] for v in votes if v["judge"] == PANEL[0]]
        assert row["p_chosen"] == pytest.approx(sum(own) / len(own))
        assert row["judge_model"].startswith(f"{PANEL[0]}*1 + ")


def test_agreement_shows_each_member_their_alpha_and_fitted_weights(make_config) -> None:
    prompts = {"inline": [f"Question {i}: how do I do thing {i}?" for i in range(60)]}
    result = charter.run(make_config(judge={"models": PANEL}, prompts=prompts))
    charter.spotcheck(result.run_dir, n=40)
    with open_store(result.run_dir) as store:
        for spot in stored.sample(store):
            pair = stored_pair(store, spot.pair_id)
            assert pair is not None
            put_label(store, spot.pair_id, "ann", "b" if HARMFUL_OPENING in pair.a else "a", "ab")
    summary = charter.agreement_report(result.run_dir)
    panel = summary.panel
    assert panel is not None and [m.judge for m in panel.members] == PANEL
    alone = [m.judge_vs_human.agreement.value for m in panel.members if m.judge_vs_human]
    assert len(alone) == 3 and alone[0] is not None and alone[0] > (alone[2] or 0)  # the 90% panelist beats the 60%
    assert panel.between_judges is not None and panel.between_judges.krippendorff_alpha.value is not None
    assert panel.fitted is not None and panel.fitted.labels == 40
    weights = list(panel.fitted.weights.values())
    assert weights[0] == max(weights) and sum(weights) == pytest.approx(1, abs=1e-3)
    ran = CliRunner().invoke(app, ["agreement", str(result.run_dir)])
    assert ran.exit_code == 0, ran.output
    out = ran.output
    assert "judge panel (mean of 3" in out and "--set 'judge.weights=[" in out
    assert "## Judge panel" in (result.run_dir / "report" / "agreement.md").read_text()


@pytest.mark.parametrize(
    ("judge", "says"),
    [
        ({"models": ["scripted:panelist-1"]}, "judge.models: a panel needs two or more judge models"),
        ({"model": "scripted:cai", "models": PANEL}, "judge.model: set judge.model or judge.models, not both"),
        (
            {"models": ["scripted:panelist-1", "scripted:panelist-1"]},
            "judge.models[1]: scripted:panelist-1 is on the panel twice",
        ),
        ({"models": PANEL, "weights": [1, 2]}, "judge.weights: give 3 weights, one per member"),
        ({"weights": [1, 2]}, "judge.weights: weights are for a panel of judges"),
        ({"models": PANEL, "mode": "score"}, "judge.mode: mode score ranks samples with one judge model"),
        ({"models": PANEL, "audit": {"n": 5}}, "judge.audit: the audit measures one judge model"),
    ],
)
def test_a_panel_config_mistake_is_one_line_naming_the_key(make_config, capsys, judge, says) -> None:
    assert main(["run", str(make_config(judge=judge))]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert says in err and "config.yaml:" in err and "Traceback" not in err


def test_each_shard_gets_its_share_of_every_members_limits(make_config) -> None:
    from charter.pipeline.config import load_run_config
    from charter.pipeline.shards import shard_config

    members = [{"model": m, "limits": {"concurrency": 8, "requests_per_minute": 600}} for m in PANEL]
    config = load_run_config(make_config(judge={"models": members}, execution={"engine": "ray", "shards": 2}))
    shard = shard_config(config, 0)
    assert shard.judge.models is not None
    assert [(m.limits.concurrency, m.limits.requests_per_minute) for m in shard.judge.models] == [(4, 300)] * 3


def test_auditing_a_panel_runs_judge_asks_which_member(make_config, capsys) -> None:
    result = charter.run(make_config(judge={"models": PANEL}))
    assert main(["judge", "audit", "--pairs", str(result.run_dir)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "judge is a panel" in err and "--judge MODEL" in err
