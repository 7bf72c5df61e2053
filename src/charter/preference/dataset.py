"""The datasets of a run: data/preferences.* and data/sft.*, built from the run store (the rows:
charter.preference.rows), filtered (charter.preference.filters, run by charter.preference.filters) and written
through the run directory's owner (RunFiles), with their manifest.

The dataset is always rebuilt from the run store: from the items of the settings in effect, with the
stored calibration, so nothing another command wrote (calibration) is ever lost by a rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from charter.preference.filters import Selection, Waterfall
from charter.preference.manifest import DatasetManifest, DatasetSettings, dataset_manifest, store_marker
from charter.preference.rows import judged_rows
from charter.preference.selection import diverse_selection
from charter.preference.sft import SFTBeside, write_sft
from charter.records import CalibrationMap
from charter.runs.counts import unrevised_chains
from charter.runs.files import RunFiles
from charter.runs.store import RunStore


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


#: From this many chains, the SFT file is written by a second process while this one writes the preferences
#: (charter.preference.sft).
SFT_BESIDE = 20_000


def _calibration(store: RunStore, settings: DatasetSettings) -> CalibrationMap | None:
    """The stored calibration where it was fitted on these settings' judge, else None."""
    calibration = store.calibration()
    applies = calibration is not None and calibration.judge_fingerprint == settings.fingerprints.judge
    return calibration if applies else None


def write(store: RunStore, settings: DatasetSettings) -> DatasetManifest:
    """Build the datasets of these settings and write data/preferences.* and data/sft.*; returns the manifest
    (also stored as meta `dataset`). When neither the settings nor the store changed since the files were
    written, they are left as they are."""
    marker = store_marker(store)
    files = RunFiles(store.run_dir)
    last = dataset_manifest(store)
    if (
        last is not None
        and last.settings == settings
        and last.store_marker == marker
        and files.has_dataset("preferences")
        and files.has_dataset("sft")
    ):
        return last
    tallies = {"pairs": 0, "judged": 0, "judge_failures": 0, "unjudged": 0}
    filter_counts: dict[str, int] = {}
    files.data_dir.mkdir(parents=True, exist_ok=True)
    calibration = _calibration(store, settings)
    threshold = calibration.min_confidence if calibration is not None else None
    selection = Selection(
        files.data_dir / ".selection.sqlite", Waterfall(settings.filters, threshold), settings.pairs.strategy
    )

    diverse = diverse_selection(files.data_dir, settings.filters)

    def keep() -> Iterable[int] | None:
        filter_counts.update(selection.run())
        kept = None if filter_counts["preferences"] == selection.total else selection.kept()
        return kept if diverse is None else diverse.choose(kept, filter_counts)

    chains = store.count("chains", "fingerprint = ?", (settings.fingerprints.critique,))
    sft_job = SFTBeside(store, settings) if chains >= SFT_BESIDE else None
    rows = map(selection.add, judged_rows(store, settings, tallies))
    try:
        files.write_dataset("preferences", rows if diverse is None else map(diverse.add, rows), keep)
    finally:
        selection.close()
        if diverse is not None:
            diverse.close()
        sft_counts = sft_job.result() if sft_job is not None else write_sft(store, settings)
    del tallies["unjudged"]
    counts = {**(store.meta("prompt_counts") or {}), **tallies, **filter_counts}
    counts.update(
        chains=sft_counts["sft"]
        + (sft_counts.get("sft_failed_verification", 0) if settings.filters.verify == "drop" else 0),
        chains_unrevised=unrevised_chains(store, settings.fingerprints.critique)
        if (tallies.get("pairs") or 0) < sft_counts["sft"]
        else 0,
        **sft_counts,
    )
    manifest = DatasetManifest(
        settings=settings,
        written_at=now_iso(),
        counts=counts,
        calibration=calibration,
        store_marker=marker,
    )
    store.set_meta(dataset=manifest)
    return manifest


def rewrite(store: RunStore) -> DatasetManifest | None:
    """Write the datasets again with the settings they were last written with (after a calibration, say)."""
    manifest = dataset_manifest(store)
    return write(store, manifest.settings) if manifest is not None else None
