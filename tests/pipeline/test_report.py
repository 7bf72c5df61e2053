"""The run report and `charter status`, over run directories built with the shared run builder."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from charter.errors import RunStoreError
from charter.pipeline.report.write import write_report
from charter.pipeline.status.record import status
from charter.pipeline.status.show import print_status
from charter.preference.stats import judge_stats
from charter.records import UsageRow
from charter.runs.counts import set_stage
from charter.runs.files import RunLock
from charter.runs.items import judged_pairs
from charter.runs.store import RunStore
from tests.support.rundir import RunBuilder

XSS = "<script>alert('x')</script>"
#: both pair kinds, and no filter that drops the hand-made rows below
CONFIG = {
    "pairs": {"kinds": ["revision", "samples"], "strategy": "all"},
    "filters": {"drop_inconsistent": False, "drop_ties": False},
}


def build(run: RunBuilder) -> RunBuilder:
    """Four judged pairs (3 revision, 1 sample) and one judge failure; figures worked out by hand in the tests.

    p1: revision (b, longer) beats initial, p_a 0.2 -> revision wins, longer wins, consistent
    p2: revision (a, longer) beats initial, p_a 0.7 -> revision wins, longer wins, consistent
    p3: initial (a, shorter) beats revision, p_a 0.6 -> revision loses, shorter wins, INCONSISTENT
    p4: samples, exact tie p_a 0.5 -> excluded from longer-wins, consistent
    """
    run.store.set_meta(prompt_counts={"prompts_total": 6, "prompts_empty": 1, "prompts_skipped_too_long": 1})
    for i in range(1, 5):
        run.prompt(f"q{i}")
    run.chain("q1", ["harm"])
    run.chain("q2", ["harm", "honest"])
    run.chain("q3", ["honest"])
    run.pair("p1", "q1", "short", "a much longer revision")
    run.pair("p2", "q2", "long revised answer", "x", a_source="revision", b_source="initial")
    run.pair("p3", "q3", "aa", "bbbbbb" + XSS)
    run.pair("p4", "q4", "s1", "sample two", kind="samples", a_source="sample:0", b_source="sample:1")
    run.pair("p5", "q4", "s3", "s4", kind="samples", a_source="sample:2", b_source="sample:3")
    run.judgment("p1", 0.2, 0.25, 0.15, principles=["harm"])
    run.judgment("p2", 0.7, 0.75, 0.65, principles=["harm"])
    run.judgment("p3", 0.6, 0.9, 0.3, principles=["honest"])
    run.judgment("p4", 0.5, 0.5, 0.5, principles=["honest"])
    run.judgment("p5", 0.0, failure="unparseable verdict", raw="maybe " + XSS)
    run.usage(
        UsageRow(
            role="policy",
            model="scripted:cai",
            calls=4,
            cached=1,
            prompt_tokens=40,
            completion_tokens=20,
            cost_usd=0.01,
        ),
        UsageRow(
            role="judge",
            model="scripted:cai",
            calls=10,
            cached=0,
            prompt_tokens=1000,
            completion_tokens=10,
            cost_usd=0.02,
        ),
    )
    set_stage(run.store, "critique", "done", {"chains": 3})
    set_stage(run.store, "judge", "done", {"judged": 4})
    return run


def make_run(run_dir: Path, dataset: bool = False) -> Path:
    with build(RunBuilder(run_dir, config=CONFIG, run_id="run-123")) as run:
        if dataset:
            run.write_dataset()
    return run_dir


def test_judge_figures_match_hand_computed_values(tmp_path: Path) -> None:
    with RunStore(make_run(tmp_path / "run")) as store:
        stats = judge_stats(store, store.fingerprints())
    assert stats.judged == 4 and stats.failed == 1
    assert (stats.position_checked, stats.position_inconsistent) == (4, 1)
    assert stats.position_inconsistency_rate == pytest.approx(0.25)
    assert stats.longer_decided == 3 and stats.longer_wins_rate == pytest.approx(2 / 3)
    assert stats.revision_pairs == 3 and stats.revision_win_rate == pytest.approx(2 / 3)
    harm, honest = stats.per_principle["harm"], stats.per_principle["honest"]
    assert harm.model_dump() == pytest.approx(
        {
            "judged": 2,
            "position_inconsistency_rate": 0.0,
            "revision_pairs": 2,
            "revision_win_rate": 1.0,
            "mean_p_revision": (0.8 + 0.7) / 2,
        }
    )
    assert honest.model_dump() == pytest.approx(
        {
            "judged": 2,
            "position_inconsistency_rate": 0.5,
            "revision_pairs": 1,
            "revision_win_rate": 0.0,
            "mean_p_revision": 0.4,
        }
    )
    critique = stats.per_critique_principle
    assert critique["harm"].revision_win_rate == 1.0 and critique["harm"].revision_pairs == 2
    assert critique["honest"].revision_win_rate == 0.5
    assert critique["honest"].mean_p_revision == pytest.approx((0.7 + 0.4) / 2)


def test_judge_figures_leave_out_items_of_other_settings(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    with RunBuilder.reopen(run_dir) as run:
        run.judgment("p1", 0.9, fingerprint="older-judge-settings")
        run.pair("old", "q1", "one", "two")
        run.store.execute("UPDATE pairs SET source_fingerprint = 'older-chains' WHERE pair_id = 'old'")
        run.judgment("old", 0.9)
        stats = judge_stats(run.store, run.fp)
    assert stats.judged == 4 and stats.per_principle["harm"].judged == 2


def test_tie_counts_half_in_revision_win_rate(tmp_path: Path) -> None:
    with RunBuilder(tmp_path / "run") as run:
        run.pair("t", "q", "same", "text")
        run.judgment("t", 0.5)
        stats = judge_stats(run.store, run.fp)
    assert stats.revision_win_rate == 0.5 and stats.longer_wins_rate is None


def test_report_files_figures_and_settings(tmp_path: Path) -> None:
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
    assert "| **total** | | 14 | 1 | 0 | 1,040 | 0 | 0 | 30 | 0.0300 | |" in md
    assert "0.0% of prompt tokens were read from the providers' prompt caches" in md
    assert "unparseable verdict" in md and "![Judge probabilities](judge_p.png)" in md
    assert "From the judged pairs" in md  # no preference dataset yet: examples come from the store
    assert re.findall(r"p\(chosen\) = ([0-9.]+)", md) == ["0.500", "0.600", "0.700", "0.800"]
    assert "- Judge: mode logprobs, orders both, 1 principle(s) per pair, sampled by weight" in md
    assert "- Pairs: revision, samples (k=4 samples at temperature 1.0, all)" in md


def test_html_escapes_model_text(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", dataset=True)
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
    with RunBuilder(tmp_path / "run") as run:
        run.pair("p1", "q1", "worse", "code:\n```\nrm -rf /\n```\n# not a heading")
        run.judgment("p1", 0.1)
        run.write_dataset()
    md = write_report(tmp_path / "run")[0].read_text()
    assert "````\ncode:\n```\nrm -rf /\n```\n# not a heading\n````" in md


def test_preferences_file_drives_examples_and_filter_waterfall(tmp_path: Path) -> None:
    config = {"filters": {"min_confidence": 0.1}}
    with RunBuilder(tmp_path / "run", config=config) as run:
        # one tie, three below the confidence bar, two inconsistent, seven kept
        probs = [0.5, 0.55, 0.45, 0.52] + [0.65 + i / 20 for i in range(7)]
        for i, p in enumerate(probs):
            run.pair(f"x{i}", f"q{i}", f"answer {i}", f"other {i}")
            run.judgment(f"x{i}", p)
        for i in (11, 12):
            run.pair(f"x{i}", f"q{i}", f"answer {i}", f"other {i}")
            run.judgment(f"x{i}", 0.8, p_ab=0.9, p_ba=0.4)
        run.write_dataset()
    data = status(tmp_path / "run")
    assert data["counts"]["preferences"] == 7
    assert [s["remaining"] for s in data["filters"]] == [13, 13, 12, 12, 9, 7, 7, 7]
    md = write_report(tmp_path / "run")[0].read_text()
    assert "From the preference dataset" in md
    shown = re.findall(r"p\(chosen\) = ([0-9.]+)", md)
    assert shown == ["0.650", "0.750", "0.800", "0.900", "0.950"]  # spread over the range, lowest to highest
    assert "| ties | 1 | 12 |" in md and "| the two presentation orders disagreed | 2 | 7 |" in md


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
    with RunBuilder(tmp_path / "run", run_id="half") as run:
        run.store.set_meta(prompt_counts={"prompts_total": 5, "prompts_empty": 1, "prompts_used": 4})
        for i in range(4):
            run.prompt(f"q{i}")
        run.chain("q0", ["harm"])
        set_stage(run.store, "critique", "running")
        run.pair("p", "q0", "a", "bb")
    with RunLock(tmp_path / "run"):  # a process is running it
        data = status(tmp_path / "run")
        md = write_report(tmp_path / "run")[0].read_text()
    (critique,) = data["stages"]
    assert (critique["status"], critique["done"], critique["total"]) == ("running", 1, 4)
    assert data["counts"]["chains"] == 1 and data["counts"]["judged"] == 0
    assert "| critique | running | 1 | 0 | 4 |" in md and "No judged pairs yet." in md
    assert "| prompts read | 5 |" in md and "| prompts skipped: empty | 1 |" in md and "| prompts used | 4 |" in md
    (critique,) = status(tmp_path / "run")["stages"]  # no process holds it: the one that was running is gone
    assert critique["status"] == "interrupted (its process ended without a word: killed?)"


def test_print_status_shows_stages_counts_failures_and_cost(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    out = io.StringIO()
    data = print_status(run_dir, Console(file=out, width=160))
    text = out.getvalue()
    assert data["run_id"] == "run-123" and data["failures"]["by_stage"] == {"judge": 1}
    assert data["usage"]["totals"]["cost_usd"] == pytest.approx(0.03)
    # the failed judgment is counted apart from those done
    for expected in ("critique", "judge", "4/5 (80%), 1 failed", "pairs judged", "0.0300", "unparseable verdict", XSS):
        assert expected in text, expected


def test_status_of_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="not a charter run directory"):
        status(tmp_path)


# -- the examples' spread and the histogram, over a column read in batches -------------------------------------


from charter.pipeline.report.examples import _ranked_positions, _spread_positions  # noqa: E402
from charter.pipeline.report.write import P_BINS, p_counts  # noqa: E402


def _argsort_positions(values: list[float], n: int) -> list[int]:
    """What the report did before: an argsort of the whole column (NaN left out, ties in row order)."""
    import numpy as np

    from charter.pipeline.report.examples import _spread_ranks

    p = np.asarray(values, dtype=float)
    rows = np.flatnonzero(~np.isnan(p))
    order = rows[np.argsort(p[rows], kind="stable")]
    return [int(order[r]) for r in _spread_ranks(len(order), n)]


_value = st.one_of(
    st.sampled_from([0.5, 0.6, 0.825, 1.0, 0.0, -0.0, float("nan")]),
    st.floats(min_value=-2.0, max_value=2.0, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(_value, max_size=60), n=st.integers(2, 9), batch=st.integers(1, 7))
def test_spread_by_radix_select_is_the_argsort_spread(values: list[float], n: int, batch: int) -> None:
    """The examples chosen batch by batch (a radix select, nothing per row held) are the rows an argsort of the
    whole column chose: ties in row order, NaN (null) left out, whatever the batch size."""
    import numpy as np

    column = np.asarray(values, dtype=float)

    def read():
        for start in range(0, len(column), batch):
            yield column[start : start + batch]

    assert _spread_positions(read, n) == _argsort_positions(values, n)


def test_radix_select_finds_ties_past_a_batch_boundary() -> None:
    import numpy as np

    column = np.array([0.825] * 10 + [0.6] * 3 + [0.825] * 5)
    batches = lambda: iter(np.array_split(column, 4))  # noqa: E731
    assert _ranked_positions(batches, [0, 2, 3, 9, 17]) == [10, 12, 0, 6, 17]


def test_histogram_counts_batch_by_batch_are_numpy_s_over_the_whole() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(1000), [0.0, 1.0, 0.5, np.nan]])
    whole = np.histogram(values[~np.isnan(values)], bins=np.linspace(0, 1, P_BINS + 1))[0]
    assert (p_counts(np.array_split(values, 7)) == whole).all() and whole.sum() == 1003


def _spread_in_memory(store: RunStore, n: int) -> list[str]:
    """The pair ids the report's examples came from before the store was read in batches: every judged pair in
    memory, sorted by confidence and pair id."""
    from charter.pipeline.report.examples import _spread_ranks

    fingerprints = store.fingerprints()
    assert fingerprints is not None
    keys = sorted(
        (max(j.p_a, 1.0 - j.p_a), p.pair_id) for p, j in judged_pairs(store, fingerprints) if j.p_a is not None
    )
    return [keys[r][1] for r in _spread_ranks(len(keys), n)]


@pytest.mark.parametrize("n", [2, 5, 7, 40])
def test_examples_from_the_store_are_the_in_memory_spread(tmp_path: Path, n: int) -> None:
    """No preference rows (every one filtered out): the examples come from the judged pairs, read in batches and
    decoded only where chosen, and are the ones a sort of every pair in memory picked, ties broken by pair id."""
    from charter.pipeline.report.examples import examples

    with RunBuilder(tmp_path / "run", config=CONFIG) as run:
        for i, p_a in enumerate([0.2, 0.8, 0.5, 0.7, 0.3, 0.9, 0.1, 0.6, 0.8, 0.25, 0.75, 0.4]):
            run.pair(f"p{(i * 7) % 12:02d}", f"q{i}", f"answer {i}", f"other answer {i}")
            run.judgment(f"p{(i * 7) % 12:02d}", p_a)
        run.pair("p99", "q99", "answer", "other answer")
        run.judgment("p99", 0.0, failure="unparseable verdict")
        shown, source = examples(run.store, run.fp, n)
        assert source == "the judged pairs (no preference dataset yet)"
        assert [e["pair_id"] for e in shown] == _spread_in_memory(run.store, n)
        assert [e["p_chosen"] for e in shown] == sorted(e["p_chosen"] for e in shown)
