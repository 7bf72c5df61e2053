"""Panels of judges in `charter agreement eval` (Verga et al. 2024): three scripted judges with independent errors,
pooled by their mean P(A), agree with people more often than any one of them; each member's own figures, calls and
the agreement between them are reported."""

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from charter.agreement.evaluate import evaluate
from charter.cli import app
from charter.providers import register_script
from charter.testing.judges import shown_responses
from tests.support.tiny_models import write_jsonl

ROWS = 300


def _noisy(name: str, right: float):  # noqa: ANN202 - a judge right `right` of the time, its errors its own
    def choice(messages, options):  # noqa: ANN001, ANN202
        a, b = shown_responses(messages[-1].content)
        a_good = "good answer" in a
        draw = int(hashlib.sha256(f"{name}|{a}|{b}".encode()).hexdigest(), 16) % 1000 / 1000
        correct = draw < right
        p_a = 0.8 if a_good == correct else 0.2
        return {o: {"A": p_a, "B": 1 - p_a}.get(o, 0.0) for o in options}

    register_script(name, lambda m, p: "A", choice)


for member in ("juror-1", "juror-2", "juror-3"):
    _noisy(member, 0.7)


def _pairs(tmp_path: Path) -> Path:
    rows = [
        {"id": f"r{i}", "prompt": f"question {i}?", "chosen": f"good answer {i}", "rejected": f"weak reply {i}"}
        for i in range(ROWS)
    ]
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def test_three_judges_with_independent_errors_beat_each_one(tmp_path: Path) -> None:
    judges = ["scripted:juror-1", "scripted:juror-2", "scripted:juror-3"]
    report = evaluate(_pairs(tmp_path), judges, orders="one", bootstrap_samples=200)
    panel = report["panel"]
    assert panel is not None and report["judge"] == " + ".join(judges)
    alone = [m["judge_vs_human"].agreement.value for m in panel["members"]]
    together = report["judge_vs_human"].agreement.value
    assert all(a is not None and 0.62 < a < 0.78 for a in alone)
    assert together is not None and together > max(a for a in alone if a is not None) + 0.03
    assert [m["judge_calls"]["calls"] for m in panel["members"]] == [ROWS] * 3
    assert report["judge_calls"] is not None and report["judge_calls"]["calls"] == 3 * ROWS
    between = panel["between_judges"]
    assert between is not None and between.krippendorff_alpha.value is not None


def test_a_panel_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "panel.json"
    args = ["agreement", "eval", "--pairs", str(_pairs(tmp_path)), "--orders", "one", "--cache", "", "--json", str(out)]
    for member in ("juror-1", "juror-2", "juror-3"):
        args += ["--judge", f"scripted:{member}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "the panel's members" in result.output and "Krippendorff's alpha" in result.output
    assert len(json.loads(out.read_text())["panel"]["members"]) == 3
