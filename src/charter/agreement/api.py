"""Python API: spot-check sampling, agreement reports (with calibration), the gate, label export/import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import numpy as np

from charter.agreement import calibration as cal
from charter.agreement.config import AgreementConfig, config_for
from charter.agreement.gate import GateResult, evaluate_gate, require_gate
from charter.agreement.labels import require_judged
from charter.agreement.report import Observations, collect, compute_summary, to_markdown
from charter.agreement.sampling import spotcheck
from charter.agreement.summary import AgreementSummary, CalibrationFit
from charter.api_args import ConfigArg, public
from charter.errors import ArgumentError
from charter.preference import dataset
from charter.preference.manifest import dataset_manifest
from charter.records import CalibrationMethod
from charter.runs.files import AGREEMENT_MD, RELIABILITY_PNG, RunFiles
from charter.runs.store import RunStore, open_store
from charter.yamlio import config_from

__all__ = [
    "spotcheck",
    "agreement_report",
    "calibrate",
    "evaluate_gate",
    "require_gate",
    "GateResult",
    "AgreementConfig",
    "AgreementSummary",
]

METHODS = ("platt", "temperature", "isotonic", "none")


def _decisive(obs: Observations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = obs.human != 2
    return obs.p_a[keep], (obs.human[keep] == 0).astype(float), obs.pair_ids[keep]


def _min_confidence(store: RunStore, config: AgreementConfig) -> float:
    """The calibrated confidence threshold: the agreement override, else the dataset's filters.min_confidence."""
    if config.min_confidence is not None:
        return config.min_confidence
    manifest = dataset_manifest(store)
    return manifest.settings.filters.min_confidence if manifest else 0.0


def calibrate(
    store: RunStore, config: AgreementConfig, method: CalibrationMethod | Literal["none"] | None = None
) -> CalibrationFit:
    """Fit the judge's P(A) to the decisive human labels, store the map (joined into every later dataset
    write) and rewrite the dataset with it; writes the reliability diagram."""
    method = method or config.calibration
    if method == "none":
        return CalibrationFit(skipped="calibration: none")
    judged = require_judged(store)
    p, y, groups = _decisive(collect(store, judged, config))
    if len(p) < config.min_calibration_labels or len(set(y.tolist())) < 2:
        return CalibrationFit(
            skipped=f"needs >= {config.min_calibration_labels} decisive labels with both A and B "
            f"preferred (have {len(p)})"
        )
    fingerprints = store.fingerprints()
    min_confidence = _min_confidence(store, config)
    calibration = cal.fit(
        method,
        p,
        y,
        judge_fingerprint=fingerprints.judge if fingerprints else "",
        min_confidence=min_confidence,
        fitted_at=dataset.now_iso(),
    )
    after = cal.apply(calibration, p)
    oof = cal.cross_fitted(method, p, y, groups)
    files = RunFiles(store.run_dir)
    cal.reliability_diagram(
        str(files.report_path(RELIABILITY_PNG)),
        p,
        after,
        y,
        config.ece_bins,
        f"judge calibration ({method}, n={len(p)})",
    )
    store.set_meta(calibration=calibration)
    dataset.rewrite(store)
    return CalibrationFit(
        method=method,
        labels=int(len(p)),
        ece_before=cal.ece(p, y, config.ece_bins),
        ece_after=cal.ece(after, y, config.ece_bins),
        ece_after_cv=None if oof is None else cal.ece(oof, y, config.ece_bins),
        temperature=calibration.temperature,
        min_confidence=min_confidence,
        reliability_png=f"{files.report_dir.name}/{RELIABILITY_PNG}",
    )


@public
def agreement_report(
    run_dir: str | Path,
    config: ConfigArg[AgreementConfig] | None = None,
    calibration: str | None = None,
    write: bool = True,
) -> AgreementSummary:
    """Judge vs human agreement of a run: figures with 95% CIs, breakdowns, baselines and a calibration fit.

    With `write`, stores the summary in the run store (meta `agreement`) and the calibration map (meta
    `calibration`), writes report/agreement.md and report/reliability.png, and rewrites data/preferences.*
    with `p_chosen_calibrated`.

    Args:
        run_dir: The run directory, with a labeled spot-check sample.
        config: The agreement settings (an `AgreementConfig`, a dict of its fields or a YAML file); None uses the
            run config's `agreement:` section.
        calibration: `platt`, `temperature`, `isotonic` or `none`; None uses `config.calibration`.
        write: Store the summary and the calibration and write the files; False only computes the figures (no
            calibration is fitted).

    Returns:
        The summary: the judge's agreement and kappa against the human labels (with and without ties), humans
        against each other, baselines, breakdowns by principle and confidence, and with `write` the calibration
        fit (or why none was fitted).

    Raises:
        ArgumentError: `calibration` is not one of the methods.
        RunStoreError: `run_dir` is not a run directory, or the run has no judged pairs yet.
        ConfigError: The run config's `agreement:` section is not valid.
        NoLabels: Nobody has labeled a sampled pair yet.
    """
    if calibration not in (None, *METHODS):
        raise ArgumentError("calibration", f"{calibration!r}: use {', '.join(METHODS)}")
    config = None if config is None else config_from(AgreementConfig, config, "config")
    store = open_store(run_dir, read_only=not write)
    try:
        config = config or config_for(store)
        summary = compute_summary(store, config)
        if write:
            chosen = cast("CalibrationMethod | Literal['none'] | None", calibration)  # one of METHODS: checked above
            summary.calibration = calibrate(store, config, chosen)
            store.set_meta(agreement=summary)
            RunFiles(run_dir).write_report_text(AGREEMENT_MD, to_markdown(summary))
        return summary
    finally:
        store.close()
