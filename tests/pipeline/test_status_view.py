"""`charter status` as a reader sees it: at 80 columns (a log file, CI) no model name and no figure is split over
lines; `--json` says what priced each usage row, as the text does; an empty store file is called what it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charter.cli import main
from charter.records import UsageRow
from charter.runs.counts import set_stage
from tests.support.rundir import RunBuilder

#: Model ids as long as real ones get: a fine-tuned OpenAI model, a Hub model behind an OpenAI-compatible server.
JUDGE = "openai:ft:gpt-4o-mini-2024-07-18:acme-research:constitutional-judge:9AbCdEfG"
POLICY = "openai-compatible:meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"
SERVER = "@http://127.0.0.1:8000/v1"  # the policy's server, in its model string (not in its model id)
CRITIC = "anthropic:claude-3-5-sonnet-20241022"
SOURCES = {JUDGE: "config", POLICY: "unpriced", CRITIC: "genai-prices"}
ROWS = (
    UsageRow(role="judge", model=JUDGE, calls=123_456, prompt_tokens=98_765_432, completion_tokens=1_234_567,
             cache_read_tokens=12_345_678, cache_write_tokens=2_345_678, cost_usd=12_345.6789),
    UsageRow(role="policy", model=POLICY, calls=4_321, prompt_tokens=4_321_000, completion_tokens=987_654,
             cost_usd=0.0),
    UsageRow(role="critic", model=CRITIC, calls=4_321, prompt_tokens=5_432_100, completion_tokens=876_543,
             cache_read_tokens=1_000_000, cost_usd=987.6543),
)  # fmt: skip


def long_named_run(run_dir: Path) -> Path:
    config = {"policy": POLICY + SERVER, "critic": CRITIC, "judge": {"model": JUDGE}}
    with RunBuilder(run_dir, config=config, run_id="run-wide") as run:
        run.usage(*ROWS)
        run.store.set_meta(price_sources=SOURCES)
        set_stage(run.store, "critique", "done", {"chains": 3})
    return run_dir


def status(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, columns: int = 80):
    """`charter status ARGS...` where the terminal (or a log's COLUMNS) is `columns` wide: exit code, out, err."""
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def shown(run_dir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, columns: int) -> list[str]:
    """The lines `charter status RUN_DIR` prints, `columns` wide."""
    code, out, err = status([str(run_dir)], capsys, monkeypatch, columns)
    assert code == 0, err
    return out.splitlines()


def figures() -> list[str]:
    """Every figure the usage view shows, as it shows it: counts with thousands separators, USD to 4 places."""
    totals = {field: sum(getattr(row, field) for row in ROWS) for field in ROWS[0].model_fields if field not in
              ("role", "model")}  # fmt: skip
    found = []
    for values in [row.model_dump() for row in ROWS] + [totals]:
        found += [f"{values[k]:,}" for k in ("calls", "prompt_tokens", "completion_tokens")]
        found += [f"{values['cache_read_tokens']:,}/{values['cache_write_tokens']:,}", f"{values['cost_usd']:.4f}"]
    return found


def test_at_80_columns_no_model_name_or_figure_is_split(tmp_path: Path, capsys, monkeypatch) -> None:
    lines = shown(long_named_run(tmp_path / "run"), capsys, monkeypatch, 80)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    whole = [text for text in [JUDGE, POLICY, CRITIC, *figures()] if not any(text in line for line in lines)]
    assert whole == [], "\n".join(lines)
    usage = " ".join(" ".join(lines[lines.index("Tokens and cost") :]).split())
    for model, source in SOURCES.items():  # each row says what priced it, after its model
        assert f"{model} {'unpriced' if source == 'unpriced' else f'priced by {source}'}" in usage, usage


def test_a_wide_terminal_keeps_one_table_row_per_model(tmp_path: Path, capsys, monkeypatch) -> None:
    lines = shown(long_named_run(tmp_path / "run"), capsys, monkeypatch, 300)
    assert f"policy={POLICY}{SERVER}, critic={CRITIC}, judge={JUDGE}" in lines[1]
    row = next(line for line in lines if line.startswith("│ judge  │"))
    assert JUDGE in row and "123,456" in row and "98,765,432" in row and "12345.6789" in row  # model to cost
    assert any("Priced by" in line for line in lines)


def test_json_usage_rows_say_what_priced_them(tmp_path: Path, capsys, monkeypatch) -> None:
    code, out, err = status([str(long_named_run(tmp_path / "run")), "--json"], capsys, monkeypatch)
    assert code == 0, err
    rows = json.loads(out)["usage"]["rows"]
    assert {row["model"]: row["price_source"] for row in rows} == SOURCES


def test_an_empty_store_file_is_called_empty(tmp_path: Path, make_config, capsys, monkeypatch) -> None:
    """A run.sqlite of 0 bytes (made, never written: a run cut off at once) in a folder that can be written is no
    run store to read, and says so; the run it was made for makes it anew."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.sqlite").touch()
    for extra in ([], ["--json"]):
        code, out, err = status([str(run_dir), *extra], capsys, monkeypatch)
        assert code == 2 and out == "" and len(err.splitlines()) == 1, err
        assert "run.sqlite: empty (0 bytes, no tables): not a run store" in err and "cannot be written" not in err
    assert (run_dir / "run.sqlite").stat().st_size == 0  # reading it wrote nothing
    assert main(["run", str(make_config(output_dir=str(run_dir)))]) == 0
    capsys.readouterr()
    assert shown(run_dir, capsys, monkeypatch, 120)[0].startswith("Run ")
