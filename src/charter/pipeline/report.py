"""The run report: RUN_DIR/report/report.md and a self-contained report.html, from the run directory alone.

Counts per stage, the filter waterfall, failures, tokens and cost per role, judge diagnostics (position
inconsistency, how often the longer response won, win rates per principle), a handful of examples and
PNG plots. The key figures also go into store meta `report` for the dataset card.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from charter.pipeline.status import (
    PREFERENCES_FILE, failure_summary, filter_steps, ordered_counts, run_counts, stage_progress, usage_summary,
)
from charter.pipeline.store import RunStore, open_store

REPORT_DIR = "report"
TEMPLATES = Path(__file__).parent / "templates"
N_EXAMPLES = 5
AGREEMENT_FILE, WINRATE_FILE = "agreement.md", "winrate.json"


# -- judge figures --------------------------------------------------------------------------------------

def revision_side(pair: dict) -> str | None:
    """Which side ('a' or 'b') of a revision pair holds the revision; None for other pairs."""
    if pair.get("kind") != "revision":
        return None
    a, b = pair.get("a_source"), pair.get("b_source")
    if a == "initial" and b != "initial":
        return "b"
    if b == "initial" and a != "initial":
        return "a"
    return None


def _win(p: float) -> float:
    """1 for a win (p > 0.5), 0.5 for an exact tie, 0 for a loss."""
    return 1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


@dataclass
class _Tally:
    judged: int = 0
    checked: int = 0
    inconsistent: int = 0
    revision_pairs: int = 0
    revision_wins: float = 0.0
    p_revision_sum: float = 0.0

    def add(self, p_a: float, consistent: bool | None, side: str | None) -> None:
        self.judged += 1
        if consistent is not None:
            self.checked += 1
            self.inconsistent += not consistent
        if side is not None:
            p_revision = p_a if side == "a" else 1.0 - p_a
            self.revision_pairs += 1
            self.revision_wins += _win(p_revision)
            self.p_revision_sum += p_revision

    def figures(self) -> dict[str, Any]:
        return {
            "judged": self.judged,
            "position_inconsistency_rate": _rate(self.inconsistent, self.checked),
            "revision_pairs": self.revision_pairs,
            "revision_win_rate": _rate(self.revision_wins, self.revision_pairs),
            "mean_p_revision": _rate(self.p_revision_sum, self.revision_pairs),
        }


def _ordered(tallies: dict[str, _Tally], order: Iterable[str]) -> dict[str, dict[str, Any]]:
    known = [p for p in order if p in tallies]
    return {p: tallies[p].figures() for p in known + sorted(set(tallies) - set(known))}


# The figures read single JSON fields with SQLite's json functions instead of decoding every record:
# at 10,000 pairs that is the difference between a fraction of a second and seconds.

def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)  # json_extract gives JSON true/false as 1/0


def _pair_facts(store: RunStore) -> dict[str, dict]:
    """pair_id -> kind, sources, prompt id and the two responses' lengths in characters."""
    rows = store.execute(
        "SELECT pair_id, prompt_id, kind, json_extract(record, '$.a_source'), json_extract(record, '$.b_source'),"
        " length(json_extract(record, '$.a')), length(json_extract(record, '$.b')) FROM pairs"
    )
    keys = ("prompt_id", "kind", "a_source", "b_source", "len_a", "len_b")
    return {row[0]: dict(zip(keys, row[1:])) for row in rows}


def _critique_principles(store: RunStore) -> dict[str, set[str]]:
    """prompt_id -> the principle ids used in its critique rounds."""
    found: dict[str, set[str]] = {}
    for prompt_id, principle_id in store.execute(
        "SELECT c.prompt_id, json_extract(r.value, '$.principle_id') FROM chains c, json_each(c.record, '$.rounds') r"
    ):
        if principle_id is not None:
            found.setdefault(prompt_id, set()).add(principle_id)
    return found


def _judge_principles(store: RunStore) -> dict[str, list[tuple]]:
    """pair_id -> [(principle_id, p_a, consistent)] from each successful judgment's per-principle results."""
    found: dict[str, list[tuple]] = {}
    for pair_id, *entry in store.execute(
        "SELECT j.pair_id, json_extract(p.value, '$.principle_id'), json_extract(p.value, '$.p_a'),"
        " json_extract(p.value, '$.consistent') FROM judgments j, json_each(j.record, '$.principles') p"
        " WHERE j.status = 'ok' AND json_extract(p.value, '$.p_a') IS NOT NULL"
    ):
        found.setdefault(pair_id, []).append(tuple(entry))
    return found


def judge_stats(store: RunStore) -> dict[str, Any]:
    """Judge diagnostics over the run's successful judgments.

    - position_inconsistency_rate: among pairs judged in both orders, the fraction whose two orders
      picked different winners.
    - longer_wins_rate: among pairs with a winner (p_a != 0.5) and responses of different length (characters),
      the fraction where the judge preferred the longer response.
    - revision_win_rate: over `revision` pairs, how often the revision beat the initial response (a tie is half).
    - per_principle: per judge principle, the same figures from that principle's own probabilities,
      plus mean_p_revision, the mean probability that the revision is better.
    - per_critique_principle: revision win rates grouped by the principles used in the critique rounds.
    """
    pairs, rounds, per_judge = _pair_facts(store), _critique_principles(store), _judge_principles(store)
    overall, per_principle, per_critique = _Tally(), {}, {}
    longer, decided = 0, 0
    for pair_id, p_a, consistent in store.execute(
        "SELECT pair_id, json_extract(record, '$.p_a'), json_extract(record, '$.position_consistent')"
        " FROM judgments WHERE status = 'ok' ORDER BY rowid"
    ):
        if p_a is None:
            continue
        pair = pairs.get(pair_id, {})
        side = revision_side(pair)
        overall.add(p_a, _bool(consistent), side)
        for principle_id, p, principle_consistent in per_judge.get(pair_id, ()):
            per_principle.setdefault(principle_id, _Tally()).add(p, _bool(principle_consistent), side)
        if side is not None:
            for principle_id in rounds.get(pair.get("prompt_id"), ()):
                per_critique.setdefault(principle_id, _Tally()).add(p_a, None, side)
        if p_a != 0.5 and pair.get("len_a") is not None and pair["len_a"] != pair["len_b"]:
            decided += 1
            longer += (p_a > 0.5) == (pair["len_a"] > pair["len_b"])
    order = (store.meta("constitution", {}) or {}).get("principles", [])
    return {
        **overall.figures(),
        "position_checked": overall.checked,
        "position_inconsistent": overall.inconsistent,
        "longer_wins_rate": _rate(longer, decided),
        "longer_decided": decided,
        "per_principle": _ordered(per_principle, order),
        "per_critique_principle": _ordered(per_critique, order),
    }


def judge_p_values(store: RunStore) -> list[float]:
    """p_a of every successful judgment (for the histogram)."""
    rows = store.execute("SELECT json_extract(record, '$.p_a') FROM judgments WHERE status = 'ok'")
    return [p for (p,) in rows if p is not None]


# -- preferences and examples ----------------------------------------------------------------------------

def _text(value: Any) -> str:
    """The text of a TRL assistant turn ([{role, content}]), or the value itself."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return str(value[-1].get("content", ""))
    return "" if value is None else str(value)


def read_preferences(run_dir: Path, columns: Iterable[str]) -> list[dict] | None:
    """The requested columns (those present) of data/preferences.parquet, or None without the file."""
    path = run_dir / PREFERENCES_FILE
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return pq.read_table(path, columns=[c for c in columns if c in present]).to_pylist()


def _spread(keys: list[tuple[float, str, Any]], n: int) -> list[Any]:
    """From (p_chosen, pair_id, handle) keys, the handles of n spread evenly over the p_chosen range."""
    keys = sorted(keys, key=lambda k: (k[0], k[1] or ""))
    if len(keys) > n:
        keys = [keys[i] for i in sorted({int(i * (len(keys) - 1) / (n - 1) + 0.5) for i in range(n)})]
    return [handle for _, _, handle in keys]


def _examples_from_preferences(path: Path, n: int) -> list[dict]:
    import pyarrow.parquet as pq

    columns = ("pair_id", "pair_kind", "prompt", "chosen", "rejected", "p_chosen", "principle_ids")
    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in columns if c in present])
    if "p_chosen" not in present:
        return []
    ids = table.column("pair_id").to_pylist() if "pair_id" in present else [None] * table.num_rows
    keys = [(p, pid, i) for i, (p, pid) in enumerate(zip(table.column("p_chosen").to_pylist(), ids)) if p is not None]
    return [{
        "pair_id": r.get("pair_id"), "kind": r.get("pair_kind"), "prompt": r.get("prompt") or [],
        "chosen": _text(r.get("chosen")), "rejected": _text(r.get("rejected")),
        "p_chosen": r["p_chosen"], "principle_ids": list(r.get("principle_ids") or []),
    } for r in table.take(_spread(keys, n)).to_pylist()]


def _examples_from_store(store: RunStore, n: int) -> list[dict]:
    rows = store.execute("SELECT pair_id, json_extract(record, '$.p_a') FROM judgments WHERE status = 'ok'")
    keys = [(max(p, 1.0 - p), pid, pid) for pid, p in rows if p is not None]
    found = []
    for pair_id in _spread(keys, n):
        pair = next(store.records("pairs", "pair_id = ?", (pair_id,)), None)
        judgment = next(store.records("judgments", "pair_id = ?", (pair_id,)))
        if pair is None:
            continue
        a_wins = judgment["p_a"] >= 0.5
        found.append({
            "pair_id": pair_id, "kind": pair.get("kind"), "prompt": pair.get("prompt") or [],
            "chosen": pair["a"] if a_wins else pair["b"], "rejected": pair["b"] if a_wins else pair["a"],
            "p_chosen": max(judgment["p_a"], 1.0 - judgment["p_a"]),
            "principle_ids": judgment.get("principle_ids")
            or [p["principle_id"] for p in judgment.get("principles") or []],
        })
    return found


def examples(store: RunStore, n: int = N_EXAMPLES) -> tuple[list[dict], str]:
    """A handful of (prompt, chosen, rejected, p, principles) examples spread over the range of p(chosen)."""
    path = store.run_dir / PREFERENCES_FILE
    if path.exists() and (found := _examples_from_preferences(path, n)):
        return found, "the preference dataset"
    return _examples_from_store(store, n), "the judged pairs (no preference dataset yet)"


# -- plots ------------------------------------------------------------------------------------------------

def _figure(height: float = 3.6, left: float = 0.1):
    """A figure with fixed margins (a layout engine costs more than the plot at these sizes)."""
    from matplotlib.figure import Figure  # the object API: no pyplot global state, Agg canvas for savefig

    fig = Figure(figsize=(6.4, height), dpi=100)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.55 / height, top=1 - 0.4 / height)
    return fig


def plot_p_histogram(p_values: list[float], p_chosen: list[float], path: Path) -> Path:
    """Histogram of the judge's p_a (and of the dataset's p_chosen where there is a dataset)."""
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 21)
    ax.hist(np.asarray(p_values, dtype=float), bins=bins, alpha=0.6, label=f"judge p_a (n={len(p_values)})", color="#4c72b0")
    if p_chosen:
        ax.hist(np.asarray(p_chosen, dtype=float), bins=bins, alpha=0.6, label=f"dataset p_chosen (n={len(p_chosen)})", color="#dd8452")
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlabel="probability", ylabel="pairs", xlim=(0, 1), title="Judge probabilities")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # head-room so the legend never covers a bar
    ax.legend(loc="upper center", ncols=2, fontsize="small", frameon=False)
    fig.savefig(path, format="png")
    return path


def plot_principle_win_rates(per_principle: dict[str, dict], path: Path) -> Path | None:
    """Bar chart: per judge principle, how often the revision beat the initial response."""
    rows = [(pid, f["revision_win_rate"], f["revision_pairs"]) for pid, f in per_principle.items()
            if f["revision_win_rate"] is not None]
    if not rows:
        return None
    names = [f"{pid} (n={n})" for pid, _, n in rows][::-1]
    widest = max(len(name) for name in names)
    fig = _figure(height=max(2.0, 0.3 * len(rows) + 1.0), left=min(0.6, 0.04 + 0.0125 * widest))
    ax = fig.add_subplot()
    ax.barh(names, [rate for _, rate, _ in rows][::-1], color="#55a868")
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlim=(0, 1), xlabel="revision beat the initial response (win rate)")
    ax.set_title("Revision win rate per judge principle", loc="right")
    fig.savefig(path, format="png")
    return path


def make_plots(store: RunStore, stats: dict[str, Any], out: Path) -> tuple[list[dict], str | None]:
    """Write the PNG plots into `out`; returns [{title, file}] and a note if plotting was impossible."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "Plots need matplotlib: pip install 'charter[agreement]'."
    plots = []
    p_values = judge_p_values(store)
    if p_values:
        rows = read_preferences(store.run_dir, ["p_chosen"]) or []
        p_chosen = [r["p_chosen"] for r in rows if r.get("p_chosen") is not None]
        plot_p_histogram(p_values, p_chosen, out / "judge_p.png")
        plots.append({"title": "Judge probabilities", "file": "judge_p.png"})
    if plot_principle_win_rates(stats["per_principle"], out / "principle_win_rates.png"):
        plots.append({"title": "Revision win rate per principle", "file": "principle_win_rates.png"})
    return plots, None


def data_uri(path: Path) -> str:
    """The file as a base64 data URI, so the HTML page needs nothing beside it."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


# -- files written by other stages ------------------------------------------------------------------------

_IMG = re.compile(r'<img src="([^"]*)" alt="([^"]*)"[^>]*>')
_LINK = re.compile(r'<a href="([^"]*)"[^>]*>(.*?)</a>', re.S)


def _inline_markdown(text: str, base: Path) -> str:
    """Markdown -> HTML with raw HTML escaped, local images inlined and relative links reduced to their text."""
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)

    def image(match: re.Match) -> str:
        target = base / match.group(1)
        if re.match(r"^[a-z]+:", match.group(1)) or not target.is_file():
            return match.group(2)  # the page must stand alone: an image it cannot embed becomes its alt text
        return f'<img src="{data_uri(target)}" alt="{match.group(2)}">'

    def link(match: re.Match) -> str:
        return match.group(0) if re.match(r"^(https?:|#|mailto:)", match.group(1)) else match.group(2)

    return _LINK.sub(link, _IMG.sub(image, html))


def extras(report_dir: Path) -> dict[str, Any]:
    """agreement.md and winrate.json, when other stages have written them beside the report."""
    found: dict[str, Any] = {"agreement": None, "winrate": None}
    agreement = report_dir / AGREEMENT_FILE
    if agreement.is_file():
        text = agreement.read_text(encoding="utf-8")
        found["agreement"] = {"file": AGREEMENT_FILE, "markdown": text, "html": _inline_markdown(text, report_dir)}
    winrate = report_dir / WINRATE_FILE
    if winrate.is_file():
        try:
            data = json.loads(winrate.read_text(encoding="utf-8"))
        except ValueError as exc:
            found["winrate"] = {"file": WINRATE_FILE, "error": f"unreadable: {exc}", "scalars": {}, "json": ""}
        else:
            scalars = {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))} \
                if isinstance(data, dict) else {}
            found["winrate"] = {"file": WINRATE_FILE, "error": None, "scalars": scalars,
                                "json": json.dumps(data, indent=2, ensure_ascii=False)}
    return found


# -- rendering --------------------------------------------------------------------------------------------

def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def _fence(text: str, lang: str = "") -> str:
    """A markdown fenced block that no backtick run inside `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _cell(value: Any) -> str:
    """A value made safe for one markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _conversation(messages: list[dict] | str) -> str:
    if isinstance(messages, str):
        return messages
    return "\n\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in messages)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(("html", "html.j2")),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(pct=_pct, num=_num, fence=_fence, cell=_cell, conversation=_conversation)
    return env


def report_data(store: RunStore, report_dir: Path) -> dict[str, Any]:
    """Everything the templates show, computed from the run store and the data files."""
    counts = run_counts(store)
    stats = judge_stats(store)
    shown, source = examples(store)
    plots, plot_note = make_plots(store, stats, report_dir)
    return {
        "run_id": store.meta("run_id"), "created_at": store.meta("created_at"),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "constitution": store.meta("constitution") or {}, "models": store.meta("models") or {},
        "judge": store.meta("judge") or {},
        "stages": stage_progress(store), "counts": ordered_counts(counts), "filters": filter_steps(counts),
        "usage": usage_summary(store), "failures": failure_summary(store), "stats": stats,
        "examples": shown, "examples_source": source, "plots": plots, "plot_note": plot_note,
        "extras": extras(report_dir),
    }


def key_figures(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures stored in meta `report` for the dataset card."""
    keys = ("position_inconsistency_rate", "longer_wins_rate", "revision_win_rate", "judged", "per_principle")
    return {k: stats[k] for k in keys}


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write RUN_DIR/report/report.md and the self-contained report.html; returns their paths."""
    with open_store(run_dir) as store:
        out = store.run_dir / REPORT_DIR
        out.mkdir(parents=True, exist_ok=True)
        data = report_data(store, out)
        env = _environment()
        md_path, html_path = out / "report.md", out / "report.html"
        md_path.write_text(env.get_template("report.md.j2").render(**data), encoding="utf-8")
        images = {p["file"]: data_uri(out / p["file"]) for p in data["plots"]}
        html_path.write_text(env.get_template("report.html.j2").render(**data, images=images), encoding="utf-8")
        store.set_meta(report={**key_figures(data["stats"]), "generated_at": data["generated_at"]})
    return md_path, html_path
