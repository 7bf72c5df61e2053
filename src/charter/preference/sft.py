"""The SFT file of a run, data/sft.*, written here or, for a large run, by a second process while this one writes
the preferences (a core otherwise idle at the end of a run: at a million prompts the two files took ~200 s one
after the other).

The second process is a fresh Python (`python -m charter.preference.sft RUN_DIR`, the settings as JSON on its
stdin, its counts as JSON on the last line of its stdout): not a fork of this one, which may hold threads and
locks, and not multiprocessing's spawn, which runs the caller's main script again.
"""

from __future__ import annotations

import json
import subprocess
import sys

from charter.errors import DatasetError
from charter.preference.manifest import DatasetSettings
from charter.preference.rows import sft_rows
from charter.runs.files import RunFiles
from charter.runs.store import RunStore


def write_sft(store: RunStore, settings: DatasetSettings) -> dict[str, int]:
    """Write data/sft.* for these settings; returns the SFT counts."""
    counts = {"sft": 0}
    RunFiles(store.run_dir).write_dataset("sft", sft_rows(store, settings, counts))
    return counts


class SFTBeside:
    """`write_sft` in a second process (`main`), started at once; `result()` waits for its counts."""

    def __init__(self, store: RunStore, settings: DatasetSettings) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "charter.preference.sft", str(store.run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.process.stdin.write(settings.model_dump_json())  # type: ignore[union-attr]
        self.process.stdin.close()  # type: ignore[union-attr]

    def result(self) -> dict[str, int]:
        lines = self.process.stdout.read().strip().splitlines() or ["no message"]  # type: ignore[union-attr]
        if self.process.wait() != 0:
            raise DatasetError(f"writing data/sft.* in a second process failed: {lines[-1]}")
        return json.loads(lines[-1])


def main(run_dir: str, settings: str) -> dict[str, int]:
    """The second process: write data/sft.* of the run for these settings (their JSON); returns the counts."""
    with RunStore(run_dir) as store:
        return write_sft(store, DatasetSettings.model_validate_json(settings))


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.stdin.read())))
