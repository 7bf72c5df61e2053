"""`charter.publish`: gate, export, secret scan, then one commit to a Hub dataset repository (or a dry-run folder).

The token comes from `HF_TOKEN` or the huggingface_hub login; it is passed to huggingface_hub and nowhere else,
and it is redacted from any error message.

Every folder charter writes for upload is scanned for secrets (the patterns live in charter.redaction). A match is
reported with its location (file, row or line, column) and a redacted form: the secret itself
never reaches a message, a log or the upload.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import pyarrow.parquet as pq

from charter.agreement.gate import GateResult, Gates, evaluate_audit_gate, evaluate_gate
from charter.api_args import Range, public
from charter.errors import ArgumentError, GateFailed, HubError, SecretFound, missing_extra
from charter.hub.card import RunData, read_run
from charter.hub.export import build_folder
from charter.lab.checks import evaluate_constitution_gate
from charter.redaction import find_in_text, literal_secrets, preview, redact

REPO_ID_HELP = "ORG/NAME, e.g. my-org/cai-preferences"


@dataclass
class PublishResult:
    """What `publish` did: where the folder is (dry run) or which commit it made."""

    repo_id: str
    files: list[str]
    splits: dict[str, dict[str, int]]
    gate: GateResult
    audit_gate: GateResult
    constitution_gate: GateResult | None = None
    folder: Path | None = None
    url: str | None = None
    commit: str | None = None
    revision: str | None = None
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise missing_extra("huggingface_hub", "hub") from None
    return huggingface_hub


def check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise ArgumentError("repo_id", f"{repo_id!r}: expected {REPO_ID_HELP}")


def resolve_token(token: str | None = None) -> str:
    """The token to upload with: the argument, else HF_TOKEN, else the huggingface_hub login."""
    token = token or _hub().get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return token


def upload_folder(
    folder: Path,
    repo_id: str,
    token: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload charter dataset",
) -> tuple[str, str]:
    """Create the dataset repo (if needed), the branch (if needed) and one commit with every file of `folder`.
    Returns (commit url, commit oid)."""
    hub = _hub()
    api = hub.HfApi(token=token)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    operations = [
        hub.CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files
    ]
    try:
        api.create_repo(repo_id, repo_type="dataset", private=True if private else None, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id, operations, commit_message=commit_message, repo_type="dataset", revision=revision
        )
    except (hub.errors.HfHubHTTPError, ValueError, OSError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HubError(redact(f"upload to {repo_id} failed: {first_line}", [token])) from None
    return str(info.commit_url), str(info.oid)


def _place(staging: Path, target: Path) -> None:
    """Move a finished dry-run folder into place, replacing an earlier export but nothing else."""
    if target.exists():
        earlier_export = (target / "README.md").exists() and (target / "data").is_dir()
        if any(target.iterdir()) and not earlier_export:
            raise ArgumentError("dry_run", f"{target}: exists and is not empty (nor an earlier export)")
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), str(target))


def check_gates(run: RunData, override: bool = False) -> Gates:
    """The agreement gate, the audit gate and the constitution-test gate of a run; GateFailed naming every failed
    one unless `override`, which is then recorded in each failed result."""
    judge_fp = run.manifest.settings.fingerprints.judge
    gates = [
        evaluate_gate(run.run_dir, run.agreement_config),
        evaluate_audit_gate(run.audit, run.audit_config, judge_fp),
        evaluate_constitution_gate(run.constitution_test, run.constitution_test_config, judge_fp),
    ]
    failed = [g for g in gates if not g.passed]
    if failed and not override:
        raise GateFailed(
            "; ".join(g.message for g in failed) + "; fix the judge (or label more pairs), or pass "
            "--override-gate (override_gate=True in Python) to publish anyway"
        )
    return Gates(*(g if g.passed else replace(g, overridden=True, message=g.message + " (overridden)") for g in gates))


def named_keys(run_config: dict[str, Any]) -> list[str]:
    """The values of the key variables the run's roles name (`api_key_env`) that are set here: never published."""
    names = {role.get("api_key_env") for role in run_config.values() if isinstance(role, dict)}
    writer = (run_config.get("synth") or {}).get("writer")
    names.add(writer.get("api_key_env") if isinstance(writer, dict) else None)
    return [os.environ[name] for name in sorted(n for n in names if n) if os.environ.get(name)]


@public
def publish(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    dry_run: str | Path | None = None,
    override_gate: bool = False,
    token: str | None = None,
    test_size: Annotated[float, Range(ge=0, lt=1)] = 0.1,
    seed: int = 0,
    license: str = "other",
    commit_message: str | None = None,
) -> PublishResult:
    """Publish a run's preference data to the Hugging Face Hub as a dataset with a card that tells how it was made.

    The agreement gate and the judge-audit gate apply (`override_gate` passes them and the card records it);
    rows, config and card are scanned for secrets first. Beside them goes `croissant.json`, the same provenance in
    Croissant 1.1 JSON-LD with the RAI vocabulary and PROV-O. With `dry_run`, the exact folder that would be
    uploaded is written there instead.

    Args:
        run_dir: The run directory, with its preference dataset written.
        repo_id: The dataset repository, `ORG/NAME`; it is created if it does not exist.
        private: Create the repository private (an existing one keeps its visibility).
        revision: The branch to commit to (created if needed); None commits to `main`.
        dry_run: A folder to write the upload into instead of uploading (an earlier export there is replaced).
        override_gate: Publish even when a gate fails; the card records the override.
        token: The Hugging Face token; None uses HF_TOKEN or the huggingface_hub login.
        test_size: Share of the prompts whose rows go to the `test` split (rows are split by prompt).
        seed: Seed of the split.
        license: The license named in the card.
        commit_message: The commit's message; None says the run id and the number of preferences.

    Returns:
        The files, the rows per configuration and split, both gates' results, and the commit's url and id, or
        with `dry_run` the folder written.

    Raises:
        ArgumentError: `repo_id` is not `ORG/NAME`, or `dry_run` is a folder that is neither empty nor an earlier
            export.
        RunStoreError: `run_dir` is not a run directory, or its store cannot be read.
        DatasetError: The run has no preference rows.
        ConfigError: The run config's `agreement:` or `judge.audit` section is not valid.
        GateFailed: The agreement, judge-audit or constitution-test gate failed, without `override_gate`.
        SecretFound: A secret (an API key or the token) is in the rows, the config or the card.
        HubError: There is no token, or the Hub refused or failed the upload.
        MissingExtra: huggingface_hub (the `hub` extra) is not installed.
    """
    check_repo_id(repo_id)
    run = read_run(run_dir)
    gates = check_gates(run, override_gate)
    token = token if dry_run is not None else resolve_token(token)
    parent = Path(dry_run).resolve().parent if dry_run is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".charter-export-", dir=parent) as tmp:
        staging = Path(tmp) / "export"
        summary = build_folder(run, staging, repo_id, gates, test_size=test_size, seed=seed, license=license)
        refuse_secrets(staging, extra_literals=[token or _hub().get_token(), *named_keys(run.run_config)])
        result = PublishResult(
            repo_id, summary.files, summary.splits, *gates, revision=revision, dry_run=dry_run is not None
        )
        if dry_run is not None:
            _place(staging, Path(dry_run))
            result.folder = Path(dry_run)
            return result
        count = sum(summary.splits["preferences"].values())
        message = commit_message or f"charter run {run.run_id}: {count} preferences"
        result.url, result.commit = upload_folder(
            staging, repo_id, resolve_token(token), private=private, revision=revision, commit_message=message
        )
    return result


@dataclass(frozen=True)
class Finding:
    """Where a secret was found; `preview` is redacted."""

    kind: str
    file: str
    where: str
    preview: str

    def __str__(self) -> str:
        return f"{self.file} {self.where}: {self.kind} ({self.preview})"


def _cell_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def scan_parquet(path: Path, label: str, literals: dict[str, str]) -> Iterator[Finding]:
    table = pq.read_table(path)
    for column in table.column_names:
        texts = [None if value is None else _cell_text(value) for value in table.column(column).to_pylist()]
        # One pass over the whole column first: most columns hold nothing, and a cell's match is always a match
        # in the joined text too (cells are joined by newlines, which no pattern needs).
        if next(find_in_text("\n".join(t for t in texts if t is not None), literals), None) is None:
            continue
        for row, text in enumerate(texts):
            for kind, secret in find_in_text(text or "", literals):
                yield Finding(kind, label, f"row {row}, column {column!r}", preview(secret))


def scan_text(path: Path, label: str, literals: dict[str, str]) -> Iterator[Finding]:
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        for kind, secret in find_in_text(line, literals):
            yield Finding(kind, label, f"line {number}", preview(secret))


def scan_folder(folder: str | Path, extra_literals: Iterable[str | None] = ()) -> list[Finding]:
    """Every secret in every file of `folder` (parquet cell by cell, other files line by line)."""
    folder = Path(folder)
    literals = literal_secrets(extra_literals, "the Hugging Face token in use")
    findings: list[Finding] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        label = path.relative_to(folder).as_posix()
        scan = scan_parquet if path.suffix == ".parquet" else scan_text
        findings.extend(scan(path, label, literals))
    return findings


def refuse_secrets(
    folder: str | Path,
    extra_literals: Iterable[str | None] = (),
    refusing: str = "refusing to publish",
    fix: str = "remove it from the run and export again",
) -> None:
    """Raise `SecretFound` naming the first match (and how many more) if the folder holds a secret: the one check
    that every folder charter writes for upload passes (`charter push`, `charter mix build`). The message says
    `refusing`, where the secret is, and `fix`; never the secret."""
    findings = scan_folder(folder, extra_literals)
    if findings:
        others = sorted({f.file for f in findings[1:]} - {findings[0].file})
        more = (
            f" (and {len(findings) - 1} more{', also in ' + ', '.join(others) if others else ''})"
            if len(findings) > 1
            else ""
        )
        raise SecretFound(f"{refusing}: a secret was found in {findings[0]}{more}; {fix}")
