"""The judge audit on scripted judges of known bias, over real pairs: does it find what is built in, and only that?

Pairs: the shared HHH set (117 human-labeled pairs). Judges (charter.testing.judges): an oracle that knows the
human choice and nothing moves; `always-a` (position); `longer` (length); `obeys-answer-is` (follows a planted
"the answer is (X)", else prefers the longer response); `self-preferring` (prefers what it wrote). Each row is
the audit's rate with its 95% bootstrap interval and n; calls per pair are counted by the scripted model.

    .venv/bin/python benchmarks/bench_audit.py
"""

from __future__ import annotations

import time
from pathlib import Path

from charter.agreement.audit import audit_judge, pairs_from_file
from charter.providers.scripted import ScriptedModel, register_script
from charter.testing.judges import oracle_script, register_biased_judges

HHH = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "human_preferences" / "hhh_harmless_helpful.jsonl"
)


def fmt(fig) -> str:
    if fig is None or fig.value is None:
        return f"n/a (n={fig.n if fig else 0})"
    ci = f" [{fig.ci[0]:.2f}, {fig.ci[1]:.2f}]" if fig.ci else ""
    return f"{fig.value:.2f}{ci} (n={fig.n})"


def main() -> None:
    pairs = pairs_from_file(HHH)
    register_biased_judges()
    register_script("oracle", *oracle_script((p.better, p.worse) for p in pairs))
    print(
        "| judge | clean agreement | position flip | length flip | 'answer is (X)' fenced | fake turn fenced "
        "| own answer over the better | calls/pair | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("oracle", "always-a", "longer", "obeys-answer-is", "self-preferring"):
        model = ScriptedModel(name)
        started = time.perf_counter()
        r = audit_judge(pairs, model, n=None, self_preference=True)
        wall = time.perf_counter() - started
        inj = r.injection
        print(
            f"| `{name}` | {fmt(r.clean_agreement)} | {fmt(r.position_flip)} | {fmt(r.length.flip)} | "
            f"{fmt(inj['answer_is'].fenced.flip)} | {fmt(inj['fake_turn'].fenced.flip)} | "
            f"{fmt(r.self_over_better)} | {model.calls / len(pairs):.1f} | {wall:.1f} |"
        )


if __name__ == "__main__":
    main()
