"""Scripted models that follow planted principles, for the constitution lab's tests and benchmarks.

Five rules a response can be compared by, each with paraphrases. `make_pairs` writes pairs labelled by one rule;
`register_lab_models` makes:

- `scripted:lab-proposer`: asked why people preferred one response, it offers each rule under which the preferred
  response wins (so the planted rule always, the others by chance), each in a random paraphrase, as a bare JSON
  array in plain text (as a model without structured output might);
- `scripted:lab-judge`: applies whichever rule its prompt names (any paraphrase), the opposite rule when the
  principle is negated, and abstains (P = 0.5) under a principle it does not know;
- `scripted:lab-ignorer`: prefers the longer response whatever the principle says;
- `scripted:rubric-proposer`: asked for yes/no criteria that tell the preferred response from the other, it offers
  each of `CRITERIA` that does (the planted rule's always, others by chance), as `{"criteria": [...]}`;
- `scripted:checklist-judge`: answers each checklist item it knows (`CRITERIA`) truthfully about the response, with a
  reason before each verdict, and `n/a` for one it does not know; asked for an overall score too, it gives the share
  of known items met on 1..10;
- `scripted:checklist-coin`: answers every checklist item yes or no by a coin drawn from the item and the response
  (a judge at chance);
- `scripted:checklist-writer`: asked to write a prompt's checklist, it writes three items of `CRITERIA` (a number,
  essential; a closing question, optional; at most 15 words, important), each linked to a principle it was given.

For an outside checklist judge on a loopback server, `checklist_server_reply` answers as `checklist-judge` does, and
`verdict_alternatives(sure)` gives each verdict token the log-probabilities of a judge that is `sure` of it.

The comparison judges read a comparison prompt in either format (fenced, or the audit's unfenced one), whatever the
mode's instruction; asked for text, they answer with `charter.judge_prompt.write_verdict` (the option they prefer, (A)
where they abstain: in both orders that is P = 0.5).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from charter.checklist.author import read_writer_prompt
from charter.checklist.prompt import read_checklist_prompt
from charter.judge_prompt import read_comparison, read_question, write_verdict
from charter.lab.checks import NEGATED
from charter.lab.infer import OTHER, PREFERRED
from charter.providers.scripted import register_script
from charter.records.base import user

Score = Callable[[str], float]

RULES: dict[str, tuple[list[str], Score]] = {
    "concise": (
        [
            "Select the response that is shorter.",
            "Select the response that says it in fewer words.",
            "Select the response that is more concise.",
        ],
        lambda text: -len(text.split()),
    ),
    "number": (
        [
            "Select the response that gives a specific number.",
            "Select the response that includes a concrete figure.",
            "Select the response that quantifies its answer with a number.",
        ],
        lambda text: float(bool(re.search(r"\d", text))),
    ),
    "question": (
        [
            "Select the response that ends by asking the user a question.",
            "Select the response that closes with a follow-up question.",
            "Select the response that invites the user to say more with a final question.",
        ],
        lambda text: float(text.rstrip().endswith("?")),
    ),
    "polite": (
        [
            "Select the response that says please or thank you.",
            "Select the response that is more courteous, thanking the user.",
            "Select the response that uses polite words such as please.",
        ],
        lambda text: float(bool(re.search(r"\b(please|thank)", text, re.I))),
    ),
    "calm": (
        [
            "Select the response that avoids shouting in capital letters.",
            "Select the response with fewer all-caps words.",
            "Select the response that keeps a calm tone without capitals for emphasis.",
        ],
        lambda text: -sum(1 for w in text.split() if len(w) > 2 and w.isupper()),
    ),
}


def rule_of(text: str) -> str | None:
    """The rule a principle's text names (any paraphrase), or None."""
    for rule, (paraphrases, _) in RULES.items():
        if any(p.rstrip(".").lower() in text.lower() for p in paraphrases):
            return rule
    return None


def prefers_first(rule: str, first: str, second: str) -> float:
    """P(first preferred) under a rule: 0.95 for the response it scores higher, 0.5 on a tie."""
    score = RULES[rule][1]
    s1, s2 = score(first), score(second)
    return 0.5 if s1 == s2 else 0.95 if s1 > s2 else 0.05


def _response(rng: random.Random) -> str:
    words = [
        rng.choice(["the", "plan", "works", "if", "you", "start", "early", "and", "check", "it"])
        for _ in range(rng.randint(4, 30))
    ]
    if rng.random() < 0.5:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 99)))
    if rng.random() < 0.5:
        words.insert(0, rng.choice(["Please", "Thank you,"]))
    if rng.random() < 0.4:
        words.insert(rng.randrange(len(words)), rng.choice(["NEVER", "ALWAYS", "NOW"]))
    text = " ".join(words).capitalize()
    return text + (" - does that help?" if rng.random() < 0.5 else ".")


def make_pairs(n: int, rule: str | Sequence[str], seed: int = 0, noise: float = 0.0) -> list[dict]:
    """`n` pair-file rows (id, prompt, chosen, rejected) labelled by a rule (or, for several, their majority),
    each decisive under it; a share `noise` of them with the label flipped."""
    rules = [rule] if isinstance(rule, str) else list(rule)
    rng = random.Random(seed)
    rows: list[dict] = []
    while len(rows) < n:
        a, b = _response(rng), _response(rng)
        votes = [prefers_first(r, a, b) - 0.5 for r in rules]
        total = sum((v > 0) - (v < 0) for v in votes)
        if total == 0:
            continue
        chosen, rejected = (a, b) if total > 0 else (b, a)
        if rng.random() < noise:
            chosen, rejected = rejected, chosen
        rows.append(
            {
                "id": f"lab-{len(rows)}",
                "prompt": f"How should I plan task {len(rows)}?",
                "chosen": chosen,
                "rejected": rejected,
            }
        )
    return rows


def _options(p_a: float, options: Sequence[str]) -> dict[str, float]:
    return {o: {"A": p_a, "B": 1 - p_a}.get(o, 0.0) for o in options}


def _p_rule(text: str) -> float:
    """P(A) of the lab judge: the rule the question names (reversed where negated), 0.5 under no known rule."""
    shown = read_comparison(text)
    if shown is None:
        return 0.5
    question = read_question(text)
    rule = rule_of(question)
    if rule is None:
        return 0.5
    p = prefers_first(rule, *shown)
    return 1 - p if NEGATED.lower() in question.lower() else p


def _p_longer(text: str) -> float:
    """P(A) of the ignorer: the longer response, whatever the principle."""
    shown = read_comparison(text)
    if shown is None:
        return 0.5
    a, b = shown
    return 0.5 if len(a) == len(b) else 0.9 if len(a) > len(b) else 0.1


def _judge_script(p_a: Callable[[str], float]) -> tuple[Callable, Callable]:
    """(generate, choice) of a judge whose P(A) on a prompt is `p_a(text)`."""

    def generate(messages, params):  # noqa: ANN001, ANN202
        return write_verdict("A" if p_a(messages[-1].content) >= 0.5 else "B")

    def choice(messages, options):  # noqa: ANN001, ANN202
        return _options(p_a(messages[-1].content), options)

    return generate, choice


def _proposer(messages, params):  # noqa: ANN001, ANN202
    text = messages[-1].content
    match = re.search(rf"{PREFERRED}\s*(.*?)\s*{OTHER}\s*(.*?)\s*(?:\n\n|$)", text, re.S)
    if match is None:
        return "I cannot tell."
    preferred, other = (m.strip().strip("<>").strip() for m in match.groups())
    rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
    found = [rng.choice(RULES[r][0]) for r in RULES if prefers_first(r, preferred, other) > 0.5]
    return json.dumps(found)


#: Yes/no criteria about one response, by rule: (requirement, kind, whether it is true of a text). A pitfall's "yes"
#: counts against the response.
CRITERIA: dict[str, tuple[str, str, Callable[[str], bool]]] = {
    "number": ("The response gives a specific number.", "principle", lambda t: bool(re.search(r"\d", t))),
    "question": ("The response ends by asking the user a question.", "principle", lambda t: t.rstrip().endswith("?")),
    "polite": (
        "The response says please or thank you.",
        "principle",
        lambda t: bool(re.search(r"\b(please|thank)", t, re.I)),
    ),
    "calm": (
        "The response shouts with words in all capital letters.",
        "pitfall",
        lambda t: any(len(w) > 2 and w.isupper() for w in t.split()),
    ),
    "concise": ("The response is at most 15 words long.", "hard_rule", lambda t: len(t.split()) <= 15),
}


def criterion_of(requirement: str) -> str | None:
    """The rule a criterion's requirement states (`CRITERIA`), or None."""
    for rule, (text, _, _) in CRITERIA.items():
        if requirement.strip().rstrip(".").lower() == text.rstrip(".").lower():
            return rule
    return None


def _rubric_proposer(messages, params):  # noqa: ANN001, ANN202
    text = messages[-1].content
    match = re.search(rf"{PREFERRED}\s*(.*?)\s*{OTHER}\s*(.*?)\s*(?:\n\n|$)", text, re.S)
    if match is None:
        return "I cannot tell."
    preferred, other = (m.strip() for m in match.groups())
    found = []
    for requirement, kind, holds in CRITERIA.values():
        met, other_met = holds(preferred), holds(other)
        if (met and not other_met and kind != "pitfall") or (other_met and not met and kind == "pitfall"):
            found.append({"requirement": requirement, "kind": kind})
    return json.dumps({"criteria": found})


def _answered(messages: list[Any], answer: Callable[[str, str, str], dict[str, Any]]) -> dict[str, Any] | None:
    """A checklist prompt's items, each answered by `answer(item id, requirement, response)`; None for a prompt that
    is not a checklist prompt."""
    shown = read_checklist_prompt(messages[-1].content)
    if shown is None:
        return None
    items, response = shown
    return {item_id: answer(item_id, requirement, response) for item_id, requirement in items}


def _by_rule(item_id: str, requirement: str, response: str) -> dict[str, Any]:
    rule = criterion_of(requirement)
    if rule is None:
        return {"reason": "The criterion is not one I can check.", "verdict": "n/a"}
    holds = CRITERIA[rule][2](response)
    return {"reason": f"It {'does' if holds else 'does not'} hold.", "verdict": "yes" if holds else "no"}


def _by_coin(item_id: str, requirement: str, response: str) -> dict[str, Any]:
    coin = hashlib.sha256(f"{item_id}|{response}".encode()).digest()[0] % 2
    return {"reason": "A coin.", "verdict": "yes" if coin else "no"}


def _checklist_judge(messages, params):  # noqa: ANN001, ANN202
    answers = _answered(messages, _by_rule)
    if answers is None:
        return "I cannot tell."
    if '"overall"' in messages[-1].content:  # the implicit aggregation: the share met, on 1..10
        known = [a["verdict"] for a in answers.values() if a["verdict"] != "n/a"]
        answers["overall"] = 1 + round(9 * known.count("yes") / len(known)) if known else 5
    return json.dumps(answers)


def checklist_server_reply(body: dict[str, Any]) -> str:
    """`checklist-judge` as an outside server answers (`LoopbackServer(reply=checklist_server_reply)`): the last
    message of an OpenAI or Anthropic request body read as a checklist prompt, each `CRITERIA` item answered
    truthfully with a reason before its verdict."""
    content = body["messages"][-1]["content"]
    if isinstance(content, list):  # content blocks
        content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return _checklist_judge([user(content)], None)


def verdict_alternatives(sure: float) -> Callable[[dict[str, Any], str, str], dict[str, float]]:
    """A loopback server's token alternatives (`LoopbackServer(alternatives=...)`) for a checklist judge that is
    `sure` of each verdict it writes: at a verdict's token (`yes` or `no` after `"verdict": "`), the verdict written
    at log(sure) and the other at log(1 - sure); every other token certain."""

    def alternatives(body: dict[str, Any], before: str, token: str) -> dict[str, float]:
        if before.endswith('"verdict": "') and token in ("yes", "no"):
            other = "no" if token == "yes" else "yes"
            return {token: math.log(sure), other: math.log(1 - sure)}
        return {}

    return alternatives


def _checklist_writer(messages, params):  # noqa: ANN001, ANN202
    ids = read_writer_prompt(messages[-1].content)
    if not ids:
        return "I cannot tell."
    rules = [("number", "important"), ("question", "optional"), ("concise", "essential")]
    items = [
        {
            "id": rule,
            "requirement": CRITERIA[rule][0],
            "principle_id": ids[index % len(ids)],
            "category": category,
            "reference": None,
        }
        for index, (rule, category) in enumerate(rules)
    ]
    return json.dumps({"items": items})


def _checklist_coin(messages, params):  # noqa: ANN001, ANN202
    answers = _answered(messages, _by_coin)
    return "I cannot tell." if answers is None else json.dumps(answers)


def register_lab_models() -> None:
    """Register `scripted:lab-proposer`, `scripted:lab-judge`, `scripted:lab-ignorer`, `scripted:rubric-proposer`,
    `scripted:checklist-judge`, `scripted:checklist-coin` and `scripted:checklist-writer` (idempotent)."""
    register_script("lab-proposer", _proposer)
    register_script("lab-judge", *_judge_script(_p_rule))
    register_script("lab-ignorer", *_judge_script(_p_longer))
    register_script("rubric-proposer", _rubric_proposer)
    register_script("checklist-judge", _checklist_judge)
    register_script("checklist-coin", _checklist_coin)
    register_script("checklist-writer", _checklist_writer)


__all__ = [
    "CRITERIA",
    "RULES",
    "checklist_server_reply",
    "criterion_of",
    "make_pairs",
    "prefers_first",
    "register_lab_models",
    "rule_of",
    "verdict_alternatives",
]
