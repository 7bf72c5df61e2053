"""Verify-and-filter (STaR-style): responses that fail their prompt's check are dropped or marked, and counted."""

from __future__ import annotations

import json
import re

import pytest

from charter.cli import main
from charter.errors import ConfigError
from charter.pipeline.api import run_sync
from charter.pipeline.config import load_run_config
from charter.providers.scripted import register_script
from charter.runs.files import RunFiles
from charter.testing.judges import shown_responses
from charter.verify import check, register_verifier, resolve

N = 6


def _arith(messages, params) -> str:
    """Right on the even-numbered questions, one off on the odd ones; the revision restates the first answer."""
    last = messages[-1].content
    question = max(i for i, m in enumerate(messages) if m.role == "user" and "Question" in m.content)
    if question < len(messages) - 1:  # a critique or revision request after the answer
        if re.search(r"rewrite|revise|revision", last, re.I):
            return f"After checking it again: {messages[question + 1].content}"
        return "The arithmetic should be checked."
    q = re.search(r"Question (\d+): what is (\d+) \+ (\d+)\?", last)
    i, a, b = (int(x) for x in q.groups())
    return f"The answer is {a + b + (i % 2)}."


def _longer(messages, options):
    a, b = shown_responses(messages[-1].content)
    p = 0.9 if len(a) > len(b) else 0.1
    return {o: {"A": p, "B": 1 - p}.get(o, 0.0) for o in options}


register_script("arith", _arith, _longer)


@pytest.fixture
def arithmetic(tmp_path):
    path = tmp_path / "arith.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": f"Question {i}: what is {i} + {10 * i}?", "reference": str(11 * i)}) + "\n"
            for i in range(N)
        )
    )
    return path


@pytest.mark.parametrize("mode", ["drop", "mark"])
def test_half_right_policy_is_filtered(make_config, arithmetic, mode) -> None:
    path = make_config(
        prompts={"path": str(arithmetic)},
        policy="scripted:arith",
        judge={"model": "scripted:arith"},
        filters={"verify": mode},
    )
    result = run_sync(load_run_config(path))
    files = RunFiles(result.run_dir)
    rows, sft = files.preferences(), files.sft()
    assert result.counts["sft_failed_verification"] == N // 2
    if mode == "drop":
        assert result.counts["dropped_failed_verification"] == N // 2
        assert len(rows) == N // 2 and all(r.chosen_verified for r in rows)
        assert len(sft) == N // 2 and all(r.verified for r in sft)
    else:
        assert result.counts.get("dropped_failed_verification", 0) == 0
        assert sorted(r.chosen_verified for r in rows) == [False] * (N // 2) + [True] * (N // 2)
        assert len(sft) == N and sum(r.verified for r in sft) == N // 2
    assert all(r.rejected_verified == r.chosen_verified for r in rows)  # the revision restates the answer


def test_an_unknown_verifier_fails_before_the_run_writes(make_config, tmp_path, capsys) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "2 + 2?", "reference": "4", "verifier": "nope"}) + "\n")
    config = make_config(prompts={"path": str(path)})
    assert main(["run", str(config)]) == 2
    assert "verifier 'nope': unknown" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_verifiers() -> None:
    assert check("so it is 1,234.", "number", "1234", "q") and not check("1233", "number", "1234", "q")
    assert not check("no number here", "number", "7", "q")
    assert check("  Paris. ", "exact", "paris", "q") and not check("Paris, France", "exact", "Paris", "q")
    assert check("It is Paris, France", "contains", "paris", "q")
    assert check("ANSWER: 42", r"regex:ANSWER: \d+", None, "q") and not check("42", r"regex:^A", None, "q")
    register_verifier("even", lambda response, reference, prompt: int(response) % 2 == 0)
    assert check("4", "even", None, "q") and not check("x", "even", None, "q")  # a crash is a failed check
    assert check("hello", "charter.verify:_contains", "ell", "q")
    with pytest.raises(ConfigError, match="needs a reference"):
        check("4", "number", None, "q")
    with pytest.raises(ConfigError, match="bad regular expression"):
        resolve("regex:(")
    with pytest.raises(ConfigError, match="cannot import"):
        resolve("no.such.module:fn")
