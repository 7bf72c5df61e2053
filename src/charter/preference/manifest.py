"""What a written dataset was made with: the settings of exactly the rows in data/*, for the report and card.

`DatasetSettings` is stored when a run starts (store meta `settings`, the settings in effect) and copied
into the `DatasetManifest` whenever the dataset files are written (store meta `dataset`), so the report
and the card describe the rows they cover even when the config changed since.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from charter.checklist.store import ChecklistConfig
from charter.critique.config import CritiqueConfig
from charter.judge.settings import JudgeSettings
from charter.preference.config import FiltersConfig, PairingConfig
from charter.providers.base import SamplingParams
from charter.records import CalibrationMap, Fingerprints, Provenance, Record, fingerprint, fingerprint_strings
from charter.runs.counts import active_prompt_ids, newest_items
from charter.runs.store import RunStore


class ConstitutionInfo(Record):
    """The constitution a run uses."""

    name: str
    """Its name."""
    version: str
    """Its version string."""
    hash: str
    """sha256 of its parsed content."""
    principles: list[str]
    """Its principle ids, in order."""


class DatasetSettings(Record):
    """Every setting that shapes a run's rows."""

    run_id: str
    """The run."""
    created_at: str
    """When the run started (ISO 8601, UTC)."""
    constitution: ConstitutionInfo
    """The constitution."""
    fingerprints: Fingerprints
    """Fingerprints of the critique, sample, judge and dataset settings."""
    models: dict[str, str]
    """Model string per role (policy, critic, judge)."""
    sampling: dict[str, SamplingParams]
    """Sampling per role (policy, critic, judge, samples)."""
    critique: CritiqueConfig | None
    """Critique settings (null when the run makes no revision pairs)."""
    judge: JudgeSettings
    """How the judge compared."""
    pairs: PairingConfig
    """Which pairs were built and kept."""
    filters: FiltersConfig
    """Dataset filters."""
    seed: int
    """The run seed (principle sampling, shuffles)."""
    checklist: ChecklistConfig | None = None
    """Each prompt's checklist: its source, writer and, for judge mode `checklist`, the aggregation chosen (null
    without a `checklist:` section)."""

    def provenance(self) -> Provenance:
        """The provenance every row of this dataset carries (built once, here)."""
        return Provenance(
            run_id=self.run_id,
            created_at=self.created_at,
            constitution_name=self.constitution.name,
            constitution_hash=self.constitution.hash,
            policy_model=self.models.get("policy"),
            critic_model=self.models.get("critic"),
            settings_fingerprint=self.fingerprints.dataset,
        )


class DatasetManifest(Record):
    """The dataset files as last written: their settings, counts and calibration."""

    settings: DatasetSettings
    """The settings of the rows."""
    written_at: str
    """When the files were written (ISO 8601, UTC)."""
    counts: dict[str, int] = Field(default_factory=dict)
    """Per-stage counts and the filter waterfall of this build."""
    calibration: CalibrationMap | None = None
    """The calibration joined into `p_chosen_calibrated`, if one applied."""
    store_marker: dict[str, Any] = Field(default_factory=dict)
    """The run store's state the files were built from (newest row per table, prompts, calibration): when it and
    the settings are unchanged, the files are already what a rebuild would write."""


def store_marker(store: RunStore) -> dict[str, Any]:
    """What the dataset depends on in the store: the newest row of each item table (a replaced row gets a new
    rowid), the prompt set in use and the calibration."""
    marker: dict[str, Any] = newest_items(store)
    marker["prompts"] = fingerprint_strings(active_prompt_ids(store))
    calibration = store.calibration()
    marker["calibration"] = fingerprint(calibration.model_dump(mode="json")) if calibration else None
    return marker


def current_settings(store: RunStore) -> DatasetSettings | None:
    """The settings in effect (stored when the run last started)."""
    return store.meta_record("settings", DatasetSettings)


def dataset_manifest(store: RunStore) -> DatasetManifest | None:
    """The manifest of the dataset files as last written."""
    return store.meta_record("dataset", DatasetManifest)
