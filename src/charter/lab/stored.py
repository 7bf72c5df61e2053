"""A run's stored constitution test (`judge.constitution_test`): reading it back, and the publishing gate on the
principles it flags insensitive."""

from __future__ import annotations

from charter.agreement.gate import GateResult
from charter.judge.settings import ConstitutionTestConfig
from charter.lab.checks import ConstitutionTest
from charter.runs.store import RunStore

META = "constitution_test"
NO_GATE = "no constitution-test gate configured (judge.constitution_test.max_insensitive)"


def stored_test(store: RunStore) -> ConstitutionTest | None:
    """The constitution test stored in a run, if one was run."""
    return store.meta_record(META, ConstitutionTest)


def constitution_test_config(store: RunStore) -> ConstitutionTestConfig | None:
    """The `judge.constitution_test` section of the run config in effect, if any."""
    return store.judge_section("constitution_test", ConstitutionTestConfig)


def evaluate_constitution_gate(
    result: ConstitutionTest | None, config: ConstitutionTestConfig | None, judge_fingerprint: str | None = None
) -> GateResult:
    """Check a run's stored constitution test against `max_insensitive`: at most that many principles may be
    flagged (their verdicts do not follow their text) or untested (the judge decided no pair under them)."""
    if config is None or config.max_insensitive is None:
        return GateResult(True, None, None, None, NO_GATE, configured=False)
    bar = float(config.max_insensitive)
    if result is None:
        return GateResult(
            False, "insensitive_principles", None, bar, "constitution-test gate: no constitution test was run"
        )
    if judge_fingerprint and result.judge_fingerprint != judge_fingerprint:
        return GateResult(
            False,
            "insensitive_principles",
            None,
            bar,
            "constitution-test gate: the stored test is not of the judge settings that made the rows; run it again",
        )
    flagged, untested = result.flagged, result.untested
    count = len(flagged) + len(untested)  # an untested principle is not shown to be used: it counts against the bar
    passed = count <= config.max_insensitive
    named = f" ({', '.join(flagged)})" if flagged else ""
    unmeasured = (
        f" and {len(untested)} untested (the judge decided no pair under them: {', '.join(untested)})"
        if untested
        else ""
    )
    message = (
        f"constitution-test gate {'passed' if passed else 'failed'}: {len(flagged)} principle(s) flagged "
        f"insensitive{named}{unmeasured}, at most {config.max_insensitive} allowed"
    )
    return GateResult(passed, "insensitive_principles", float(count), bar, message)


__all__ = ["META", "evaluate_constitution_gate", "stored_test", "constitution_test_config"]
