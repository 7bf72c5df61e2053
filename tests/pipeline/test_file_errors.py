"""File-system trouble is one line naming the path and what was wanted, exit 2, found before any call is paid for
where it can be (`--dry-run` finds it too), and a run whose directory disappears stops with one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from charter.cli import main
from charter.testing.loopback import LoopbackServer
from tests.support.processes import start, wait_for_calls


def write_config(tmp_path: Path, output_dir: Path, server: LoopbackServer | None = None, name: str = "fs") -> Path:
    model = f"openai-compatible:m@{server.openai_url}" if server else "scripted:cai"
    config = {
        "name": name,
        "output_dir": str(output_dir),
        "cache": None,
        "concurrency": 1,
        "prompts": {"inline": [f"Question {i}?" for i in range(6)]},
        "policy": model,
        "judge": model,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nothing can be written into, for whoever runs the tests: its mode for a user, the immutable flag for
    root (whom modes do not stop)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where `chattr +i` is not allowed: no folder here is unwritable")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unwritable_output_directory_is_one_line_before_any_call(tmp_path, read_only, capsys, dry_run):
    with LoopbackServer() as server:
        args = ["run", str(write_config(tmp_path, read_only / "run", server))] + (["--dry-run"] if dry_run else [])
        assert main(args) == 2
        assert server.hits == 0
    line = one_error_line(capsys.readouterr().err)
    assert f"{read_only / 'run'}: cannot write the run directory: {read_only}" in line


def test_a_file_where_a_folder_should_be(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["run", str(write_config(tmp_path, tmp_path / "file" / "run"))]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cannot write the run directory" in line and "is a file, not a folder" in line


def test_an_unwritable_data_folder_is_found_before_any_call(tmp_path, capsys):
    with LoopbackServer() as server:
        config = write_config(tmp_path, tmp_path / "run", server)
        assert main(["run", str(config)]) == 0
        calls = server.hits
        data = tmp_path / "run" / "data"
        shutil.rmtree(data)
        data.write_text("a file where data/ should be")
        assert main(["run", str(config), "--set", "critique.rounds=2"]) == 2  # new calls would be needed
        assert server.hits == calls
    line = one_error_line(capsys.readouterr().err)
    assert f"{data}: cannot write data/: {data} is a file, not a folder" in line


def test_a_directory_of_another_run_is_refused(tmp_path, capsys):
    assert main(["run", str(write_config(tmp_path, tmp_path / "run", name="first"))]) == 0
    other = write_config(tmp_path, tmp_path / "run", name="second")
    for args in (["run", str(other), "--dry-run"], ["run", str(other)]):
        assert main(args) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"{tmp_path / 'run'} holds the run 'first', not 'second'" in line


def test_a_run_whose_directory_disappears_stops_with_one_line(tmp_path):
    with LoopbackServer(delay_s=0.2) as server:
        run_dir = tmp_path / "run"
        process = start("run", str(write_config(tmp_path, run_dir, server)), cwd=tmp_path)
        wait_for_calls(run_dir, process, at_least=2)
        shutil.rmtree(run_dir)
        _, err = process.communicate(timeout=60)
        hits = server.hits
    assert process.returncode == 2, err
    line = one_error_line(err)
    assert f"{run_dir}: the run directory was removed (or moved) while the run was writing it" in line
    assert hits < 6 * 5  # it stopped asking: a whole run is 6 chains and their judgments
