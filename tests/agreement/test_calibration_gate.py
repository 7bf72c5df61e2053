"""Calibration (ECE, fitted maps, the dataset column and filter) and the publishing gate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from charter.agreement import calibration as cal
from charter.agreement.api import agreement_report
from charter.agreement.config import AgreementConfig
from charter.agreement.gate import evaluate_gate, require_gate
from charter.agreement.labels import new_label, open_labels, put_labels
from charter.errors import GateFailed
from charter.preference import dataset
from charter.preference.manifest import dataset_manifest
from charter.runs.files import RunFiles
from charter.stats.agreement import METRICS
from tests.support.rundir import RunBuilder

from .conftest import make_run


def test_ece_hand_value() -> None:
    # bin 1: p .10, .15 -> mean .125 vs 0; bin 9: .90, .95 -> .925 vs .5
    assert cal.ece(np.array([0.1, 0.9, 0.95, 0.15]), np.array([0, 1, 0, 0])) == pytest.approx((0.25 + 0.85) / 4)


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic"])
def test_fitted_maps_reduce_ece_of_an_overconfident_judge(method: str) -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0.2, 0.8, 400)
    y = (rng.uniform(size=400) < true).astype(float)
    judge = cal.sigmoid(3 * cal.logit(true))  # overconfident: logits tripled
    fitted = cal.fit(method, judge, y)
    calibrated = cal.apply(fitted, judge)
    assert cal.ece(calibrated, y) < cal.ece(judge, y) / 2
    # the stored map reproduces the fitted one (it is all that survives in the run store)
    again = type(fitted).model_validate_json(fitted.model_dump_json())
    assert np.allclose(cal.apply(again, judge), calibrated)
    if method == "temperature":
        assert fitted.temperature == pytest.approx(3, rel=0.35)


def overconfident_run(tmp_path: Path, n: int = 40, config: dict | None = None) -> Path:
    """Judge says 0.95 / 0.05; humans agree 70% of the time."""
    rng = np.random.default_rng(3)
    items = [{"pair_id": f"q{i}", "p_a": 0.95 if i % 2 == 0 else 0.05} for i in range(n)]
    run = make_run(tmp_path / "run", items, config=config, preferences=True)
    with RunBuilder.reopen(run) as builder:
        builder.spot_sample((f"q{i}", "harm", "ab") for i in range(n))
    with open_labels(run) as store:
        labels = []
        for i, it in enumerate(items):
            judge_pick = "a" if it["p_a"] > 0.5 else "b"
            other = "b" if judge_pick == "a" else "a"
            labels.append(new_label(f"q{i}", "alice", judge_pick if rng.uniform() < 0.7 else other, "ab"))
        put_labels(store, labels)
    return run


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "data" / "preferences.jsonl").read_text().splitlines()]


def test_calibration_writes_dataset_column_and_refilters(tmp_path: Path) -> None:
    run = overconfident_run(tmp_path, config={"filters": {"min_confidence": 0.25}})
    s = agreement_report(run, AgreementConfig(bootstrap_samples=100, calibration="temperature"))
    c = s.calibration
    assert c.ece_after < c.ece_before and c.temperature > 1 and c.min_confidence == 0.25
    assert (run / "report" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # calibrated confidence is about 0.7 < 0.5 + 0.25: every row is dropped by the calibrated filter
    assert (run / "data" / "preferences.jsonl").read_text() == ""
    with open_labels(run) as store:
        counts = dataset_manifest(store).counts
    assert counts["dropped_low_confidence_calibrated"] == 40 and counts["preferences"] == 0
    # a looser margin in the agreement config brings the rows back with their calibrated value
    s = agreement_report(run, AgreementConfig(bootstrap_samples=100, min_confidence=0.1))
    rows = _rows(run)
    assert len(rows) == 40
    expected = float(cal.sigmoid(cal.logit(np.array([0.95])) / s.calibration.temperature)[0])
    by_id = {r["pair_id"]: r for r in rows}
    assert by_id["q0"]["p_chosen_calibrated"] == pytest.approx(expected, abs=1e-6)  # chosen is a
    assert by_id["q1"]["p_chosen_calibrated"] == pytest.approx(expected, abs=1e-6)  # chosen is b: 1 - cal(0.05)
    table = pq.read_table(run / "data" / "preferences.parquet").to_pylist()
    assert len(table) == 40 and table[0]["p_chosen_calibrated"] == pytest.approx(
        by_id[table[0]["pair_id"]]["p_chosen_calibrated"]
    )


def test_a_rebuild_of_the_dataset_keeps_the_calibration(tmp_path: Path) -> None:
    """`charter agreement`, then anything that writes the dataset again (a re-run): the column survives."""
    run = overconfident_run(tmp_path)
    agreement_report(run, AgreementConfig(bootstrap_samples=100, calibration="temperature"))
    before = {r["pair_id"]: r["p_chosen_calibrated"] for r in _rows(run)}
    assert len(before) == 40 and None not in before.values()
    with RunBuilder.reopen(run) as builder:
        builder.write_dataset()  # what `charter run` does at its end
    assert {r["pair_id"]: r["p_chosen_calibrated"] for r in _rows(run)} == before
    rows = RunFiles(run).preferences()
    assert sum(r.p_chosen_calibrated is not None for r in rows) == 40


def test_calibration_applies_only_to_the_judge_settings_it_was_fitted_on(tmp_path: Path) -> None:
    run = overconfident_run(tmp_path)
    agreement_report(run, AgreementConfig(bootstrap_samples=100, calibration="temperature"))
    with RunBuilder.reopen(run) as builder:  # two pairs judged again under other judge settings
        other = builder.settings.model_copy(update={"fingerprints": builder.fp.model_copy(update={"judge": "other"})})
        for pair_id in ("q0", "q1"):
            builder.judgment(pair_id, 0.9, fingerprint="other")
        manifest = dataset.write(builder.store, other)
    assert manifest.calibration is None
    rows = _rows(run)
    assert len(rows) == 2 and all(r["p_chosen_calibrated"] is None for r in rows)


def test_calibration_skipped_with_too_few_labels(hand_run: Path) -> None:
    s = agreement_report(hand_run, AgreementConfig(bootstrap_samples=100, min_calibration_labels=20))
    assert "needs >= 20" in s.calibration.skipped


def test_gate(hand_run: Path, tmp_path: Path) -> None:
    base = dict(bootstrap_samples=200, calibration="none")
    assert evaluate_gate(hand_run, AgreementConfig(**base)).passed  # no bar configured
    ok = require_gate(hand_run, AgreementConfig(min_kappa=0.4, **base))  # kappa is 0.5
    assert ok.passed and ok.figure == "kappa" and ok.value == pytest.approx(0.5) and ok.bar == 0.4
    with pytest.raises(GateFailed, match=r"Cohen's kappa .* 0\.500, below the bar 0\.6.* pass --override-gate"):
        require_gate(hand_run, AgreementConfig(min_kappa=0.6, **base))
    lower = evaluate_gate(hand_run, AgreementConfig(min_agreement=0.7, use_lower_ci_bound=True, **base))
    assert not lower.passed and lower.figure == "agreement" and lower.value < 0.7 and "lower 95% bound" in lower.message
    forced = require_gate(hand_run, AgreementConfig(min_kappa=0.6, **base), override=True)
    assert not forced.passed and forced.overridden and "overridden" in forced.message
    empty = make_run(tmp_path / "empty", [{"pair_id": "x", "p_a": 0.7}])
    with pytest.raises(GateFailed, match="no human labels yet"):
        require_gate(empty, AgreementConfig(min_agreement=0.6))


def test_a_metric_the_table_gates_is_barred_by_its_config_field(hand_run: Path, monkeypatch) -> None:
    """A gated metric is one entry of the agreement metrics table (and its `min_<name>` field): the gate reads the
    bar, names the metric as the entry says, and counts the observations the entry counts."""
    assert [f"min_{m.name}" for m in METRICS.values() if m.gate] == ["min_agreement", "min_kappa"]
    assert list(AgreementConfig.bar_fields()) == ["min_kappa", "min_agreement"]  # the config's order: kappa first
    monkeypatch.setitem(METRICS, "kappa_with_ties", replace(METRICS["kappa_with_ties"], gate="Cohen's kappa (ties)"))

    class WithTies(AgreementConfig):
        min_kappa_with_ties: float | None = None
        """Gate: the judge-vs-human Cohen's kappa, ties a third category."""

    base = dict(bootstrap_samples=200, calibration="none")
    failed = evaluate_gate(hand_run, WithTies(min_kappa=0.4, min_kappa_with_ties=0.99, **base))
    assert not failed.passed and failed.figure == "kappa_with_ties" and failed.bar == 0.99
    assert "failed: Cohen's kappa (ties) (judge vs human, ties a third category, n=" in failed.message
    passed = evaluate_gate(hand_run, WithTies(min_kappa=0.4, min_kappa_with_ties=-1, **base))
    assert passed.passed and passed.figure == "kappa_with_ties" and "Cohen's kappa 0.500 >= 0.4; " in passed.message
    assert "no agreement gate was configured (agreement.min_kappa / min_agreement / min_human" in (
        evaluate_gate(hand_run, AgreementConfig(**base)).message
    )
