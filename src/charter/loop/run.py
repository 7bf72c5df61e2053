"""`charter iterate`: iterated constitutional rounds with a collapse monitor, resumable step by step.

Round r of an arm (a data strategy) runs these steps, each recorded in LOOP_DIR/loop.sqlite when done:

1. `run`: a charter run (critique, revise, judge; a synth stage if configured) with policy_r;
2. `data`: the DPO data: this round's preferences (`replace`) or every round's so far (`accumulate`), with the
   human share mixed in through `charter.mix`;
3. `dpo`: DPO from policy_r on that data gives policy_{r+1};
4. `monitor`: policy_{r+1} answers the fixed probe set; its diversity is measured (policy_0's once, up front);
5. `eval`: policy_{r+1} against the base and against policy_r (both orders, Wilson interval);
6. `gold_next` (with a `gold_monitor`): policy_{r+1} answers the held-out prompts, scored by the round's judge (P(better
   than the base policy's answer)) and by the gold evaluator (policy_0's once, up front).

Round 0 is the same for every arm (the same policy and data), so it runs once, in LOOP_DIR/round-0; the arms
part from round 1, in LOOP_DIR/STRATEGY/round-R. A killed loop resumes at the first step not recorded (the run
and DPO resume inside themselves too). Every step but `data` runs in a fresh process (`isolate_steps`), so that
what a step loads leaves with it and a round costs the memory the first one does. The loop stops early on a
collapse flag or a win-rate plateau if told to.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from charter.api_args import ConfigArg, public
from charter.errors import ConfigError
from charter.loop.config import LoopConfig, Strategy, load_loop_config
from charter.loop.metrics import collapse_metrics, collapse_stop, round_verdict
from charter.monitor.gold import GoldScore, MonitorSummary, ScoredAnswers, held_out_rows, refuse_overlap, rule_change
from charter.yamlio import config_from

SHARED = "shared"


class LoopStore:
    """LOOP_DIR/loop.sqlite: which step of which round of which arm is done, with its result."""

    def __init__(self, loop_dir: Path) -> None:
        loop_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(loop_dir / "loop.sqlite")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS steps (arm TEXT, round INTEGER, step TEXT, result TEXT, "
            "finished_at REAL, PRIMARY KEY (arm, round, step))"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.commit()

    def get(self, arm: str, round_index: int, step: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT result FROM steps WHERE arm = ? AND round = ? AND step = ?", (arm, round_index, step)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, arm: str, round_index: int, step: str, result: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?)",
                (arm, round_index, step, json.dumps(result, default=str), time.time()),
            )

    def steps(self) -> list[tuple[str, int, str, dict[str, Any]]]:
        return [
            (a, r, s, json.loads(v))
            for a, r, s, v in self.db.execute("SELECT arm, round, step, result FROM steps ORDER BY finished_at")
        ]

    def meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def close(self) -> None:
        self.db.close()


@dataclass
class LoopResult:
    """What a loop did: per arm, one row per policy (0 = the base) with its metrics, flags and win rates."""

    loop_dir: Path
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)
    real: dict[str, Any] | None = None
    """The collapse metrics of the real sample (the monitor's second reference); None without real data."""
    gold: dict[str, MonitorSummary] = field(default_factory=dict)
    """Per arm, the gold monitor's record (`gold_monitor`): its steps are the policies (0: the base)."""
    ranking: dict[str, Any] | None = None
    """The arena of the base and every round's policy (`eval.arena`): models with scores, intervals and ranks."""
    report: Path | None = None


class Loop:
    """One loop directory."""

    def __init__(self, config: LoopConfig, log: Callable[[str], None] | None = None) -> None:
        from charter.pipeline.config import load_run_config

        self.config = config
        self.loop_dir = config.loop_dir()
        self.base_run = load_run_config(config.run, config.overrides)
        self.base_policy = self.base_run.policy.model
        self.log = log or logging.getLogger("charter.loop").info

    def __getstate__(self) -> dict[str, Any]:  # a step in its own process logs through charter's logger
        return {**self.__dict__, "log": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, log=logging.getLogger("charter.loop").info)

    def check(self) -> None:
        """Before round 0: the policy must be one DPO can train."""
        if not self.base_policy.startswith("local:"):
            raise ConfigError(
                f"{self.config.run}: policy.model {self.base_policy!r}: the loop trains the policy "
                "with DPO, so it must be a local model (local:NAME or local:FOLDER)"
            )
        if self.config.eval is not None and self.config.eval.judge is None and self.base_run.judge.models is not None:
            raise ConfigError(
                f"{self.config.run}: the run's judge is a panel; set the loop's eval.judge to the model "
                "that judges the win rates"
            )

    # -- where things are ------------------------------------------------------------------------------
    def arm(self, strategy: str, round_index: int) -> str:
        return SHARED if round_index == 0 else strategy

    def round_dir(self, strategy: str, round_index: int) -> Path:
        if round_index == 0:
            return self.loop_dir / "round-0"
        return self.loop_dir / strategy / f"round-{round_index}"

    def policy(self, strategy: str, round_index: int) -> str:
        """policy_r as a model string: the base, or the DPO output of round r - 1 of this arm."""
        if round_index == 0:
            return self.base_policy
        return f"local:{self.round_dir(strategy, round_index - 1) / 'dpo'}"

    @staticmethod
    def trainable(policy: str) -> str:
        return policy.removeprefix("local:")

    # -- the steps ----------------------------------------------------------------------------------------
    def step_run(self, strategy: str, r: int) -> dict[str, Any]:
        from charter.pipeline.api import run_sync

        base = self.base_run
        policy = self.policy(strategy, r)
        updates: dict[str, Any] = {
            "output_dir": str(self.round_dir(strategy, r)),
            "name": f"{self.config.name}-{strategy}-{r}",
            "seed": self.config.seed + r,
            "policy": base.policy.model_copy(update={"model": policy}),
            "stages": [s for s in base.stages if s in ("synth", "critique", "judge")],
        }
        if self.config.critic == "policy":
            updates["critic"] = base.critic_role.model_copy(update={"model": policy})
        else:  # the run config's critic, which is its base policy when it names none
            updates["critic"] = base.critic_role
        if self.config.judge == "policy":
            updates["judge"] = base.judge.model_copy(update={"model": policy})
        if base.synth is not None and self.config.synth_each_round:
            updates["synth"] = base.synth.model_copy(update={"seed": base.synth.seed + r})
        config = base.model_copy(update=updates)
        result = run_sync(config, config_source=self.config.run)
        return {
            "run_dir": str(result.run_dir),
            "preferences": str(result.preferences),
            "counts": result.counts,
            "policy": policy,
        }

    def step_data(self, strategy: Strategy, r: int, store: LoopStore) -> dict[str, Any]:
        from charter.loop.data import data_diversity, mixed_rows, real_share, shares
        from charter.runs.files import RunFiles
        from charter.tables import read_parquet

        sources = [r] if strategy == "replace" else list(range(r + 1))
        rows: list[dict[str, Any]] = []
        for k in sources:
            done = store.get(self.arm(strategy, k), k, "run")
            assert done is not None
            path = RunFiles(done["run_dir"]).dataset_path("preferences")
            rows += read_parquet(path) if path.exists() else []
        out = self.round_dir(strategy, r) / "dpo_data.jsonl"
        if not rows:
            raise ConfigError(f"round {r} ({strategy}): no preference rows to train on")
        rows = mixed_rows(self.config, rows, r, f"round {r} ({strategy})")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows), encoding="utf-8"
        )
        return {
            "path": str(out),
            **shares(rows, real_share(self.config, r)),
            "from_rounds": sources,
            "diversity": data_diversity(rows, self.config.seed + r),
        }

    def step_real(self, n: int) -> dict[str, Any]:
        """A seeded sample of `n` (the probe count) of the real data's chosen responses, and its diversity: the
        collapse monitor's second reference."""
        from charter.loop.data import real_texts

        texts = real_texts(self.config, n)
        return {"texts": texts, "metrics": collapse_metrics(texts)}

    def step_dpo(self, strategy: str, r: int, data: dict[str, Any]) -> dict[str, Any]:
        from charter.dpo.train import train_dpo

        out = self.round_dir(strategy, r) / "dpo"
        config = self.config.dpo.model_copy(
            update={
                "model": self.trainable(self.policy(strategy, r)),
                "dataset": data["path"],
                "output_dir": out,
                "seed": self.config.dpo.seed + r,
            }
        )
        metrics = train_dpo(config)
        return {"output_dir": str(out), "training": metrics.get("training"), "after": metrics.get("after")}

    def step_monitor(self, policy: str) -> dict[str, Any]:
        import asyncio

        from charter.prompts import load_prompts
        from charter.providers import SamplingParams, get_model

        monitor = self.config.monitor
        probes = load_prompts(monitor.probes).rows
        params = SamplingParams(temperature=monitor.temperature, max_tokens=monitor.max_tokens, seed=self.config.seed)

        async def answer() -> list[str]:
            model = get_model(policy, role="monitor")
            try:
                done = await model.generate([p.messages for p in probes], params)
                return [c.text.strip() for c in done]
            finally:
                await model.aclose()

        texts = asyncio.run(answer())
        return {"policy": policy, "probes": len(texts), "metrics": collapse_metrics(texts), "texts": texts}

    def step_eval(self, strategy: str, r: int) -> dict[str, Any]:
        from charter.evals.winrate import winrate

        candidate = self.policy(strategy, r + 1)
        e = self.config.eval
        judge = e.judge or self.base_run.judge.model
        key = e.judge_api_key_env or (self.base_run.judge.api_key_env if e.judge is None else None)
        out = self.round_dir(strategy, r) / "eval"
        common = {
            "candidate": candidate,
            "prompts": e.prompts or str(_bundled()),
            "judge": judge,
            "judge_api_key_env": key,
            "constitution": self.base_run.constitution,
            "limit": e.limit,
            "max_tokens": e.max_tokens,
            "seed": self.config.seed,
            "reward_model": e.reward_model,
        }
        against_base = winrate(base=self.base_policy, out=out / "vs_base.json", **common)
        previous = self.policy(strategy, r)
        against_previous = (
            against_base
            if previous == self.base_policy
            else winrate(base=previous, out=out / "vs_previous.json", **common)
        )
        keep = ("win_rate", "ci95", "n", "wins", "ties", "losses", "failures", "reward_model")
        return {
            "vs_base": {k: against_base.get(k) for k in keep},
            "vs_previous": {k: against_previous.get(k) for k in keep},
        }

    def step_arena(self, result: LoopResult) -> dict[str, Any]:
        """The base and every policy the loop trained, on one Bradley–Terry scale (the base scores 0)."""
        from charter.evals.arena import arena

        e = self.config.eval
        policies = [self.base_policy] + [
            row["model"] for rows in result.rounds.values() for row in rows if row["policy"] > 0
        ]
        found = arena(
            models=list(dict.fromkeys(policies)),
            prompts=e.prompts or str(_bundled()),
            judge=e.judge or self.base_run.judge.model,
            judge_api_key_env=e.judge_api_key_env or (self.base_run.judge.api_key_env if e.judge is None else None),
            constitution=self.base_run.constitution,
            limit=e.limit,
            max_tokens=e.max_tokens,
            seed=self.config.seed,
            out=self.loop_dir / "arena",
        )
        keep = ("model", "score", "ci_low", "ci_high", "rank", "rank_low", "rank_high")
        return {
            "models": [{k: m[k] for k in keep} for m in found["models"]],
            "reference": found["reference"],
            "design": found["design"]["kind"],
            "failures": found["failures"],
        }

    def step_gold(
        self, strategy: str, index: int, anchor: list[str] | None, spent: dict[str, float] | None = None
    ) -> dict[str, Any]:
        """policy_`index`'s greedy answers to the held-out prompts, each scored by the round's judge (P(better than
        `anchor`, the base policy's answer to it; the answer itself for the base)) and by the gold evaluator, under
        the monitor's budget less what the arm's earlier gold steps paid (`spent`)."""
        import asyncio

        from charter.providers import SamplingParams, get_model
        from charter.records import Message
        from charter.reward.function import reward_function

        section = self.config.gold_monitor
        assert section is not None
        monitor = self._gold_monitor(strategy, index)
        monitor.carry(spent or {})
        started = time.perf_counter()
        params = SamplingParams(temperature=0.0, max_tokens=section.max_new_tokens, seed=self.config.seed)

        async def answer() -> list[str]:
            model = get_model(self.policy(strategy, index), role="monitor")
            try:
                done = await model.generate([[Message(**m) for m in p] for p in monitor.prompts], params)
                return [c.text.strip() for c in done]
            finally:
                await model.aclose()

        answers = asyncio.run(answer())
        base = anchor if anchor is not None else answers
        run = self.base_run
        judge = run.judge  # the round's judge: round r judged with policy_r under `judge: policy`
        if self.config.judge == "policy":
            judge = judge.model_copy(update={"model": self.policy(strategy, max(index - 1, 0))})
        reward = reward_function(
            judge, run.constitution, "reference", store=self.round_dir(strategy, max(index - 1, 0)) / "gold",
            cache=run.cache, prices=run.prices, seed=self.config.seed, max_failures=len(answers) + 1,
        )  # fmt: skip
        monitor.reward = lambda prompts, completions, **_: reward.unstored(prompts, completions, reference=base)
        scored, cost = monitor.score(answers, index)
        return {
            "policy": self.policy(strategy, index),
            "answers": answers,
            "rewards": scored.rewards,
            "gold": [[g.score, g.failure, *([_members(g)] if g.members else [])] for g in scored.gold],
            "cost": {**cost, "seconds": time.perf_counter() - started},
        }

    def _gold_monitor(self, strategy: str, index: int) -> Any:
        """A `GoldMonitor` of the `gold_monitor` section (its reward set where it scores)."""
        from charter.monitor.callback import GoldMonitor

        section = self.config.gold_monitor
        assert section is not None and section.prompts is not None
        run = self.base_run
        monitor = GoldMonitor(section, _scored_in_steps, rows=held_out_rows(section.prompts, section.limit),
                              cache=run.cache, prices=run.prices)  # fmt: skip
        monitor.watching = "the loop"
        return monitor

    def check_gold(self) -> None:
        """Held-out prompts that are the runs' prompts are refused, the overlap counted; a panel judge is refused."""
        section = self.config.gold_monitor
        if section is None or section.prompts is None:
            return
        from charter.prompts import load_prompts

        if self.config.judge == "fixed" and self.base_run.judge.models is not None:
            raise ConfigError(
                f"{self.config.run}: gold_monitor: the run's judge is a panel; the monitor needs one judge"
            )
        held = [r["prompt"] for r in held_out_rows(section.prompts, section.limit)]
        trained = [
            [{"role": m.role, "content": m.content} for m in p.messages]
            for p in load_prompts(self.base_run.prompts).rows
        ]
        refuse_overlap(held, trained, f"gold_monitor.prompts ({section.prompts})")

    def _gold_round(self, monitor: Any, strategy: str, done: dict[str, Any], spent: dict[str, float]) -> dict:
        """Record one policy's stored gold step in the arm's monitor: its step record (the flag, the gap), and the
        monitor stopped where what the arm's gold steps have paid so far (`spent`, this one's included) reaches its
        budget."""
        gold = [GoldScore(g[0], g[1], _panel(g[2]) if len(g) > 2 else None) for g in done["gold"]]
        monitor.carry(spent)
        index = len(monitor.scored)
        record = monitor.add(
            ScoredAnswers(index, done["answers"], done["rewards"], gold), done["cost"], self.loop_dir / strategy
        )
        best = monitor.best_step
        monitor.best_checkpoint = self.trainable(self.policy(strategy, best)) if best else None
        return record

    # -- the loop --------------------------------------------------------------------------------------------
    def _step(self, store: LoopStore, arm: str, r: int, step: str, work: Callable[[], dict[str, Any]]) -> dict:
        done = store.get(arm, r, step)
        if done is not None:
            return done
        self.log(f"{arm} round {r}: {step}")
        if self.config.isolate_steps and step != "data":  # `data` only reads and writes rows
            from charter.loop.child import run_in_child

            result = run_in_child(work, f"{arm} round {r}: {step}")
        else:
            result = work()
        store.put(arm, r, step, result)
        return result

    def run(self) -> LoopResult:
        self.check()
        self.check_gold()
        store = LoopStore(self.loop_dir)
        try:
            store.set_meta("config", self.config.model_dump(mode="json"))
            base = self._step(store, SHARED, 0, "monitor", partial(self.step_monitor, self.base_policy))
            real = None
            if self.config.human is not None:
                real = self._step(store, SHARED, 0, "real", partial(self.step_real, base["probes"]))
            result = LoopResult(self.loop_dir, real=None if real is None else real["metrics"])
            gold_base = None
            if self.config.gold_monitor is not None:
                first = self.config.strategies[0]
                gold_base = self._step(store, SHARED, 0, "gold", partial(self.step_gold, first, 0, None))
            for strategy in self.config.strategies:
                rows = [{"policy": 0, "model": self.base_policy, "metrics": base["metrics"], "flags": []}]
                plateau = 0
                monitor = None
                spent: dict[str, float] = {}
                if gold_base is not None:
                    monitor = self._gold_monitor(strategy, 0)
                    spent = _paid(spent, gold_base["cost"])
                    self._gold_round(monitor, strategy, gold_base, spent)
                    result.gold[strategy] = monitor.summary()
                for r in range(self.config.rounds):
                    arm = self.arm(strategy, r)
                    self._step(store, arm, r, "run", partial(self.step_run, strategy, r))
                    data = self._step(store, arm, r, "data", partial(self.step_data, strategy, r, store))
                    self._step(store, arm, r, "dpo", partial(self.step_dpo, strategy, r, data))
                    next_policy = self.policy(strategy, r + 1)
                    seen = self._step(store, arm, r, "monitor_next", partial(self.step_monitor, next_policy))
                    scores = self._step(store, arm, r, "eval", partial(self.step_eval, strategy, r))
                    verdict = round_verdict(seen, base, real, self.config.monitor)
                    raised = verdict["flags"]
                    rows.append(
                        {
                            "policy": r + 1,
                            "model": self.policy(strategy, r + 1),
                            "metrics": seen["metrics"],
                            "flags": raised,
                            "collapse": verdict["against"],
                            "data": data,
                            **scores,
                        }
                    )
                    result.rounds[strategy] = rows
                    stop = collapse_stop(raised, self.config.monitor) if self.config.stop.on_collapse else None
                    plateau = plateau + 1 if self._plateaued(scores) else 0
                    if stop is None and self.config.stop.plateau is not None and plateau >= self.config.stop.patience:
                        stop = (
                            f"win rate against the previous round below {0.5 + self.config.stop.plateau:.2f} "
                            f"for {plateau} round(s)"
                        )
                    if monitor is not None and gold_base is not None and not monitor.stopped:
                        anchor = gold_base["answers"]
                        work = partial(self.step_gold, strategy, r + 1, anchor, spent)
                        done = self._step(store, arm, r, "gold_next", work)
                        spent = _paid(spent, done["cost"])
                        gap = self._gold_round(monitor, strategy, done, spent)
                        result.gold[strategy] = monitor.summary()
                        rows[-1]["gold"] = {k: gap[k] for k in ("reward", "gold", "gap", "flagged")}
                        if gap["flagged"]:
                            rule = _gold_flag(gap)
                            self.log(f"{strategy} round {r}: gold monitor: {rule}")
                            if self.config.gold_monitor and self.config.gold_monitor.on_gap == "stop" and stop is None:
                                monitor.stopped = f"the stop rule stopped the loop after round {r}"
                                result.gold[strategy] = monitor.summary()
                                stop = f"the gold monitor's stop rule: {rule}"
                    if stop is not None:
                        result.stopped[strategy] = f"after round {r}: {stop}"
                    self._record(store, result)  # `charter iterate LOOP.yaml --status` reads it while the loop runs
                    if stop is not None:
                        break
                result.rounds[strategy] = rows
            if self.config.eval.arena and any(len(rows) > 1 for rows in result.rounds.values()):
                result.ranking = self._step(
                    store, SHARED, self.config.rounds, "arena", partial(self.step_arena, result)
                )
            self._record(store, result)
        finally:
            store.close()
        from charter.loop.report import write_report

        result.report = write_report(self.loop_dir, result)
        return result

    @staticmethod
    def _record(store: LoopStore, result: LoopResult) -> None:
        store.set_meta(
            "result",
            {
                "rounds": result.rounds,
                "stopped": result.stopped,
                "ranking": result.ranking,
                "real": result.real,
                "gold": result.gold,
            },  # fmt: skip
        )

    def _plateaued(self, scores: dict[str, Any]) -> bool:
        win = (scores.get("vs_previous") or {}).get("win_rate")
        return self.config.stop.plateau is not None and win is not None and win < 0.5 + self.config.stop.plateau


def _scored_in_steps(*args: Any, **kwargs: Any) -> list[float | None]:
    """The loop's monitors record what its `gold` steps scored; the reward is set in the step that scores."""
    raise AssertionError("the loop scores held-out answers in its gold steps")


def _paid(spent: dict[str, float], cost: dict[str, float]) -> dict[str, float]:
    """What an arm's gold steps have paid, with one more step's cost (a step stored before tokens were kept adds
    its cost alone)."""
    return {k: spent.get(k, 0.0) + float(cost.get(k, 0.0)) for k in ("cost_usd", "tokens")}


def _members(gold: GoldScore) -> dict[str, list[Any]]:
    """A gold panel's members' scores of one answer, as the loop store keeps them."""
    return {name: [g.score, g.failure] for name, g in (gold.members or {}).items()}


def _panel(stored: dict[str, list[Any]]) -> dict[str, GoldScore]:
    return {name: GoldScore(score, failure) for name, (score, failure) in stored.items()}


def _gold_flag(record: Any) -> str:
    change, what = rule_change(record)
    return (
        f"{what} fell by {-(change['change'] or 0):.3f} [{change['low']:.3f}, {change['high']:.3f}] since policy "
        f"{record['best_step']} while the judge's reward rose by {record['reward_change']['change']:.3f}"
    )


def _bundled() -> Path:
    from charter.prompts import bundled_prompts_path

    return bundled_prompts_path()


@public
def iterate(
    config: ConfigArg[LoopConfig],
    overrides: list[str] | None = None,
) -> LoopResult:
    """Run (or resume) an iterated loop: per round and data strategy, a run, its DPO data, DPO, monitor and eval.

    A killed loop resumes at the first step it had not recorded in LOOP_DIR/loop.sqlite.

    Args:
        config: A `LoopConfig`, a dict of its fields, or the path of a loop config YAML file (relative paths in it
            resolve against it).
        overrides: `--set`-style `key.sub=value` items applied on top of the file; ignored for a `LoopConfig`.

    Returns:
        Per strategy, one row per policy (0 = the base) with its diversity metrics, collapse flags, data and win
        rates; why a strategy stopped early, if it did; and the report written under LOOP_DIR/report.

    Raises:
        ConfigError: The loop config or its run config cannot be read or does not validate, the policy is not a
            `local:` model, or a round has no preference rows to train on.
        ArgumentError: An override is not `key=value`.
        CharterError: Any error of a round's run, DPO training or win rate (see `run`, `train_dpo` and `winrate`),
            e.g. `BudgetExceeded`, `Interrupted`, `TrainingError`; the steps done so far stay recorded.
    """
    return Loop(config_from(LoopConfig, config, "config", lambda path: load_loop_config(path, overrides))).run()
