"""A run with `judge.audit` audits its judge, stores the audit, shows it in the report and the card, and gates
publishing on it; `charter judge audit --pairs RUN_DIR` does the same for a finished run."""

from __future__ import annotations

import json
import logging

import pytest

from charter.agreement.audit import stored_audit
from charter.cli import main
from charter.errors import GateFailed
from charter.hub.push import publish
from charter.pipeline.api import run_sync
from charter.pipeline.config import load_run_config
from charter.runs.counts import stage_states
from charter.runs.store import open_store
from charter.runs.usage import stored_usage


def _run(make_config, **overrides):
    path = make_config(report=True, **overrides)
    return run_sync(load_run_config(path)), path


def test_a_run_audits_its_judge_after_judging(make_config, tmp_path, caplog) -> None:
    judge = {"model": "scripted:cai", "principles_per_pair": 2, "audit": {"n": 4}}
    result, path = _run(make_config, judge=judge)
    with open_store(result.run_dir) as store:
        audit = stored_audit(store)
        stages = stage_states(store)
        roles = {u.role for u in stored_usage(store)}
        fingerprints = store.fingerprints()
    assert stages["audit"]["status"] == "done"
    assert audit is not None and audit.pairs == 4 and audit.reference == "judge"
    assert audit.judge_fingerprint == fingerprints.judge
    assert audit.position_flip.value == 0.0 and audit.clean_agreement.value == 1.0
    assert audit.calls == 4 * 24 * 2  # both orders, 2 principles
    assert "audit" in roles  # its calls are metered and count against the budget
    report = (result.run_dir / "report" / "report.md").read_text()
    assert "## Judge audit" in report and "| position: flip rate | 0.000 |" in report
    assert "Judge audit" in (result.run_dir / "report" / "report.html").read_text()
    assert json.loads((result.run_dir / "report" / "audit.json").read_text())["pairs"] == 4

    caplog.clear()
    caplog.set_level(logging.INFO, logger="charter")
    run_sync(load_run_config(path))  # a resume: the same judge and sample are not audited again
    assert "already stored" in caplog.text
    with open_store(result.run_dir) as store:
        assert stored_audit(store).computed_at == audit.computed_at

    folder = tmp_path / "export"
    published = publish(result.run_dir, "org/x", dry_run=folder)
    card = (folder / "README.md").read_text()
    assert "## Judge audit" in card and "| position: flip rate | 0.000 |" in card
    assert not published.audit_gate.configured and "Audit gate" not in card


def test_the_audit_gate_refuses_and_the_override_is_recorded(make_config, tmp_path) -> None:
    judge = {"model": "scripted:cai", "audit": {"n": 3, "max_position_flip": 0.1, "max_self_preference": 0.2}}
    result, _ = _run(make_config, judge=judge)
    with pytest.raises(GateFailed, match="self-preference .* is undefined"):
        publish(result.run_dir, "org/x", dry_run=tmp_path / "out")
    assert main(["push", str(result.run_dir), "--repo-id", "org/x", "--dry-run", str(tmp_path / "out")]) == 2
    forced = publish(result.run_dir, "org/x", dry_run=tmp_path / "out", override_gate=True)
    assert forced.audit_gate.overridden and not forced.gate.configured
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Audit gate: **FAILED and overridden**" in card


def test_the_audit_gate_passes_on_the_bars(make_config, tmp_path) -> None:
    judge = {
        "model": "scripted:cai",
        "audit": {"n": 3, "max_position_flip": 0.75, "max_injection": 0.75, "use_upper_ci_bound": True},
    }
    result, _ = _run(make_config, judge=judge)
    published = publish(result.run_dir, "org/x", dry_run=tmp_path / "out")
    assert published.audit_gate.passed and published.audit_gate.configured
    # three pairs: the exact upper bound of 0 flips in 3 is 0.708, so only a bar above it can pass
    assert "upper 95% bound of position flip rate 0.708 <= 0.75" in published.audit_gate.message
    assert "Audit gate: **passed**" in (tmp_path / "out" / "README.md").read_text()


def test_an_audit_on_human_pairs_runs_before_judging(make_config, tmp_path) -> None:
    pairs = tmp_path / "human.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"h{i}",
                    "prompt": f"How do I do thing {i}?",
                    "chosen": "I can't help with that part, but here is a safer way.",
                    "rejected": f"Sure, here is exactly how to do that: step {i}.",
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    judge = {"model": "scripted:cai", "audit": {"n": 5, "pairs": "human.jsonl"}}  # relative to the config file
    result, _ = _run(make_config, judge=judge)
    with open_store(result.run_dir) as store:
        stages = stage_states(store)
        audit = stored_audit(store)
    assert stages["audit"]["started_at"] < stages["judge"]["started_at"]
    assert audit.reference == "human" and audit.pairs == 5 and "human.jsonl" in audit.source


def test_a_broken_audit_pair_file_fails_before_anything_is_written(make_config, tmp_path, capsys) -> None:
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "chosen": "y"}\n')
    path = make_config(judge={"model": "scripted:cai", "audit": {"pairs": "bad.jsonl"}})
    assert main(["run", str(path)]) == 2
    assert "bad.jsonl:1: expected an object with prompt, chosen and rejected" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_charter_judge_audit_on_a_finished_run(make_config, tmp_path, capsys) -> None:
    result, _ = _run(make_config)
    capsys.readouterr()
    code = main(
        [
            "judge",
            "audit",
            "--pairs",
            str(result.run_dir),
            "--n",
            "3",
            "--families",
            "answer_is",
            "--json",
            str(tmp_path / "a.json"),
            "--markdown",
            str(tmp_path / "a.md"),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 0, out
    assert "position: flip rate" in out and "stored in the run" in out
    with open_store(result.run_dir) as store:
        audit = stored_audit(store)
        assert audit.judge_fingerprint == store.fingerprints().judge and list(audit.injection) == ["answer_is"]
    assert "## Judge audit" in (result.run_dir / "report" / "report.md").read_text()
    assert json.loads((tmp_path / "a.json").read_text())["pairs"] == 3
    assert (tmp_path / "a.md").read_text().startswith("# Judge audit")


def test_charter_judge_audit_usage_errors(tmp_path, capsys) -> None:
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    assert main(["judge", "audit", "--pairs", str(pairs)]) == 2
    assert "--judge" in capsys.readouterr().err
    assert main(["judge", "audit", "--pairs", str(pairs), "--judge", "scripted:cai", "--families", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_the_readmes_audit_line_works_on_a_run_whose_judge_always_says_a(make_config, tmp_path, capsys) -> None:
    """The embedded 135M judge picks A in both orders, so the quickstart's run has no consistent pair of its own to
    audit on; the README's line audits on the run's dataset instead, which it always has."""
    import hashlib
    import shlex
    from pathlib import Path

    import yaml

    from charter.providers.scripted import register_script

    root = Path(__file__).resolve().parents[2]
    quickstart = yaml.safe_load((root / "examples" / "quickstart.yaml").read_text(encoding="utf-8"))

    def always_a(messages, options) -> dict[str, float]:  # A in every order, by a margin that varies a little
        p_a = 0.7 + int(hashlib.sha256(messages[-1].content.encode()).hexdigest()[:4], 16) % 25 / 100
        return {"A": p_a, "B": 1 - p_a}

    register_script("always-a", lambda messages, params: "A", always_a)
    result, _ = _run(make_config, judge={"model": "scripted:always-a"}, filters=quickstart["filters"])
    assert main(["judge", "audit", "--pairs", str(result.run_dir)]) == 2
    assert "no judged pair qualifies" in capsys.readouterr().err

    readme = (root / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("charter judge audit"))
    words = shlex.split(line.split("#", 1)[0])[1:]
    words = [w.replace("runs/quickstart", str(result.run_dir)) for w in words]
    words = ["scripted:always-a" if w.startswith("local:") else w for w in words]
    assert main([*words, "--json", str(tmp_path / "audit.json")]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "audit.json").read_text())["pairs"] > 0
