"""The JSON view of the status record (charter.pipeline.status): what `charter status RUN --json` prints, the rich
view of `charter status` with nothing left out, for scripts and CI."""

from __future__ import annotations

import json

from charter.pipeline.status import StatusReport

__all__ = ["status_json"]


def status_json(report: StatusReport) -> str:
    """The report as JSON text (what `charter status --json` prints)."""
    return json.dumps(report, indent=2, ensure_ascii=False, default=str)
