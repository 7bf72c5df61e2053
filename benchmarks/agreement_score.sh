#!/usr/bin/env bash
# Pointwise scores against pairwise judging on the shared HHH human-preference pairs, embedded judge: the same seeded
# rows judged by `charter agreement eval --mode score` (each response rated alone, 1..5, expected score over the score
# tokens) and by `--mode logprobs --orders both`, then one Markdown table of agreement and judge calls.
# Usage: bash benchmarks/agreement_score.sh [OUT_DIR]   (JSON summaries land in OUT_DIR, default /tmp/agreement_score)
# HHH_LIMIT=N judges a seeded subset of N rows (default: all 117). Each mode starts from a fresh, empty call cache,
# so the calls counted are the calls the mode needs (cache hits are repeats within the run).
set -euo pipefail
OUT=${1:-/tmp/agreement_score}
mkdir -p "$OUT"
PAIRS=../shared/data/human_preferences/hhh_harmless_helpful.jsonl
JUDGE=local:smollm2-135m-instruct
limit=()
[ -n "${HHH_LIMIT:-}" ] && limit=(--limit "$HHH_LIMIT")
run() {  # name, then the mode's options
  local name=$1
  shift
  rm -f "$OUT/$name.sqlite"*
  .venv/bin/charter agreement eval --pairs "$PAIRS" --judge $JUDGE "$@" "${limit[@]}" --seed 0 \
    --cache "$OUT/$name.sqlite" --json "$OUT/$name.json"
}
run pairwise --mode logprobs --orders both
run score --mode score --rating logprobs --scale 5
.venv/bin/python - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path


def cell(fig):
    if fig["value"] is None:
        return "n/a"
    return f"{fig['value']:.3f} [{fig['ci'][0]:.3f}, {fig['ci'][1]:.3f}]" if fig["ci"] else f"{fig['value']:.3f}"


print(
    "| mode | rows judged | agreement (no ties) | agreement (ties count) | kappa (no ties) | position consistency "
    "| judge calls | cache hits | calls / row | wall s |"
)
print("|---|---|---|---|---|---|---:|---:|---:|---:|")
notes = []
for name in ("pairwise", "score"):
    s = json.loads((Path(sys.argv[1]) / f"{name}.json").read_text())
    j, pc, calls = s["judge_vs_human"], s["position_consistency"], s["judge_calls"]
    how = f"score ({s['rating']}, 1..{s['scale']})" if s["mode"] == "score" else f"{s['mode']}, orders {s['orders']}"
    rate = "n/a (n=0)" if pc["rate"] is None else f"{pc['rate']:.3f} (n={pc['n']})"
    print(
        f"| {how} | {s['judged']}/{s['rows']} | {cell(j['agreement'])} (n={j['agreement']['n']}) "
        f"| {cell(j['agreement_with_ties'])} | {cell(j['kappa'])} | {rate} | {calls['calls']} | {calls['cache_hits']} "
        f"| {(calls['calls'] + calls['cache_hits']) / s['rows']:.1f} | {s['wall_s']} |"
    )
    if s["score_means"]:
        m = s["score_means"]
        notes.append(f"mean score: chosen {m['chosen']:.3f}, rejected {m['rejected']:.3f}; {m['tied']} rows tied")
b = s["baselines"]
notes.append(
    f"baselines: longer wins {cell(b['longer_wins']['agreement'])}, "
    f"first shown wins {cell(b['first_shown_wins']['agreement'])}"
)
print("\n" + "\n".join(notes))
EOF
