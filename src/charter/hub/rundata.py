"""What a run directory holds for publishing, read through the run's owners (RunFiles, the run store) as records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from charter.agreement.audit import AuditReport, audit_config_for, stored_audit
from charter.agreement.config import AgreementConfig, config_for
from charter.agreement.summary import AgreementSummary, stored_summary
from charter.errors import DatasetError, RunStoreError
from charter.judge.settings import AuditConfig, ConstitutionTestConfig
from charter.lab.checks import ConstitutionTest
from charter.lab.stored import constitution_test_config, stored_test
from charter.preference.manifest import DatasetManifest, dataset_manifest
from charter.preference.stats import JudgeStats, judge_stats
from charter.records import LabelRow, PreferenceRow, SFTRow, UsageRow
from charter.runs import labels as stored
from charter.runs.counts import failure_tallies
from charter.runs.files import RunFiles
from charter.runs.items import stored_pair
from charter.runs.store import RunStore, open_store
from charter.runs.usage import stored_usage


@dataclass
class RunData:
    """Everything about one run that the export folder and the card are built from."""

    run_dir: Path
    run_id: str
    manifest: DatasetManifest
    preferences: list[PreferenceRow]
    sft: list[SFTRow]
    human_labels: list[LabelRow]
    usage: list[UsageRow]
    judge_stats: JudgeStats
    agreement: AgreementSummary | None
    agreement_config: AgreementConfig
    run_config: dict[str, Any]
    constitution_yaml: str | None = None
    audit: AuditReport | None = None
    audit_config: AuditConfig | None = None
    constitution_test: ConstitutionTest | None = None
    constitution_test_config: ConstitutionTestConfig | None = None
    failures: dict[str, dict[str, int]] = field(default_factory=dict)
    """The run's items still failing, by stage and by the kind of their latest failure."""


def _iso(epoch: float) -> str:
    """Label times are stored as epoch seconds; publish them as ISO 8601 UTC."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def label_rows(store: RunStore, run_id: str) -> list[LabelRow]:
    """The human labels (skips left out), each with the pair it labels."""
    out = []
    for label in stored.labels(store):
        pair = stored_pair(store, label.pair_id)
        if label.label == "skip" or pair is None:
            continue
        out.append(
            LabelRow(
                pair_id=label.pair_id,
                annotator=label.annotator,
                label=label.label,
                shown_order=label.shown_order,
                created_at=_iso(label.created_at),
                prompt=pair.prompt,
                response_a=pair.a,
                response_b=pair.b,
                run_id=run_id,
            )
        )
    return out


def read_run(run_dir: str | Path) -> RunData:
    """Load a run directory (one-line error when it is not one or has no preference rows)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunStoreError(f"{run_dir}: no such run directory")
    files = RunFiles(run_dir)
    with open_store(run_dir, read_only=True) as store:
        manifest = dataset_manifest(store)
        preferences = files.preferences()
        if manifest is None or not preferences:
            raise DatasetError(
                f"{files.data_dir}: no preference rows (data/preferences.parquet or .jsonl); run the pipeline first"
            )
        run_id = manifest.settings.run_id
        fingerprints = manifest.settings.fingerprints
        return RunData(
            run_dir=run_dir,
            run_id=run_id,
            manifest=manifest,
            preferences=preferences,
            sft=files.sft(),
            human_labels=label_rows(store, run_id),
            usage=stored_usage(store),
            judge_stats=judge_stats(store, fingerprints, manifest.settings.constitution.principles),
            agreement=stored_summary(store),
            agreement_config=config_for(store),
            run_config=store.run_config() or files.config(),
            constitution_yaml=files.constitution_yaml(),
            audit=stored_audit(store),
            audit_config=audit_config_for(store),
            constitution_test=stored_test(store),
            constitution_test_config=constitution_test_config(store),
            failures=failure_tallies(store, 1, 0).by_kind,
        )
