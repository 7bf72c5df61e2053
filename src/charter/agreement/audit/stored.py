"""The judge audit in a run: stored in the store's meta and written beside the run report."""

from __future__ import annotations

from pathlib import Path

from charter.agreement.audit.markdown import markdown
from charter.agreement.audit.record import AuditReport
from charter.judge.settings import AuditConfig
from charter.runs.store import RunStore

AUDIT_META = "audit"


def stored_audit(store: RunStore) -> AuditReport | None:
    """The latest audit stored in a run (by `judge.audit` or `charter judge audit --pairs RUN_DIR`)."""
    return store.meta_record(AUDIT_META, AuditReport)


def audit_config_for(store: RunStore) -> AuditConfig | None:
    """The `judge.audit` section of the run config in effect, if any."""
    return store.judge_section("audit", AuditConfig)


def save_audit(store: RunStore, report: AuditReport) -> Path:
    """Store the audit in the run (meta `audit`) and write report/audit.md and audit.json beside the report."""
    from charter.runs.files import AUDIT_JSON, AUDIT_MD, RunFiles

    store.set_meta(**{AUDIT_META: report})
    files = RunFiles(store.run_dir)
    files.write_report_text(AUDIT_JSON, report.model_dump_json(indent=1))
    return files.write_report_text(AUDIT_MD, f"# Judge audit\n\n{markdown(report, level=2)}")
