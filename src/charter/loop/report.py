"""LOOP_DIR/report/report.md (+ report.json and one PNG per metric): the rounds table of each arm, and one line per
arm across rounds for every collapse metric and win rate, `replace` against `accumulate` where both ran.

`charter status LOOP_DIR`: where an iterated loop stands, read from LOOP_DIR/loop.sqlite (safe while it runs):
per arm, each finished round's synthetic share, collapse flags and win rate, and why the arm stopped, if it did.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from charter.errors import RunStoreError
from charter.loop.data import field_figures
from charter.loop.metrics import flaggable, monitor_metrics
from charter.monitor.gold import monitor_lines
from charter.stats.diversity import diversity_table


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _win(score: dict[str, Any] | None) -> str:
    if not score or score.get("win_rate") is None:
        return "–"
    ci = score.get("ci95") or [None, None]
    return f"{score['win_rate']:.3f} [{_num(ci[0], 2)}, {_num(ci[1], 2)}] (n={score.get('n')})"


def _rm(score: dict[str, Any] | None) -> str:
    rm = (score or {}).get("reward_model")
    return "–" if not rm else f"{rm['mean_candidate']:.3f} (base {rm['mean_base']:.3f})"


def plot(result: Any, out: Path) -> list[str]:
    """One PNG per metric (and the two win rates): x = policy (0 = base), one line per arm."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return []
    series: dict[str, tuple[str, Any]] = {
        k: (label, lambda row, k=k: row["metrics"].get(k)) for k, (label, _) in monitor_metrics().items()
    }
    series["win_vs_base"] = ("win rate against the base", lambda row: (row.get("vs_base") or {}).get("win_rate"))
    series["win_vs_previous"] = (
        "win rate against the previous policy",
        lambda row: (row.get("vs_previous") or {}).get("win_rate"),
    )
    files = []
    for key, (label, get) in series.items():
        fig = Figure(figsize=(5.2, 3.2), dpi=100)
        fig.subplots_adjust(left=0.14, right=0.97, bottom=0.17, top=0.88)
        ax = fig.add_subplot()
        drawn = False
        for arm, rows in result.rounds.items():
            points = [(row["policy"], get(row)) for row in rows if get(row) is not None]
            if points:
                ax.plot([p for p, _ in points], [v for _, v in points], marker="o", label=arm)
                drawn = True
        if not drawn:
            continue
        ax.set(xlabel="policy (0 = base)", title=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small", frameon=False)
        name = f"{key}.png"
        fig.savefig(out / name, format="png")
        files.append(name)
    return files


def markdown(result: Any, plots: list[str]) -> str:
    lines = ["# charter loop", "", f"Loop directory `{result.loop_dir}`.", ""]
    metrics = monitor_metrics()
    keys = list(metrics)
    for arm, rows in result.rounds.items():
        lines += [f"## Strategy: {arm}", ""]
        if arm in result.stopped:
            lines += [f"Stopped {result.stopped[arm]}.", ""]
        head = [
            "policy",
            "DPO rows (real)",
            "synthetic share",
            *[metrics[k][0] for k in keys],
            "win vs base",
            "win vs previous",
            "reward model",
            "collapse flags",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            data = row.get("data") or {}
            rows_cell = f"{data.get('rows')} ({data.get('real_rows', data.get('human_rows'))})" if data else "–"
            cells = [
                str(row["policy"]),
                rows_cell,
                _share(data),
                *[_num(row["metrics"].get(k)) for k in keys],
                _win(row.get("vs_base")),
                _win(row.get("vs_previous")),
                _rm(row.get("vs_base")),
                "; ".join(row.get("flags") or []) or "none",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += _collapse(rows) + _data_diversity(rows) + _gold((getattr(result, "gold", None) or {}).get(arm))
    if result.real:
        lines += [
            "Real data (the monitor's reference: a seeded sample of the real pairs' chosen responses, as many as the "
            "probes): "
            + ", ".join(
                f"{label} {_num(result.real.get(k))}"
                for k, (label, falls) in monitor_metrics().items()
                if falls is not None
            )
            + ".",
            "",
        ]
    lines += [
        "Policy 0 is the base; policy r+1 is DPO on round r's data (synthetic share: the share of its rows that "
        "charter generated; the rest are real pairs). Win rates: both presentation orders, ties count half, Wilson "
        "95% interval. Collapse flags: a diversity measure more than the configured fraction below its reference "
        "(self-BLEU: 1 - self-BLEU), by the configured rule.",
        "",
    ]
    lines += _ranking(result.ranking)
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _share(data: dict[str, Any]) -> str:
    share = data.get("synthetic_share")
    if share is None:
        return "–"
    floor = data.get("real_share_floor")
    return f"{share:.1%}" + (f" (real ≥ {floor:.0%})" if floor else "")


def _change(entry: dict[str, Any] | None) -> str:
    """A relative change with its interval, or what stands in for them."""
    if not entry or entry.get("change") is None:
        return "–"
    interval = entry.get("ci95")
    shown = f" [{interval[0]:+.0%}, {interval[1]:+.0%}]" if interval else ""
    return f"{entry['change']:+.0%}{shown}"


def _collapse(rows: list[dict[str, Any]]) -> list[str]:
    """Per trained policy, each diversity measure's change against round 0 and against the real data."""
    compared = [row for row in rows if row.get("collapse")]
    if not compared:
        return []
    references = [r for r in ("round_0", "real") if any(r in row["collapse"] for row in compared)]
    keys, metrics = flaggable(), monitor_metrics()
    head = ["policy", "against", *[metrics[k][0] for k in keys]]
    lines = [
        "Collapse monitor: each measure's relative change (self-BLEU: of 1 - self-BLEU) against round 0's answers "
        "to the same probes and against the real sample, with its 95% leave-one-out jackknife interval:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in compared:
        for reference in references:
            entries = row["collapse"].get(reference) or {}
            label = "round 0" if reference == "round_0" else "real data"
            cells = [str(row["policy"]), label, *[_change(entries.get(k)) for k in keys]]
            lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _gold(summary: Any) -> list[str]:
    """The gold monitor of one arm: its table per policy (the monitor's steps are the policies) and the gold-best
    round named; [] without one."""
    if not summary:
        return []
    best = summary["best_step"]
    named = (
        "none scored"
        if best is None
        else "policy 0, the base"
        if best == 0
        else f"policy {best} (round {best - 1}'s DPO, `{summary['best_checkpoint']}`)"
    )
    lines = monitor_lines(summary)
    lines[0] = "### Gold monitor: the round's judge against gold"
    lines[2] = lines[2].replace(f"answered every {summary['every']} steps", "answered by each policy")
    return [
        *lines,
        "Here a step is a policy (0: the base; r + 1: after round r's DPO), and the training reward is the round's "
        "judge's P(the policy's answer beats the base policy's answer to the same held-out prompt).",
        "",
        f"**Gold-best policy: {named}**" + (f" (gold {summary['best_gold']:.3f})." if best is not None else "."),
        "",
    ]


def _data_diversity(rows: list[dict[str, Any]]) -> list[str]:
    """Per round, the diversity of the DPO data (prompts and chosen responses): one column a round's field."""
    found = [(row["policy"] - 1, (row.get("data") or {}).get("diversity")) for row in rows]
    columns = {
        f"round {r} `{name}`": field_figures(f) for r, diversity in found if diversity for name, f in diversity.items()
    }
    if not columns:
        return []
    return [
        "Training data diversity (each round's DPO rows; self-BLEU with its leave-one-out jackknife interval):",
        "",
        *diversity_table(columns),
        "",
    ]


def _ranking(ranking: dict[str, Any] | None) -> list[str]:
    """The arena of the base and every round's policy, as a table (the base scores 0)."""
    if not ranking:
        return []
    lines = [
        "## Every policy on one scale",
        "",
        f"Bradley–Terry scores against `{ranking['reference']}` (log-odds, 95% interval as in `arena/arena.md`; "
        f"{ranking['design']} design, {ranking['failures']} failed judgments left out). Overlapping rank ranges "
        "are not told apart. Full table: `arena/arena.md`.",
        "",
        "| rank (range) | policy | score | 95% interval |",
        "|---|---|---|---|",
    ]
    for m in ranking["models"]:
        if m["rank"] is None:
            lines.append(f"| unranked | `{m['model']}` | no decided comparison | |")
            continue
        interval = "reference" if m["ci_low"] is None else f"[{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]"
        lines.append(
            f"| {m['rank']} ({m['rank_low']}-{m['rank_high']}) | `{m['model']}` | {m['score']:+.3f} | {interval} |"
        )
    return [*lines, ""]


def write_report(loop_dir: Path, result: Any) -> Path:
    out = Path(loop_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(result, out)
    (out / "report.json").write_text(
        json.dumps(
            {
                "rounds": result.rounds,
                "stopped": result.stopped,
                "ranking": result.ranking,
                "real": result.real,
                "gold": getattr(result, "gold", {}),
            },  # fmt: skip
            indent=1,
            default=str,
        )
        + "\n",
        encoding="utf-8",
    )
    path = out / "report.md"
    path.write_text(markdown(result, plots), encoding="utf-8")
    return path


LOOP_FILE = "loop.sqlite"


def is_loop_dir(folder: Path) -> bool:
    return (Path(folder) / LOOP_FILE).is_file()


def _meta(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def _round(row: dict[str, Any]) -> dict[str, Any]:
    data = row.get("data") or {}
    return {
        "policy": row["policy"],
        "model": row["model"],
        "rows": data.get("rows"),
        "real_rows": data.get("real_rows", data.get("human_rows")),
        "synthetic_share": data.get("synthetic_share"),
        "real_share_floor": data.get("real_share_floor"),
        "flags": row.get("flags") or [],
        "win_vs_base": (row.get("vs_base") or {}).get("win_rate"),
        "win_vs_previous": (row.get("vs_previous") or {}).get("win_rate"),
    }


def loop_status(loop_dir: str | Path) -> dict[str, Any]:
    """The loop's state as data: its name and settings, the steps done, and per arm its rounds (synthetic share,
    collapse flags, win rates) and `stopped` (why it stopped early; None where it did not).

    Raises:
        RunStoreError: The folder has no readable loop.sqlite.
    """
    path = Path(loop_dir) / LOOP_FILE
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            config, result = _meta(db, "config") or {}, _meta(db, "result") or {}
            (steps,) = db.execute("SELECT COUNT(*) FROM steps").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise RunStoreError(f"{path}: not a readable loop store ({exc})") from None
    stopped = result.get("stopped") or {}
    arms = {
        arm: {
            "rounds": [_round(row) for row in rows if row["policy"] > 0],
            "stopped": stopped.get(arm),
            "gold": _gold_status((result.get("gold") or {}).get(arm)),
        }
        for arm, rows in (result.get("rounds") or {}).items()
    }
    return {
        "kind": "loop",
        "path": str(loop_dir),
        "name": config.get("name"),
        "rounds": config.get("rounds"),
        "strategies": config.get("strategies"),
        "real_share": config.get("real_share"),
        "monitor_rule": (config.get("monitor") or {}).get("rule"),
        "steps_done": steps,
        "arms": arms,
        "real": result.get("real"),
    }


def _gold_status(summary: Any) -> dict[str, Any] | None:
    """The gold monitor of one arm for the status: per policy its reward, gold and gap, the flag and the best."""
    if not summary:
        return None
    keep = ("step", "reward", "gold", "gap", "flagged")
    return {
        "policies": [{k: s[k] for k in keep} for s in summary["steps"]],
        "flagged_at": summary["flagged_at"],
        "best_step": summary["best_step"],
        "best_checkpoint": summary["best_checkpoint"],
        "stopped": summary.get("stopped"),
        "calls": summary.get("calls"),
        "cost_usd": summary.get("cost_usd"),
    }


def loop_summary(status: dict[str, Any]) -> str:
    """The status in a few lines: per arm, rounds done, the last synthetic share, and the stop and its reason."""
    lines = [f"loop {status['name']} ({status['path']}): {status['steps_done']} steps done"]
    if not status["arms"]:
        lines.append("  no round finished yet")
    for arm, found in status["arms"].items():
        rounds = found["rounds"]
        last = rounds[-1] if rounds else None
        share = None if last is None else last["synthetic_share"]
        shown = "–" if share is None else f"{share:.1%}"
        lines.append(f"  {arm}: {len(rounds)} of {status['rounds']} round(s); last synthetic share {shown}")
        if last is not None and last["flags"]:
            lines.append(f"    flags: {'; '.join(last['flags'])}")
        gold = found.get("gold")
        if gold:
            flag = f"FLAGGED at policy {gold['flagged_at']}" if gold["flagged_at"] is not None else "no policy flagged"
            lines.append(f"    gold monitor: {flag}; gold-best policy {gold['best_step']}")
            if gold.get("stopped"):
                lines.append(f"    gold monitor stopped: {gold['stopped']}")
        if found["stopped"]:
            lines.append(f"    stopped {found['stopped']}")
    return "\n".join(lines)
