"""A fault-injecting OpenAI-compatible server: the loopback server, misbehaving at chosen per-request rates.

    faults = Faults(rate_limit=0.05, server_error=0.05, hang=0.01, drop=0.02, malformed=0.02,
                    empty_choices=0.03, no_option_logprobs=0.05, poison="POISON", seed=1)
    with FaultServer(faults) as server:      # point openai-compatible:model@{server.openai_url} at it
        ...
    server.answered, server.log              # replies a client could read and bill, and every request

Faults: 429 with Retry-After, 500/502/503, a hang past the client's timeout, a dropped connection, a JSON
body cut in half, `choices: []`, next-token logprobs naming no option, and 400 for any request holding the
`poison` string. Every request is logged with its time, its fault and a digest of its body (a retry of a
request has the same digest), so tests can check that Retry-After was honoured.

Judge requests (a comparison prompt, fenced or not, whatever the mode's instruction) are answered consistently:
the longer response is preferred in either order, as the option tokens' probabilities or as text (written as the
mode's entry writes a reply, `charter.judge.modes.scripted_reply`), so judgments carry a real preference.
`python -m charter.testing.faults --help` serves it from another process (benchmarks), writing the log as JSON Lines.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from charter.judge.judgment import LETTERS
from charter.judge.modes import reply_asked, scripted_choice, scripted_reply
from charter.judge_prompt import read_comparison
from charter.testing.loopback import Behaviour, LoopbackServer, asks_next_token, drop, echo_reply, status


@dataclass(frozen=True)
class Faults:
    """Per-request fault rates (each a probability; together at most 1) and what a fault looks like."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    hang: float = 0.0
    drop: float = 0.0
    malformed: float = 0.0
    empty_choices: float = 0.0
    no_option_logprobs: float = 0.0
    poison: str | None = None
    """Any request holding this text gets 400, every time (a prompt the provider rejects)."""
    retry_after_s: float = 0.2
    """The Retry-After a 429 asks for."""
    hang_s: float = 5.0
    """How long a hang holds the request (longer than the client's timeout)."""
    seed: int = 0

    RATES = ("rate_limit", "server_error", "hang", "drop", "malformed", "empty_choices", "no_option_logprobs")

    @property
    def total(self) -> float:
        return sum(getattr(self, name) for name in self.RATES)

    def only(self, name: str, rate: float) -> Faults:
        """These settings with every rate 0 but `name`."""
        return Faults(**{**{k: v for k, v in asdict(self).items() if k not in self.RATES}, name: rate})


@dataclass
class LogEntry:
    """One request as the fault server handled it."""

    at: float
    kind: str
    status: int
    digest: str
    answered: bool = False
    """A reply the client could read whole, with usage (what a provider bills and a client can count)."""
    text: str | None = None
    """The text of a normal completion."""
    tokens: int = 0
    """Prompt plus completion tokens the reply reported (what the provider bills), when answered."""


def digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


class FaultServer(LoopbackServer):
    """The loopback server with faults drawn per request (seeded)."""

    def __init__(self, faults: Faults, delay_s: float = 0.0, log_file: TextIO | None = None) -> None:
        super().__init__(delay_s=delay_s, reply=self.verdict_or_echo, record=False)
        self.faults, self.log_file = faults, log_file
        self.rng = random.Random(faults.seed)
        self.log: list[LogEntry] = []
        self._waiting: dict[int, LogEntry] = {}
        self._lock = threading.Lock()

    @property
    def answered(self) -> int:
        return sum(1 for entry in self.log if entry.answered)

    def choose(self, path: str, body: Any) -> Behaviour:
        """Draw this request's fault and log its arrival (a hung request is in the log before it answers)."""
        behaviour = self._draw(body)
        entry = LogEntry(at=time.time(), kind=behaviour.kind, status=behaviour.status, digest=digest(body))
        with self._lock:
            self.log.append(entry)
            self._waiting[id(behaviour)] = entry
        return behaviour

    def _draw(self, body: Any) -> Behaviour:
        if self._plan:
            return self._plan.popleft()
        if isinstance(body, dict) and self.faults.poison and self.faults.poison in json.dumps(body):
            return Behaviour(status=400, delay_s=0.0, kind="poison")
        draw, edge = self.rng.random(), 0.0
        for name in Faults.RATES:
            edge += getattr(self.faults, name)
            if draw < edge:
                return self._fault(name, body)
        return Behaviour()

    def _fault(self, name: str, body: Any) -> Behaviour:
        f = self.faults
        if name == "rate_limit":
            return Behaviour(status=429, delay_s=0.0, headers=(("retry-after", f"{f.retry_after_s:g}"),), kind=name)
        if name == "server_error":
            return Behaviour(status=self.rng.choice((500, 502, 503)), delay_s=0.0, kind=name)
        if name == "hang":
            return Behaviour(delay_s=f.hang_s, kind=name)
        if name == "drop":
            return Behaviour(drop=True, delay_s=0.0, kind=name)
        if name == "malformed":
            return Behaviour(truncate=True, kind=name)
        if name == "empty_choices":
            return Behaviour(empty_choices=True, kind=name)
        is_logprobs = isinstance(body, dict) and asks_next_token(body)
        return Behaviour(foreign_logprobs=True, kind=name) if is_logprobs else Behaviour()

    def billed(self, body: dict[str, Any]) -> int:
        """The usage a reply to `body` reports (as the loopback server counts it)."""
        completion = 1 if asks_next_token(body) else max(1, len(self.reply_text(body).split()))
        return max(1, len(json.dumps(body.get("messages", [])).split())) + completion

    def logprobs_for(self, body: dict[str, Any]) -> dict[str, float]:
        """Prefer the longer of the two responses, whichever order they are shown in: P(first preferred) 0.9 or 0.1,
        spread over the options of the reply the prompt asks for as the table of modes says (`scripted_choice`)."""
        prompt, p_first = _last_text(body), 0.9 if _longer_first(body) is not False else 0.1
        reply = reply_asked(prompt)
        probs = scripted_choice(prompt, list(reply.options if reply is not None else LETTERS), p_first)
        return {token: math.log(p) for token, p in probs.items() if p > 0}

    def verdict_or_echo(self, body: dict[str, Any]) -> str:
        """A comparison prompt's text answer: the longer response's letter; any other prompt's: its echo."""
        longer_first = _longer_first(body)
        return echo_reply(body) if longer_first is None else scripted_reply(_last_text(body), float(longer_first))

    def sent(self, behaviour: Behaviour, body: Any, code: int, written: bool) -> None:
        usable = written and code == 200 and not behaviour.truncate
        with self._lock:
            entry = self._waiting.pop(id(behaviour))
            entry.status, entry.answered = code, usable
            if usable and behaviour.kind == "ok" and isinstance(body, dict) and not asks_next_token(body):
                entry.text = self.reply_text(body)
            if usable and isinstance(body, dict):
                entry.tokens = self.billed(body)
            if self.log_file is not None:
                self.log_file.write(json.dumps(asdict(entry)) + "\n")
                self.log_file.flush()

    def close_log(self) -> None:
        """Write the requests still waiting for their answer (hung ones) to the log file."""
        with self._lock:
            for entry in self._waiting.values():
                if self.log_file is not None:
                    self.log_file.write(json.dumps(asdict(entry)) + "\n")
            self._waiting.clear()
            if self.log_file is not None:
                self.log_file.flush()


def _last_text(body: dict[str, Any]) -> str:
    return (body.get("messages") or [{}])[-1].get("content") or ""


def _longer_first(body: dict[str, Any]) -> bool | None:
    """Whether the response shown as (A) is at least as long as (B); None for a prompt that is no comparison."""
    shown = read_comparison(_last_text(body))
    return None if shown is None else len(shown[0]) >= len(shown[1])


def read_log(path: str | Path) -> list[LogEntry]:
    """The log a server in another process wrote."""
    return [LogEntry(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]


async def serve(faults: Faults, host: str, port: int, delay_s: float, log_path: Path | None) -> None:
    log_file = log_path.open("a", encoding="utf-8") if log_path else None
    server = FaultServer(faults, delay_s=delay_s, log_file=log_file)
    listening = await server.listen(host, port)
    print(server.port, flush=True)
    try:
        async with listening:
            await listening.serve_forever()
    finally:
        server.close_log()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fault-injecting OpenAI-compatible loopback server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each normal reply")
    parser.add_argument("--log", type=Path, help="append every request to this JSON Lines file")
    for f in fields(Faults):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=str if f.name == "poison" else int if f.name == "seed" else float,
            default=f.default,
        )
    args = vars(parser.parse_args(argv))
    faults = Faults(**{f.name: args[f.name] for f in fields(Faults)})
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # log hung requests too
    try:
        asyncio.run(serve(faults, args["host"], args["port"], args["delay"], args["log"]))
    except KeyboardInterrupt:
        sys.exit(0)


__all__ = ["FaultServer", "Faults", "LogEntry", "drop", "read_log", "status"]

if __name__ == "__main__":
    main()
