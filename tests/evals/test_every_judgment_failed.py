"""An evaluation whose every judgment failed measured nothing: its command exits 3 (the summary, with the failures
counted, is written all the same), as the arena's does."""

from __future__ import annotations

import json


def test_eval_rm_with_a_judge_that_never_answers_a_verdict_exits_3(tmp_path, capsys) -> None:  # noqa: ANN001
    from charter.cli import main

    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rm.json"
    argv = ["eval", "rm", "--pairs", str(pairs), "--judge", "scripted:echo", "--judge-mode", "verdict",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "overall: no pair scored, 6 failed" in captured.out
    assert captured.err.strip() == "error: no judgment succeeded (6 failed): nothing is measured"
    summary = json.loads(out.read_text())
    assert summary["overall"] is None and summary["failures"] == 6


def test_eval_winrate_with_a_judge_that_never_answers_a_verdict_exits_3(tmp_path, capsys) -> None:  # noqa: ANN001
    from charter.cli import main

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"How do I do thing {i}?"}) + "\n" for i in range(5)))
    out = tmp_path / "winrate.json"
    argv = ["eval", "winrate", "--base", "scripted:cai", "--candidate", "scripted:constant", "--prompts",
            str(prompts), "--judge", "scripted:echo", "--judge-mode", "verdict", "--out", str(out)]  # fmt: skip
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "no judgments succeeded" in captured.out
    assert captured.err.strip() == "error: no judgment succeeded (5 failed): nothing is measured"
    summary = json.loads(out.read_text())
    assert summary["win_rate"] is None and summary["failures"] == 5


def test_a_judge_that_fails_only_some_judgments_still_exits_0(tmp_path, capsys) -> None:  # noqa: ANN001
    from charter.cli import main
    from charter.providers.scripted import register_script

    register_script("half-verdicts", lambda messages, params: "A" if "q1" in messages[-1].content else "no idea")
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(1, 4)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["eval", "rm", "--pairs", str(pairs), "--judge", "scripted:half-verdicts", "--judge-mode", "verdict",
            "--cache", str(tmp_path / "calls.sqlite")]  # fmt: skip
    assert main(argv) == 0
    assert "n=1, 2 failed)" in capsys.readouterr().out
