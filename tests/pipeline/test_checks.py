"""Checks before writing, honest exits, and a prompt set that follows its source only when asked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charter.cli import console, main
from charter.pipeline.api import run
from charter.pipeline.status.record import status
from charter.runs.items import stored_prompts
from charter.runs.store import RunStore


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n', ":2: not UTF-8 text (byte 34 of the file is 0xe9)"),
        (b'{"prompt": "fine"}\n{"prompt": broken\n', ":2:12: invalid JSON"),
        (b'{"text": "no prompt column"}\n', ":1: no 'prompt' column (columns: text)"),
        (b"", "prompts: no usable prompts"),
        (b'{"prompt": "   "}\n', "prompts: no usable prompts"),
    ],
)
def test_bad_prompts_fail_before_anything_is_written(make_config, tmp_path, capsys, content, expected) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_bytes(content)
    config = make_config(prompts={"path": str(prompts)})
    for argv in (["run", str(config), "--dry-run"], ["run", str(config)]):  # the dry run makes the same checks
        assert main(argv) == 2
        assert expected in one_line_error(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache.sqlite").exists()


def test_a_missing_key_fails_before_anything_is_written(make_config, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["run", str(make_config(judge={"model": "openai:gpt-4o-mini"}))]) == 2
    assert "OPENAI_API_KEY is not set" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_a_missing_key_names_the_role_and_where_its_variable_is_set(make_config, capsys, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = make_config(judge={"model": "openai:gpt-4o-mini"})
    line = config.read_text().splitlines().index("  model: openai:gpt-4o-mini") + 1
    assert main(["run", str(config), "--dry-run"]) == 2
    error = one_line_error(capsys)
    assert "OPENAI_API_KEY is not set" in error and "for the judge (openai:gpt-4o-mini;" in error, error
    assert f"judge.api_key_env at {config}:{line}" in error, error
    members = make_config(judge={"models": [{"model": "scripted:cai"}, {"model": "openai:gpt-4o-mini"}]})
    assert main(["run", str(members), "--dry-run"]) == 2
    assert "for the judge 2 (openai:gpt-4o-mini; another variable: judge.models[1].api_key_env at" in (
        one_line_error(capsys)
    )


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"name: caf\xe9\n", "config.yaml:1: not UTF-8 text (byte 9 of the file is 0xe9)"),
        (b'name: x\nprompts: {inline: ["a\x07b"]}\n', "config.yaml:2:22: invalid YAML: the control character U+0007"),
    ],
)
def test_unreadable_config_is_one_line(tmp_path, capsys, content, expected) -> None:
    (tmp_path / "config.yaml").write_bytes(content)
    assert main(["run", str(tmp_path / "config.yaml")]) == 2
    assert expected in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["judges"], "No such command 'judges'."),
        (["judge", "audits"], "No such command 'audits'. Did you mean 'audit'?"),
        (["run", "--bogus"], "No such option: --bogus"),
        (["constitutions", "shoe"], "No such command 'shoe'. Did you mean 'show'?"),
    ],
)
def test_usage_errors_are_clicks_usage_line_and_exit_2(argv, expected, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: charter") and expected in err and "Traceback" not in err


def test_the_charter_command_exits_with_mains_code_its_objects_frozen(monkeypatch, capsys) -> None:
    """The console script skips the interpreter's last full collections (the process is ending)."""
    import gc

    monkeypatch.setattr(sys, "argv", ["charter", "judges"])
    try:
        with pytest.raises(SystemExit) as exited:
            console()
        assert exited.value.code == 2 and "No such command 'judges'." in capsys.readouterr().err
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_ctrl_c_exits_130_and_marks_the_stages_interrupted(make_config, tmp_path) -> None:
    config = make_config(
        prompts={"inline": [f"Question {i}?" for i in range(40)]},
        concurrency=1,
        policy={"model": "scripted:cai", "options": {"latency_s": 0.2}},
    )
    # a shell runs background jobs with SIGINT ignored, and a child inherits that: give it Python's default back
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter.cli", "run", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while not (tmp_path / "run" / "run.sqlite").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; resume with the same command" in err
    assert "Traceback" not in err
    assert {s["status"] for s in status(tmp_path / "run")["stages"]} == {"interrupted"}
    assert main(["run", str(config)]) == 0  # and it resumes


def prompts_file(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    return path


def test_a_changed_prompt_source_is_kept_extended_or_replaced_on_request(make_config, tmp_path, caplog) -> None:
    path = prompts_file(tmp_path, ["one?", "two?", "three?"])
    run(make_config(prompts={"path": str(path)}))
    prompts_file(tmp_path, ["two?", "three?", "four?"])  # one removed, one new

    run(make_config(prompts={"path": str(path)}))
    assert "the source has 1 prompt(s) the run does not and lacks 1 of its 3" in caplog.text
    assert status(tmp_path / "run")["counts"]["chains"] == 3

    result = run(make_config(prompts={"path": str(path), "on_change": "extend"}))
    assert result.counts["chains"] == 4 and result.counts["preferences"] == 4

    result = run(make_config(prompts={"path": str(path), "on_change": "replace"}))
    assert result.counts["chains"] == 3 and result.counts["preferences"] == 3
    rows = [json.loads(line) for line in (tmp_path / "run/data/preferences.jsonl").read_text().splitlines()]
    assert sorted(r["prompt"][0]["content"] for r in rows) == ["four?", "three?", "two?"]
    with RunStore(tmp_path / "run") as store:
        assert store.count("chains") == 4  # the removed prompt's chain is kept, out of the dataset


def test_a_huge_prompt_is_capped_by_default_and_the_report_cuts_long_texts(make_config, tmp_path) -> None:
    huge = "word " * 200_000  # a megabyte
    result = run(make_config(prompts={"inline": [huge, "short?"]}, report=True))
    assert result.counts["prompts_truncated"] == 1
    with RunStore(tmp_path / "run") as store:
        longest = max(len(p.messages[-1].content) for p in stored_prompts(store))
    assert longest == 8192 * 4
    md = (tmp_path / "run/report/report.md").read_text()
    assert len(md) < 100_000 and "characters in all)" in md


def test_a_mistyped_prompt_path_on_a_started_run_is_an_error(make_config, tmp_path, capsys, caplog) -> None:
    path = prompts_file(tmp_path, ["one?", "two?"])
    assert main(["run", str(make_config(prompts={"path": str(path)}))]) == 0
    capsys.readouterr()
    typo = tmp_path / "promtps.jsonl"
    config = make_config(prompts={"path": str(typo)})
    for argv in (["run", str(config), "--dry-run"], ["run", str(config)]):  # on_change: keep, the default
        assert main(argv) == 2
        assert f"prompts.path: {typo}: no such prompt file" in one_line_error(capsys)
    assert "keeps its stored prompt set" not in caplog.text
