"""Judge mode `checklist` (both aggregations) against `rubric`, `score` and pairwise `logprobs`: agreement with people.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_checklist.py [--data ../shared/data] [--limit 117]
        [--pyrit-limit 594] [--local-limit 12] [--no-loopback]

Each human-labelled pair (the shared HHH pairs, and the PyRIT pairs, or a seeded subset) goes through `charter.run`
as a user would run it: the pair's prompt is a run prompt, a scripted policy answers it with one of the pair's two
responses (drawn per row, seeded, as `charter agreement eval` draws `a`), a scripted critic revises it into the other
one, and the run's judge compares the initial response with the revision (`pairs.kinds: [revision]`). The run keeps
every judged pair (no tie, consistency or duplicate filter), so each preference row is one judgment; agreement is
the share of rows whose `chosen` is the human-preferred response. A prompt occurs in several pairs, so the rows go
through in rounds, each round a run whose prompts are distinct.

Per judge and mode, on the same rows: judged pairs, agreement over decided pairs with its Wilson 95% interval,
ties, judge calls, prompt tokens (all; read from a provider's prompt cache: `cache_read`), completion tokens and the
cost at an illustrative price (2.50 / 10.00 USD per million input / output tokens, applied to the tokens each judge
counts: words for a scripted judge, the tokenizer's tokens for the local one; neither bills anything itself), read
from the runs' stores (`charter.status`). The scripted policy and critic calls are left out.

The constitution, written by the script, has three principles with yes/no criteria that `scripted:checklist-judge`
(charter.testing.lab) can answer (a number, a closing question, please/thank you, no shouting, at most 15 words).
Judges:

- consistent scripted judges: `scripted:checklist-judge` for mode `checklist`, its checklist the constitution's
  criteria (`checklist.source: criteria`) or written by `scripted:checklist-writer` (`source: model`); and for the
  other modes `scripted:criteria-rater` (this script), which scores a response by the same criteria with the same
  weights and gates (`charter.checklist.score_checklist`) and rates it 1..scale under every principle, or gives
  P(A) = 0.5 + (s_a - s_b) / 2 for a pair: every mode judges by the same rule, only the aggregation differs;
- the same judges behind an OpenAI-compatible loopback HTTP server (`charter.testing.loopback`, `JudgeServer`
  here), reached as `openai-compatible:judge@...` through the openai SDK, on the same rows and modes: it answers a
  checklist, writing, rating or comparison prompt as the scripted judges do, gives the rater's P(A), P(B) as the top
  log-probabilities of a comparison, and counts and caches prompts as OpenAI does (`OpenAIBilling`), so the run's
  usage is the server's (cached tokens included); the script checks the calls the runs recorded against the
  server's count;
- the embedded `local:smollm2-135m-instruct` on a small slice (a 135M model is at chance on these pairs, and the
  local provider has no constrained decoding: a checklist or rubric reply it fails to write as JSON is a recorded
  failure, its pair undecided).

Prints one Markdown table, then the calls and prompt tokens the loopback server billed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import charter
from charter.agreement.evaluate import PairRow, load_pairs_file, select, to_pair
from charter.checklist import ItemVerdict, checklist_from_criteria, score_checklist
from charter.checklist.author import read_writer_prompt
from charter.checklist.prompt import read_checklist_prompt
from charter.constitutions import load_constitution
from charter.judge_prompt import read_comparison, read_rating, read_rubric_ids, read_scale, write_verdict
from charter.pipeline.run import Runner
from charter.providers.base import Messages, SamplingParams
from charter.providers.scripted import ScriptedModel, register_script
from charter.records import Message
from charter.stats.intervals import wilson_interval
from charter.testing.lab import CRITERIA, register_lab_models
from charter.testing.loopback import LoopbackServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.billing import OpenAIBilling  # noqa: E402  (the tests' billing server)

ROOT = Path(__file__).resolve().parents[1]
PRICE_IN, PRICE_OUT = 2.5, 10.0
CRITIQUE = "Identify one way the response could better serve the user."
REVISION = "Rewrite the response to serve the user better."
#: Principle -> its criteria (rule of charter.testing.lab.CRITERIA, category, gate).
PRINCIPLES: dict[str, list[tuple[str, str, bool]]] = {
    "specific": [("number", "important", False), ("question", "optional", False)],
    "courteous": [("polite", "important", False), ("calm", "pitfall", True)],
    "brief": [("concise", "essential", False)],
}


def write_constitution(folder: Path) -> Path:
    """A constitution whose criteria `scripted:checklist-judge` can answer."""
    principles = []
    for pid, criteria in PRINCIPLES.items():
        listed = []
        for rule, category, gate in criteria:
            item: dict[str, Any] = {"id": rule, "requirement": CRITERIA[rule][0], "category": category}
            if gate:
                item["gate"] = True
            listed.append(item)
        principles.append(
            {
                "id": pid,
                "description": f"The response is {pid}.",
                "critique_request": CRITIQUE,
                "revision_request": REVISION,
                "comparison": f"Which response is more {pid}?",
                "criteria": listed,
            }
        )
    path = folder / "criteria.constitution.yaml"
    path.write_text(yaml.safe_dump({"name": "criteria", "gate_cap": 0.2, "principles": principles}, sort_keys=False))
    return path


def criteria_rater(constitution_path: Path) -> tuple[Any, Any]:
    """(generate, choice) of a judge that scores a response by the constitution's criteria, as the checklist judge
    answers them, in every rating and comparison mode."""
    checklist = checklist_from_criteria(load_constitution(str(constitution_path)))

    def score(text: str) -> float:
        verdicts = {
            item.id: ItemVerdict(item_id=item.id, verdict="yes" if CRITERIA[item.id][2](text) else "no")
            for item in checklist.items
        }
        value = score_checklist(checklist, verdicts).score
        assert value is not None
        return value

    def p_a(a: str, b: str) -> float:
        return 0.5 + (score(a) - score(b)) / 2

    def generate(messages: Messages, params: SamplingParams) -> str:
        last = messages[-1].content
        rated = read_rating(last)
        if rated is not None:
            scale = read_scale(last)
            value = 1 + round((scale - 1) * score(rated))
            ids = read_rubric_ids(last)
            return str(value) if ids is None else json.dumps({pid: value for pid in ids})
        shown = read_comparison(last)
        return write_verdict("A" if shown is None or p_a(*shown) >= 0.5 else "B")

    def choice(messages: Messages, options: Sequence[str]) -> dict[str, float]:
        shown = read_comparison(messages[-1].content)
        p = 0.5 if shown is None else p_a(*shown)
        return {o: {"A": p, "B": 1 - p}.get(o, 0.0) for o in options}

    return generate, choice


class JudgeServer(LoopbackServer):
    """An OpenAI-compatible loopback server (`charter.testing.loopback`) that judges as the scripted judges do: a
    checklist prompt answered by `scripted:checklist-judge`, a writing prompt by `scripted:checklist-writer`, a
    rating or comparison by the criteria rater, and a logprobs request for a comparison with the rater's P(A) and
    P(B) as the top log-probabilities. Prompts are cached and billed as OpenAI does (`OpenAIBilling`: prefixes of
    1,024 words or more, in 128-word steps; a word a token)."""

    def __init__(self, constitution_path: Path) -> None:
        self.rate, self.p_options = criteria_rater(constitution_path)
        self.check = ScriptedModel("checklist-judge").fn
        self.write = ScriptedModel("checklist-writer").fn
        super().__init__(reply=self.answer, billing=OpenAIBilling(input=PRICE_IN, output=PRICE_OUT), record=False)

    @staticmethod
    def messages(body: dict[str, Any]) -> list[Message]:
        return [Message(role=m["role"], content=str(m.get("content") or "")) for m in body.get("messages", [])]

    def answer(self, body: dict[str, Any]) -> str:
        messages = self.messages(body)
        last = messages[-1].content if messages else ""
        if read_checklist_prompt(last) is not None:
            return self.check(messages, SamplingParams())
        if read_writer_prompt(last):
            return self.write(messages, SamplingParams())
        return self.rate(messages, SamplingParams())

    def logprobs_for(self, body: dict[str, Any]) -> dict[str, float]:
        """A comparison's A and B; no log-probabilities for any other prompt (its reply is then text)."""
        messages = self.messages(body)
        if not messages or read_comparison(messages[-1].content) is None:
            return {}
        probs = self.p_options(messages, ["A", "B"])
        return {option: math.log(max(p, 1e-9)) for option, p in probs.items()}


class Responses:
    """The policy and critic of the current round: the prompt's first response, then its revision (the other)."""

    def __init__(self) -> None:
        self.by_prompt: dict[str, tuple[str, str]] = {}

    def _shown(self, messages: Messages) -> tuple[str, str]:
        first = next(m.content for m in messages if m.role == "user")
        return self.by_prompt[first.strip()]

    def policy(self, messages: Messages, params: SamplingParams) -> str:
        return self._shown(messages)[0]

    def critic(self, messages: Messages, params: SamplingParams) -> str:
        if REVISION in messages[-1].content:
            return self._shown(messages)[1]
        return "The response could serve the user better."


def prompt_key(row: PairRow) -> str:
    """A row's prompt as the policy and critic find it: its first user message."""
    return next(m.content for m in row["prompt"] if m.role == "user").strip()


def rounds(rows: list[PairRow]) -> list[list[PairRow]]:
    """The rows in rounds whose prompts are distinct."""
    out: list[list[PairRow]] = []
    for row in rows:
        key = prompt_key(row)
        home = next((r for r in out if all(prompt_key(x) != key for x in r)), None)
        if home is None:
            out.append(home := [])
        home.append(row)
    return out


def mode_config(
    judge: str, mode: str, constitution: Path, source: str | None, aggregation: str, writer: str | None = None
) -> dict[str, Any]:
    """The run config's judge and checklist sections for one mode (`writer`: the checklist writer of `source:
    model`, `scripted:checklist-writer` unless given)."""
    config: dict[str, Any] = {
        "judge": {"model": judge, "mode": mode, "principles_per_pair": len(PRINCIPLES), "max_retries": 0}
    }
    if mode == "score":
        config["judge"]["rating"] = "verdict"
    if mode == "logprobs":
        config["judge"]["orders"] = "both"
    if source is not None:
        config["checklist"] = {"source": source, "aggregation": aggregation}
        if source == "model":
            config["checklist"]["model"] = writer or "scripted:checklist-writer"
    return config


def run_round(
    part: list[PairRow], judged: dict[str, Any], constitution: Path, folder: Path, responses: Responses, seed: int
) -> tuple[list[dict[str, Any]], list[Any]]:
    """One `charter.run` over a round's pairs: its preference rows and the judge's usage rows."""
    responses.by_prompt = {}
    for row in part:
        pair, _ = to_pair(row, seed)  # the pair's `a` (the initial response) drawn per row, as agreement eval does
        responses.by_prompt[prompt_key(row)] = (pair.a, pair.b)
    prompts = folder / "prompts.jsonl"
    lines = [json.dumps({"prompt": [m.model_dump(include={"role", "content"}) for m in r["prompt"]]}) for r in part]
    prompts.write_text("".join(line + "\n" for line in lines))
    config = {
        "name": folder.name,
        "output_dir": str(folder / "run"),
        "seed": seed,
        "constitution": str(constitution),
        "prompts": {"path": str(prompts), "max_prompt_tokens": None},
        "policy": "scripted:bench-policy",
        "critic": "scripted:bench-critic",
        "critique": {"few_shot": False},
        "filters": {"drop_ties": False, "drop_inconsistent": False, "dedupe": False},
        "cache": None,
        "report": False,
        "max_failures": 1_000_000,  # a count: keep every judged pair, record every failure
        "diversity": {"embedding_model": None},
        "concurrency": 8,
        **judged,
    }
    result = charter.run(config)
    rows = read_rows(result.preferences) if result.preferences else []
    usage = [u for u in charter.status(result.run_dir)["usage"]["rows"] if u["role"] not in ("policy", "critic")]
    return rows, usage


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A run's preference rows (JSONL or parquet)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


def measure(rows: list[PairRow], judged: dict[str, Any], constitution: Path, work: Path, seed: int) -> dict:
    responses = Responses()
    register_script("bench-policy", responses.policy)
    register_script("bench-critic", responses.critic)
    right = ties = decided = judged_n = 0
    usage: list[Any] = []
    start = time.perf_counter()
    for index, part in enumerate(rounds(rows)):
        folder = work / f"round{index}"
        folder.mkdir(parents=True)
        prefs, used = run_round(part, judged, constitution, folder, responses, seed)
        usage += used
        wanted = {prompt_key(r): r["chosen"] for r in part}
        unknown = {_prompt_text(p) for p in prefs} - set(wanted)
        assert not unknown, f"preference rows of prompts not in the round: {unknown}"
        for pref in prefs:
            prompt = _prompt_text(pref)
            judged_n += 1
            if pref["p_chosen"] == 0.5:
                ties += 1
                continue
            decided += 1
            right += _last(pref["chosen"]) == wanted[prompt].strip()
    return {
        "rows": len(rows),
        "judged": judged_n,
        "decided": decided,
        "right": right,
        "ties": ties,
        "roles": sorted({u["role"] for u in usage}),
        "calls": sum(u["calls"] for u in usage),
        "prompt_tokens": sum(u["prompt_tokens"] for u in usage),
        "cache_read": sum(u["cache_read_tokens"] for u in usage),
        "completion_tokens": sum(u["completion_tokens"] for u in usage),
        "wall_s": time.perf_counter() - start,
    }


def _last(response: str | list[dict[str, str]]) -> str:
    return (response if isinstance(response, str) else response[-1]["content"]).strip()


def _prompt_text(pref: dict[str, Any]) -> str:
    prompt = pref["prompt"]
    if isinstance(prompt, list):
        prompt = next(m["content"] for m in prompt if m["role"] == "user")
    return prompt.strip()


def table_row(data: str, judge: str, how: str, m: dict) -> str:
    if m["decided"]:
        low, high = wilson_interval(m["right"], m["decided"])
        agree = f"{m['right'] / m['decided']:.3f} [{low:.3f}, {high:.3f}] (n={m['decided']})"
    else:
        agree = "n/a (n=0)"
    cost = (m["prompt_tokens"] * PRICE_IN + m["completion_tokens"] * PRICE_OUT) / 1e6
    return (
        f"| {data} | `{judge}` | {how} | {m['judged']}/{m['rows']} | {agree} | {m['ties']} | {m['calls']} "
        f"| {m['prompt_tokens'] - m['cache_read']} + {m['cache_read']} | {m['completion_tokens']} | {cost:.4f} "
        f"| {m['wall_s']:.1f} |"
    )


MODES = [
    ("checklist, explicit (criteria)", "checklist", "criteria", "explicit"),
    ("checklist, implicit (criteria)", "checklist", "criteria", "implicit"),
    ("checklist, explicit (writer)", "checklist", "model", "explicit"),
    ("checklist, implicit (writer)", "checklist", "model", "implicit"),
    ("rubric", "rubric", None, "explicit"),
    ("score (verdict)", "score", None, "explicit"),
    ("logprobs, both orders", "logprobs", None, "explicit"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description="Judge mode checklist against rubric, score and logprobs.")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--limit", type=int, default=117, help="HHH rows for the scripted judges")
    parser.add_argument("--pyrit-limit", type=int, default=594, help="PyRIT rows for the scripted judges (0: none)")
    parser.add_argument(
        "--local-limit", type=int, default=12, help="HHH rows for the embedded model, distinct prompts (0: skip it)"
    )
    parser.add_argument(
        "--loopback",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the same rows with the judge an OpenAI-compatible loopback server (the openai SDK over HTTP)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # `charter run` with judge mode `checklist` stops in its start-of-run cost forecast (the forecast judges a pair
    # without the prompt's checklist: ConfigError); the run itself is left whole. Skip the stored forecast, as a Ray
    # shard does; the usage figures below are the runs' own, not the forecast's.
    Runner.forecasts = False
    register_lab_models()
    pairs = args.data / "human_preferences"
    sets = [("HHH", select(load_pairs_file(pairs / "hhh_harmless_helpful.jsonl"), args.limit, args.seed))]
    if args.pyrit_limit:
        pyrit = load_pairs_file(pairs / "pyrit_hate_speech_pairs.jsonl")
        sets.append(("PyRIT", select(pyrit, args.pyrit_limit, args.seed)))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(
        "| data | judge | mode | judged | agreement, decided [Wilson 95%] | ties | judge (+ writer) calls "
        "| prompt tokens, uncached + cached | completion tokens | cost USD (2.50/10.00) | wall s |"
    )
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        constitution = write_constitution(work)
        register_script("criteria-rater", *criteria_rater(constitution))
        plans = [(name, rows, "scripted", MODES) for name, rows in sets]
        if args.loopback:
            plans += [(name, rows, "loopback", MODES) for name, rows in sets]
        if args.local_limit:
            # distinct prompts (one run a mode, the model loaded once): the first round's first rows
            local = rounds(sets[0][1])[0][: args.local_limit]
            plans.append(("HHH", local, "local", MODES[:2] + MODES[4:]))
        with JudgeServer(constitution).start() as server:
            served, served_calls = f"openai-compatible:judge@{server.openai_url}", 0
            for index, (name, rows, kind, modes) in enumerate(plans):
                for number, (how, mode, source, aggregation) in enumerate(modes):
                    writer = served if kind == "loopback" else None
                    if kind == "local":
                        judge = label = "local:smollm2-135m-instruct"
                    elif kind == "loopback":
                        judge, label = served, "openai-compatible:judge@loopback"
                    else:
                        judge = "scripted:checklist-judge" if mode == "checklist" else "scripted:criteria-rater"
                        label = judge
                    judged = mode_config(judge, mode, constitution, source, aggregation, writer)
                    m = measure(rows, judged, constitution, work / f"{index}-{number}", args.seed)
                    print(table_row(name, label, how, m), flush=True)
                    served_calls += m["calls"] if kind == "loopback" else 0
            bill = server.billing.invoice if isinstance(server.billing, OpenAIBilling) else None
            if bill is not None and args.loopback:
                print(f"loopback server: {bill.calls} calls billed, {served_calls} recorded by the runs; "
                      f"{bill.input_tokens} uncached + {bill.cache_read_tokens} cached prompt tokens")  # fmt: skip
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
