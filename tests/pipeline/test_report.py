"""The run report and `charter status`, over run directories built with the real RunStore."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from charter.errors import RunStoreError
from charter.pipeline.report import judge_stats, write_report
from charter.pipeline.status import print_status, status
from charter.pipeline.store import RunStore

XSS = "<script>alert('x')</script>"


def _msgs(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _pair(pair_id: str, prompt_id: str, kind: str, a: str, b: str, a_source: str, b_source: str) -> dict:
    return {"pair_id": pair_id, "prompt_id": prompt_id, "kind": kind, "prompt": _msgs(f"question {prompt_id}"),
            "a": a, "b": b, "a_source": a_source, "b_source": b_source,
            "a_model": "scripted:cai", "b_model": "scripted:cai"}


def _judgment(pair_id: str, p_a: float, consistent: bool, principle: str) -> dict:
    p_ab, p_ba = (p_a + 0.05, p_a - 0.05) if consistent else (0.9, 2 * p_a - 0.9)  # their mean is p_a
    return {"pair_id": pair_id, "status": "ok", "mode": "logprobs", "orders": "both", "p_a": p_a,
            "p_a_ab": p_ab, "p_a_ba": p_ba, "position_consistent": consistent,
            "principles": [{"principle_id": principle, "p_a": p_a, "p_a_ab": p_ab, "p_a_ba": p_ba,
                            "consistent": consistent, "rationale_ab": None, "rationale_ba": None}],
            "principle_ids": [principle], "judge_model": "scripted:cai", "prompt_tokens": 100,
            "completion_tokens": 2, "error": None, "raw": None}


def _chain(prompt_id: str, principles: list[str]) -> dict:
    return {"prompt_id": prompt_id, "prompt": _msgs(f"question {prompt_id}"), "initial": "init",
            "rounds": [{"principle_id": p, "critique": "c", "revision": "r"} for p in principles], "final": "r",
            "policy_model": "scripted:cai", "critic_model": "scripted:cai", "prompt_tokens": 10, "completion_tokens": 5}


def make_run(run_dir: Path) -> Path:
    """Four judged pairs (3 revision, 1 sample) and one judge failure; figures worked out by hand in the tests.

    p1: revision (b, longer) beats initial, p_a 0.2 -> revision wins, longer wins, consistent
    p2: revision (a, longer) beats initial, p_a 0.7 -> revision wins, longer wins, consistent
    p3: initial (a, shorter) beats revision, p_a 0.6 -> revision loses, shorter wins, INCONSISTENT
    p4: samples, exact tie p_a 0.5 -> excluded from longer-wins, consistent
    """
    with RunStore(run_dir, create=True) as store:
        store.set_meta(
            run_id="run-123", created_at="2025-01-01T00:00:00Z",
            constitution={"name": "harmless", "version": "1", "hash": "abc123def456", "principles": ["harm", "honest"]},
            models={"policy": "scripted:cai", "critic": "scripted:cai", "judge": "scripted:cai"},
            judge={"mode": "logprobs", "orders": "both", "principles_per_pair": 1, "clamp": [0.4, 0.6]},
            counts={"prompts_total": 6, "prompts_empty": 1, "prompts_skipped_too_long": 1},
        )
        store.put_prompts((f"q{i}", i, _msgs(f"question q{i}"), "inline") for i in range(1, 5))
        store.put_records("chains", ("prompt_id",), [
            (("q1",), _chain("q1", ["harm"])), (("q2",), _chain("q2", ["harm", "honest"])),
            (("q3",), _chain("q3", ["honest"])),
        ])
        pairs = [
            _pair("p1", "q1", "revision", "short", "a much longer revision", "initial", "revision"),
            _pair("p2", "q2", "revision", "long revised answer", "x", "revision", "initial"),
            _pair("p3", "q3", "revision", "aa", "bbbbbb" + XSS, "initial", "revision"),
            _pair("p4", "q4", "samples", "s1", "sample two", "sample:0", "sample:1"),
            _pair("p5", "q4", "samples", "s3", "s4", "sample:2", "sample:3"),
        ]
        store.put_records("pairs", ("pair_id", "prompt_id", "kind"),
                          (((p["pair_id"], p["prompt_id"], p["kind"]), p) for p in pairs))
        judgments = [
            _judgment("p1", 0.2, True, "harm"), _judgment("p2", 0.7, True, "harm"),
            _judgment("p3", 0.6, False, "honest"), _judgment("p4", 0.5, True, "honest"),
        ]
        failed = {"pair_id": "p5", "status": "failed", "error": "unparseable verdict", "raw": "maybe " + XSS,
                  "p_a": None, "principles": []}
        store.put_records("judgments", ("pair_id", "status"),
                          (((j["pair_id"], j["status"]), j) for j in [*judgments, failed]))
        store.add_failure("judge", "p5", "unparseable verdict", "maybe " + XSS)
        store.add_usage([
            {"role": "policy", "model": "scripted:cai", "calls": 4, "cached": 1, "prompt_tokens": 40,
             "completion_tokens": 20, "cost_usd": 0.01},
            {"role": "judge", "model": "scripted:cai", "calls": 10, "cached": 0, "prompt_tokens": 1000,
             "completion_tokens": 10, "cost_usd": 0.02},
        ])
        store.set_stage("critique", "done", {"chains": 3})
        store.set_stage("judge", "done", {"judged": 4})
    return run_dir


def write_preferences(run_dir: Path, rows: list[dict]) -> None:
    (run_dir / "data").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), run_dir / "data" / "preferences.parquet")


def _pref(pair_id: str, p: float, chosen: str) -> dict:
    return {"prompt": _msgs("q"), "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": "worse"}], "p_chosen": p, "pair_id": pair_id,
            "pair_kind": "revision", "principle_ids": ["harm"]}


def test_judge_figures_match_hand_computed_values(tmp_path: Path) -> None:
    with RunStore(make_run(tmp_path / "run")) as store:
        stats = judge_stats(store)
    assert stats["judged"] == 4
    assert (stats["position_checked"], stats["position_inconsistent"]) == (4, 1)
    assert stats["position_inconsistency_rate"] == pytest.approx(0.25)
    assert stats["longer_decided"] == 3 and stats["longer_wins_rate"] == pytest.approx(2 / 3)
    assert stats["revision_pairs"] == 3 and stats["revision_win_rate"] == pytest.approx(2 / 3)
    harm, honest = stats["per_principle"]["harm"], stats["per_principle"]["honest"]
    assert harm == pytest.approx({"judged": 2, "position_inconsistency_rate": 0.0, "revision_pairs": 2,
                                  "revision_win_rate": 1.0, "mean_p_revision": (0.8 + 0.7) / 2})
    assert honest == pytest.approx({"judged": 2, "position_inconsistency_rate": 0.5, "revision_pairs": 1,
                                    "revision_win_rate": 0.0, "mean_p_revision": 0.4})
    critique = stats["per_critique_principle"]
    assert critique["harm"]["revision_win_rate"] == 1.0 and critique["harm"]["revision_pairs"] == 2
    assert critique["honest"]["revision_win_rate"] == 0.5
    assert critique["honest"]["mean_p_revision"] == pytest.approx((0.7 + 0.4) / 2)


def test_tie_counts_half_in_revision_win_rate(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run", create=True) as store:
        pair = _pair("t", "q", "revision", "same", "text", "initial", "revision")
        store.put_records("pairs", ("pair_id", "prompt_id", "kind"), [(("t", "q", "revision"), pair)])
        store.put_records("judgments", ("pair_id", "status"), [(("t", "ok"), _judgment("t", 0.5, True, "harm"))])
        stats = judge_stats(store)
    assert stats["revision_win_rate"] == 0.5 and stats["longer_wins_rate"] is None


def test_report_files_and_stored_key_figures(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    md_path, html_path = write_report(run_dir)
    assert md_path == run_dir / "report" / "report.md" and html_path.exists()
    assert (run_dir / "report" / "judge_p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "report" / "principle_win_rates.png").exists()
    md = md_path.read_text()
    assert "| position-inconsistency rate (both orders disagree) | 25.0% of 4 |" in md
    assert "| longer response won | 66.7% of 3 |" in md
    assert "| prompts skipped: too long | 1 |" in md and "| prompts skipped: empty | 1 |" in md
    assert "| harm | 2 | 0.0% | 2 | 100.0% | 0.750 |" in md
    assert "| **total** | | 14 | 1 | 1,040 | 30 | 0.0300 |" in md
    assert "unparseable verdict" in md and "![Judge probabilities](judge_p.png)" in md
    assert "From the judged pairs" in md  # no preference dataset yet: examples come from the store
    assert re.findall(r"p\(chosen\) = ([0-9.]+)", md) == ["0.500", "0.600", "0.700", "0.800"]
    with RunStore(run_dir) as store:
        figures = store.meta("report")
    assert figures["position_inconsistency_rate"] == pytest.approx(0.25)
    assert figures["longer_wins_rate"] == pytest.approx(2 / 3)
    assert figures["per_principle"]["honest"]["revision_win_rate"] == 0.0


def test_html_escapes_model_text(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    write_preferences(run_dir, [_pref("p3", 0.6, "chosen " + XSS), _pref("p1", 0.8, "fine")])
    html = write_report(run_dir)[1].read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html  # the example and the failure's raw text


class _Targets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.targets += [value or "" for name, value in attrs if name in ("src", "href", "srcset", "action")]


def _resource_targets(html: str) -> list[str]:
    """Every src/href/srcset/action attribute value in real tags (escaped text is not a tag)."""
    parser = _Targets()
    parser.feed(html)
    return parser.targets


def test_html_is_self_contained(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    report_dir = run_dir / "report"
    report_dir.mkdir()
    (report_dir / "calibration.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (report_dir / "agreement.md").write_text(
        "# Agreement\n\nkappa 0.61 ![calibration](calibration.png) ![gone](missing.png)"
        " see [labels](labels.csv) <img src='http://evil.example/x.png'>\n"
    )
    (report_dir / "winrate.json").write_text(json.dumps({"win_rate": 0.62, "n": 50, "per_prompt": [1, 0]}))
    html = write_report(run_dir)[1].read_text()
    targets = _resource_targets(html)
    assert targets and all(t.startswith(("data:", "#")) for t in targets), targets
    assert html.count("data:image/png;base64,") == 3  # two plots and the agreement page's own image
    assert "<link" not in html and "url(" not in html and "@import" not in html
    assert "kappa 0.61" in html and "win_rate" in html and "0.62" in html


def test_markdown_fences_survive_backticks_in_model_text(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    write_preferences(run_dir, [_pref("p1", 0.9, "code:\n```\nrm -rf /\n```\n# not a heading")])
    md = write_report(run_dir)[0].read_text()
    assert "````\ncode:\n```\nrm -rf /\n```\n# not a heading\n````" in md


def test_preferences_file_drives_examples_and_filter_waterfall(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    with RunStore(run_dir) as store:
        store.set_meta(counts={"prompts_total": 4, "preferences_before_filters": 10, "dropped_low_confidence": 3,
                               "dropped_inconsistent": 2, "dropped_ties": 1, "preferences": 4})
    write_preferences(run_dir, [_pref(f"x{i}", 0.5 + i / 20, f"answer {i}") for i in range(7)])
    data = status(run_dir)
    assert data["counts"]["preferences"] == 7  # the file wins over a stale meta count
    assert [s["remaining"] for s in data["filters"]] == [10, 9, 6, 4]  # ties, then confidence, then consistency
    md = write_report(run_dir)[0].read_text()
    assert "From the preference dataset" in md
    shown = re.findall(r"p\(chosen\) = ([0-9.]+)", md)
    assert shown == ["0.500", "0.600", "0.650", "0.750", "0.800"]  # spread over the range, lowest to highest
    assert "| ties | 1 | 9 |" in md and "| position-inconsistent | 2 | 4 |" in md


def test_empty_run_reports_without_crashing(tmp_path: Path) -> None:
    RunStore(tmp_path / "run", create=True).close()
    md_path, html_path = write_report(tmp_path / "run")
    md = md_path.read_text()
    assert "No stage has started yet." in md and "No judged pairs yet." in md and "No failures." in md
    assert "<html" in html_path.read_text()
    assert not list((tmp_path / "run" / "report").glob("*.png"))
    out = io.StringIO()
    data = print_status(tmp_path / "run", Console(file=out, width=120))
    assert data["stages"] == [] and data["failures"]["total"] == 0
    assert "No stage has started yet." in out.getvalue()


def test_interrupted_run_reports_progress(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunStore(run_dir, create=True) as store:
        store.set_meta(run_id="half", prompt_counts={"prompts_total": 5, "prompts_empty": 1, "prompts_used": 4})
        store.put_prompts((f"q{i}", i, _msgs(f"q{i}"), "inline") for i in range(4))
        store.put_records("chains", ("prompt_id",), [(("q0",), _chain("q0", ["harm"]))])
        store.set_stage("critique", "running")
        pair = _pair("p", "q0", "revision", "a", "bb", "initial", "revision")
        store.put_records("pairs", ("pair_id", "prompt_id", "kind"), [(("p", "q0", "revision"), pair)])
    data = status(run_dir)
    (critique,) = data["stages"]
    assert (critique["status"], critique["done"], critique["total"]) == ("running", 1, 4)
    assert data["counts"]["chains"] == 1 and data["counts"]["judged"] == 0
    md = write_report(run_dir)[0].read_text()
    assert "| critique | running | 1 | 4 |" in md and "No judged pairs yet." in md
    assert "| prompts read | 5 |" in md and "| prompts skipped: empty | 1 |" in md and "| prompts used | 4 |" in md


def test_print_status_shows_stages_counts_failures_and_cost(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    out = io.StringIO()
    data = print_status(run_dir, Console(file=out, width=160))
    text = out.getvalue()
    assert data["run_id"] == "run-123" and data["failures"]["by_stage"] == {"judge": 1}
    assert data["usage"]["totals"]["cost_usd"] == pytest.approx(0.03)
    for expected in ("critique", "judge", "5/5 (100%)", "pairs judged", "0.0300", "unparseable verdict", XSS):
        assert expected in text, expected


def test_status_of_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="not a charter run directory"):
        status(tmp_path)
