#!/usr/bin/env bash
# Judge/human agreement of the embedded judge on the shared human-preference sets: both modes (logprobs, verdict)
# and both order settings over the HHH and PyRIT pairs, then one Markdown table of the results.
# Usage: bash benchmarks/agreement_eval.sh [OUT_DIR]   (JSON summaries land in OUT_DIR, default /tmp/agreement_eval)
# One-order runs reuse the call cache of the both-order runs: the A-first half of each pair is the same call.
set -euo pipefail
OUT=${1:-/tmp/agreement_eval}
mkdir -p "$OUT"
DATA=../shared/data/human_preferences
JUDGE=local:smollm2-135m-instruct
run() {  # name file limit mode orders
  local limit=()
  [ "$3" != all ] && limit=(--limit "$3")
  .venv/bin/charter agreement eval --pairs "$DATA/$2" --judge $JUDGE --mode "$4" --orders "$5" "${limit[@]}" \
    --seed 0 --cache "$OUT/calls.sqlite" --json "$OUT/$1-$4-$5.json"
}
for mode in logprobs verdict; do
  for orders in both one; do
    run hhh hhh_harmless_helpful.jsonl "${HHH_LIMIT:-all}" $mode $orders
    run pyrit pyrit_hate_speech_pairs.jsonl "${PYRIT_LIMIT:-150}" $mode $orders
  done
done
.venv/bin/python benchmarks/agreement_table.py "$OUT"
