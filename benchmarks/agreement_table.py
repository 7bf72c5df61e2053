"""Print the Markdown table of `charter agreement eval` JSON summaries (see agreement_eval.sh)."""

import json
import sys
from pathlib import Path


def cell(fig: dict) -> str:
    if fig["value"] is None:
        return "n/a"
    ci = f" [{fig['ci'][0]:.2f}, {fig['ci'][1]:.2f}]" if fig["ci"] else ""
    return f"{fig['value']:.3f}{ci}"


def main(folder: str) -> None:
    print(
        "| set | rows judged | mode | orders | agreement (no ties) | agreement (ties count) | kappa (no ties) "
        "| position consistency | longer wins | first shown wins | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(Path(folder).glob("*.json")):
        s = json.loads(path.read_text())
        j, b, pc = s["judge_vs_human"], s["baselines"], s["position_consistency"]
        rate = "—" if pc["rate"] is None else f"{pc['rate']:.3f}"
        print(
            f"| {Path(s['pairs_file']).stem} | {s['judged']}/{s['rows']} | {s['mode']} | {s['orders']} "
            f"| {cell(j['agreement'])} (n={j['agreement']['n']}) | {cell(j['agreement_with_ties'])} "
            f"| {cell(j['kappa'])} | {rate} | {cell(b['longer_wins']['agreement'])} "
            f"| {cell(b['first_shown_wins']['agreement'])} | {s['wall_s']} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/agreement_eval")
