"""Python API: spot-check sampling, agreement reports (with calibration), the gate, label export/import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from charter.agreement import calibration as cal
from charter.agreement.config import AgreementConfig, config_from_run
from charter.agreement.dataset import apply_calibration, configured_min_confidence
from charter.agreement.gate import GateResult, evaluate_gate, require_gate
from charter.agreement.labels import open_labels, require_judged
from charter.agreement.markdown import to_markdown
from charter.agreement.report import Observations, collect, compute_summary
from charter.agreement.sampling import spotcheck
from charter.pipeline.store import RunStore

__all__ = ["spotcheck", "agreement_report", "calibrate", "evaluate_gate", "require_gate", "GateResult",
           "AgreementConfig"]


def _decisive(obs: Observations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = obs.human != 2
    return obs.p_a[keep], (obs.human[keep] == 0).astype(float), obs.pair_ids[keep]


def calibrate(store: RunStore, config: AgreementConfig, method: str | None = None) -> dict[str, Any]:
    """Fit the judge's P(A) to the decisive human labels, write the reliability diagram and the dataset column."""
    method = method or config.calibration
    if method == "none":
        return {"skipped": "calibration: none"}
    judged = require_judged(store)
    p, y, groups = _decisive(collect(store, judged, config))
    if len(p) < config.min_calibration_labels or len(set(y.tolist())) < 2:
        return {"skipped": f"needs >= {config.min_calibration_labels} decisive labels with both A and B preferred "
                           f"(have {len(p)})"}
    calibrator = cal.fit(method, p, y)
    after = calibrator(p)
    oof = cal.cross_fitted(method, p, y, groups)
    report_dir = store.run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    cal.reliability_diagram(str(report_dir / "reliability.png"), p, after, y, config.ece_bins,
                            f"judge calibration ({method}, n={len(p)})")
    min_conf = configured_min_confidence(store.meta("config"), config.min_confidence)
    result = {
        "method": method, "labels": int(len(p)),
        "ece_before": cal.ece(p, y, config.ece_bins), "ece_after": cal.ece(after, y, config.ece_bins),
        "ece_after_cv": None if oof is None else cal.ece(oof, y, config.ece_bins),
        "reliability_png": "report/reliability.png",
        "dataset": apply_calibration(store, judged, calibrator, min_conf),
    }
    if hasattr(calibrator, "temperature"):
        result["temperature"] = float(calibrator.temperature)
    return result


def agreement_report(run_dir: str | Path, config: AgreementConfig | None = None, calibration: str | None = None,
                     write: bool = True) -> dict[str, Any]:
    """Judge vs human agreement of a run: figures with 95% CIs, breakdowns, baselines, calibration.

    With `write`, stores the summary in the run store (meta `agreement`), writes report/agreement.md,
    report/reliability.png and the calibrated column of data/preferences.*.
    """
    store = open_labels(run_dir)
    try:
        config = config or config_from_run(store.meta("config"))
        summary = compute_summary(store, config)
        if write:
            summary["calibration"] = calibrate(store, config, calibration)
            store.set_meta(agreement=summary)
            report_dir = Path(run_dir) / "report"
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / "agreement.md").write_text(to_markdown(summary), encoding="utf-8")
        return summary
    finally:
        store.close()
