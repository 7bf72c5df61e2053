"""Priority-aware judgments on the Model Spec's own labelled pairs: how often the judge agrees with the spec's authors
when a pair's per-principle votes are combined in priority order (`judge.combine: priority`), by the weighted mean,
or when the pair is judged under its own section alone (the flat per-principle judge); and what a priority-aware
judgment costs against a flat one (calls and tokens per pair, and how often a higher level settles the pair before
the lower levels are asked, `settle_early`).

    .venv/bin/python benchmarks/bench_spec_priority.py                 # scripted judges and the loopback server
    .venv/bin/python benchmarks/bench_spec_priority.py --embedded 12   # and the embedded model on 12 pairs

The spec is imported with `charter.import_constitution` (Markdown, its five levels) and its pairs written with
`write_spec_pairs` from `../shared/data/specs/openai_model_spec/` (beside the checkout). Each pair is judged under an
ensemble of five principles: its own section and one principle of each other level (drawn by a hash of the pair's
id), the same ensemble for `weighted` and `priority`. Agreement counts a tie as half, with its Wilson 95% interval
at its n; `by level` splits the pairs by their section's level (`--by-section` prints each section too).

Judges:
- `section-oracle` (scripted): asked under the pair's own section it prefers the spec's GOOD reply; under any other
  section it prefers the longer reply. It shows what the combination rule does when only one principle knows.
- `longer` (scripted, `charter.testing.judges`): prefers the longer reply under every principle.
- `loopback`: the section oracle served over HTTP by charter's loopback server (OpenAI wire format, mode verdict),
  so that calls and tokens are counted as a provider bills them.
- `embedded`: `local:smollm2-135m-instruct` (log-probabilities) on `--embedded` pairs taken from the levels in turn,
  through a call cache, so that `priority` reads the calls `weighted` made.

The conversation keeps system messages; a `developer` message is given as a system message (a chat `Message` takes
system, user and assistant), and the one pair with a `tool` message is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from charter.constitutions import Constitution
from charter.constitutions.markdown import SpecPair, import_constitution, read_markdown_spec, write_spec_pairs
from charter.judge.modes import scripted_choice, scripted_reply
from charter.judge.pairwise import judge_fingerprint, judge_pair
from charter.judge.settings import JudgeSettings
from charter.judge_prompt import read_comparison
from charter.providers import get_model, register_script
from charter.providers.base import ChatModel
from charter.records import Judgment, Message, Pair
from charter.stats.intervals import wilson_interval
from charter.testing.judges import register_biased_judges
from charter.testing.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "data" / "specs" / "openai_model_spec" / "model_spec.md"
#: How each rule judges a pair: (combine, settle_early, the pair's own section alone).
RULES: dict[str, tuple[str, bool, bool]] = {
    "flat": ("weighted", False, True),
    "weighted": ("weighted", False, False),
    "priority": ("priority", False, False),
    "priority, settle early": ("priority", True, False),
}
ROLE_AS = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}
_SECTION = re.compile(r"follows this section of the spec: (.*?)\?")


@dataclass
class Labelled:
    """A spec pair as charter judges it: `a` is the GOOD reply for half of the pairs (by a hash of the id)."""

    spec: SpecPair
    pair: Pair
    good_is_a: bool
    ensemble: list[str]


@dataclass
class Tally:
    n: int = 0
    agreed: float = 0.0
    calls: int = 0
    tokens: int = 0
    early: int = 0
    conflicts: int = 0
    failed: int = 0
    levels: dict[str, list[float]] = field(default_factory=dict)
    sections: dict[str, list[float]] = field(default_factory=dict)

    def add(self, item: Labelled, judgment: Judgment, calls: int) -> None:
        self.calls += calls
        self.tokens += judgment.prompt_tokens + judgment.completion_tokens
        if judgment.status != "ok" or judgment.p_a is None:
            self.failed += 1
            return
        p_good = judgment.p_a if item.good_is_a else 1 - judgment.p_a
        score = 1.0 if p_good > 0.5 else 0.0 if p_good < 0.5 else 0.5
        self.n += 1
        self.agreed += score
        self.levels.setdefault(item.spec.level or "none", []).append(score)
        self.sections.setdefault(item.spec.section, []).append(score)
        if judgment.combined is not None:
            self.early += bool(judgment.combined.skipped)
            self.conflicts += bool(judgment.combined.conflicts)


def _agreement(agreed: float, n: int) -> str:
    """Agreement (ties as half) with its Wilson 95% interval at its n."""
    if not n:
        return "–"
    low, high = wilson_interval(agreed, n)
    return f"{agreed / n:.3f} [{low:.2f}, {high:.2f}] n={n}"


def _cell(scores: Sequence[float]) -> str:
    return _agreement(sum(scores), len(scores))


def labelled_pairs(spec: Path, workdir: Path) -> tuple[Constitution, list[Labelled], int]:
    """The spec's constitution and its pairs (written with `write_spec_pairs` and read back), each with its ensemble;
    and how many pairs were left out (a tool message)."""
    constitution = import_constitution(spec)
    written = write_spec_pairs(workdir / "pairs.jsonl", read_markdown_spec(spec).pairs)
    rows = [SpecPair(**json.loads(line)) for line in written.read_text(encoding="utf-8").splitlines()]
    by_level = {level: [p.id for p in ps] for level, ps in constitution.level_order() if ps}
    out, skipped = [], 0
    for row in rows:
        if any(m["role"] not in ROLE_AS for m in row.prompt):
            skipped += 1
            continue
        digest = int(hashlib.sha256(row.id.encode()).hexdigest(), 16)
        own = constitution.principle(row.section).level
        others = [ids[digest % len(ids)] for level, ids in by_level.items() if level != own]
        good_is_a = digest % 2 == 0
        a, b = (row.chosen, row.rejected) if good_is_a else (row.rejected, row.chosen)
        prompt = [Message(role=ROLE_AS[m["role"]], content=m["content"]) for m in row.prompt]  # type: ignore[arg-type]
        pair = Pair(pair_id=row.id, prompt=prompt, a=a, b=b)
        out.append(Labelled(row, pair, good_is_a, [row.section, *others]))
    return constitution, out, skipped


def section_oracle(constitution: Constitution, items: list[Labelled]) -> Callable[[str], float]:
    """P(the response shown first is preferred) of the section oracle, read from a judge prompt."""
    headings = {p.id: p.source.heading if p.source else p.id for p in constitution.principles}
    label: dict[tuple[str, str], tuple[str, float]] = {}
    for i in items:
        heading = headings[i.spec.section]
        label[(i.spec.chosen, i.spec.rejected)] = (heading, 0.9)
        label[(i.spec.rejected, i.spec.chosen)] = (heading, 0.1)

    def p_first(text: str) -> float:
        shown = read_comparison(text)
        asked = _SECTION.findall(text)
        if shown is None or not asked:
            return 0.5
        first, second = shown
        heading, p = label.get((first, second), ("", 0.5))
        if heading == asked[-1]:  # asked under the pair's own section: the spec's label
            return p
        return 0.5 if len(first) == len(second) else 0.9 if len(first) > len(second) else 0.1

    return p_first


async def judge_all(model: ChatModel, constitution: Constitution, items: list[Labelled], mode: str) -> dict[str, Tally]:
    tallies = {}
    for name, (combine, early, alone) in RULES.items():
        settings = JudgeSettings(mode=mode, combine=combine, settle_early=early)
        fp = judge_fingerprint(settings, model.served_id, constitution, 0)
        tally = Tally()
        for item in items:
            ids = item.ensemble[:1] if alone else item.ensemble
            judgment = await judge_pair(model, constitution, item.pair, settings, ids, fp)
            tally.add(item, judgment, 2 * len(judgment.principles))
        tallies[name] = tally
    return tallies


def report(title: str, tallies: dict[str, Tally], by_section: bool) -> None:
    print(f"\n### {title}\n")
    levels = sorted({level for t in tallies.values() for level in t.levels})
    print("| rule | agreement (all) | " + " | ".join(levels) + " | calls/pair | tokens/pair | settled early |")
    print("|---|---|" + "---|" * len(levels) + "---:|---:|---:|")
    for name, t in tallies.items():
        judged = t.n + t.failed
        cells = " | ".join(_cell(t.levels.get(level, [])) for level in levels)
        early = f"{t.early / judged:.1%}" if "early" in name and judged else "–"
        print(
            f"| {name} | {_agreement(t.agreed, t.n)} | {cells} | "
            f"{t.calls / max(judged, 1):.2f} | {t.tokens / max(judged, 1):.0f} | {early} |"
        )
    failed = {name: t.failed for name, t in tallies.items() if t.failed}
    conflicts = {name: t.conflicts for name, t in tallies.items() if t.conflicts}
    print(f"\nfailed judgments: {failed or 'none'}; pairs with a conflict between levels: {conflicts or 'none'}")
    if by_section:
        sections = sorted({s for t in tallies.values() for s in t.sections})
        print("\n| section | " + " | ".join(tallies) + " |\n|---|" + "---|" * len(tallies))
        for s in sections:
            print(f"| {s} | " + " | ".join(_cell(t.sections.get(s, [])) for t in tallies.values()) + " |")


def _scripted(name: str, p_first: Callable[[str], float]) -> None:
    register_script(
        name,
        lambda m, p: scripted_reply(m[-1].content, p_first(m[-1].content)),
        lambda m, o: scripted_choice(m[-1].content, o, p_first(m[-1].content)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--embedded", type=int, default=0, help="Also judge this many pairs with the embedded model.")
    parser.add_argument("--by-section", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        constitution, items, skipped = labelled_pairs(args.spec, workdir)
        print(
            f"{args.spec.name}: {len(constitution.principles)} principles in {len(constitution.levels)} levels, "
            f"{len(items)} labelled pairs ({skipped} left out: a tool message); ensemble of "
            f"{len(items[0].ensemble)} principles a pair"
        )
        oracle = section_oracle(constitution, items)
        _scripted("section-oracle", oracle)
        register_biased_judges()
        for name in ("section-oracle", "longer"):
            report(f"scripted:{name} (verdict)", asyncio.run(_judged(f"scripted:{name}", constitution, items)), False)
        server = LoopbackServer(reply=lambda body: scripted_reply(_last(body), oracle(_last(body)))).start()
        try:
            model = f"openai-compatible:m@http://127.0.0.1:{server.port}/v1"
            started = time.perf_counter()
            tallies = asyncio.run(_judged(model, constitution, items))
            seconds = time.perf_counter() - started
        finally:
            server.stop()
        report(f"loopback server, section oracle (verdict; {server.count} requests, {seconds:.1f} s)", tallies, False)
        if args.embedded:
            sample = spread(items, args.embedded)
            cache = str(workdir / "calls.sqlite")
            started = time.perf_counter()
            tallies = asyncio.run(_judged("local:smollm2-135m-instruct", constitution, sample, "logprobs", cache))
            seconds = time.perf_counter() - started
            report(f"embedded smollm2-135m (logprobs, {len(sample)} pairs, {seconds:.0f} s)", tallies, args.by_section)


def spread(items: list[Labelled], n: int) -> list[Labelled]:
    """`n` pairs taken from the levels in turn (each level's pairs in the spec's order), so that a small sample
    reaches every level."""
    by_level: dict[str, list[Labelled]] = {}
    for item in items:
        by_level.setdefault(item.spec.level or "none", []).append(item)
    turns = itertools.zip_longest(*by_level.values())
    return [item for turn in turns for item in turn if item is not None][:n]


def _last(body: dict) -> str:
    return str(body["messages"][-1]["content"])


async def _judged(
    model_id: str, constitution: Constitution, items: list[Labelled], mode: str = "verdict", cache: str | None = None
) -> dict[str, Tally]:
    model = get_model(model_id, role="judge", cache=cache)
    try:
        return await judge_all(model, constitution, items, mode)
    finally:
        await model.aclose()


if __name__ == "__main__":
    main()
