"""`GoldMonitor`: the gold monitor as a transformers `TrainerCallback`, for charter's trainers and users' own TRL runs.

Before training (step 0) and every `every` optimizer steps the policy answers the held-out prompts greedily, between
steps; the training reward (the reward function it is given, called as TRL calls it) and the gold evaluator score the
answers, and the evaluation (`charter.monitor.gold.MonitorStep`) goes into the trainer's log history (`monitor/...`
keys, and TensorBoard / W&B when the trainer is given), `history`, and OUTPUT_DIR/monitor/step-N.jsonl (each prompt's
answer, reward, gold score or failure, and signatures). Gold calls go through the call cache and a usage meter of the
monitor's own: its budget stops the monitor, never training, and the monitor says so. Under torchrun only the main
process evaluates (answers, gold calls, the files), and every process follows its save and stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from charter.api_args import ConfigArg, public
from charter.concurrency import run_sync
from charter.constitutions import load_constitution
from charter.errors import BudgetExceeded, ConfigError, MissingExtra
from charter.monitor.gold import (
    HISTORY_FILE,
    MONITOR_DIR,
    FalsePositives,
    GoldScore,
    LabelsMatched,
    MonitorConfig,
    MonitorStep,
    MonitorSummary,
    ScoredAnswers,
    checklist_gold,
    gold_checklists,
    held_out_rows,
    label_key,
    labels_line,
    panel_gold,
    prompt_text,
    rated_gold,
    read_labels,
    refuse_overlap,
    refuse_same_judge,
    rule_change,
    step_record,
    verifier_gold,
)
from charter.monitor.signatures import SIGNATURES, required_phrases
from charter.providers import get_model
from charter.providers.cache import DEFAULT_CACHE, CallCache
from charter.providers.config import RoleConfig, blind_cap
from charter.providers.usage import Price, UsageMeter
from charter.stats.intervals import exact_interval
from charter.training.models import greedy_answers, trainer_tokenizer
from charter.yamlio import config_from

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - the train extra is missing
    raise MissingExtra("transformers", "train") from None

log = logging.getLogger("charter.monitor")

#: The held-out rows' columns handed to the training reward beside prompts and completions, where a row has them.
REWARD_COLUMNS = ("reference", "checklist", "verifier")


class GoldMonitor(TrainerCallback):
    """Scores the policy's held-out answers by the training reward and a gold evaluator every `every` steps; flags,
    by a stated rule, gold falling while the reward rises; keeps the gold-best checkpoint."""

    @public
    def __init__(
        self,
        config: ConfigArg[MonitorConfig],
        reward: Callable[..., Sequence[float | None]],
        *,
        rows: Sequence[Mapping[str, Any]] | None = None,
        cache: str | Path | None = DEFAULT_CACHE,
        prices: Mapping[str, Price] | None = None,
        trainer: Any = None,
    ) -> None:
        """A callback that watches a judge-rewarded training run against a gold evaluator.

        Args:
            config: The monitor's settings (`MonitorConfig`, a dict of its fields or a YAML file): held-out prompts,
                `every`, the gold evaluator, its budget, `on_gap`, `keep_best`.
            reward: The training reward: a TRL reward function (`charter.reward_function(...)` or any function of
                `prompts`, `completions` and columns) giving rewards within 0..1 (None for a failed one); it is
                called on the held-out answers as TRL calls it, with the rows' `reference`, `checklist` and
                `verifier` columns where they have them.
            rows: The held-out prompts as rows (`prompt`: messages, and the gold evaluator's columns), where the
                config's `split` holds them out of the training prompts; None: the config's `prompts` file.
            cache: The call cache the gold calls go through (None: none).
            prices: USD per million tokens by model id, for the gold calls' cost and the monitor's budget.
            trainer: The trainer, so that the evaluations reach its loggers (TensorBoard, W&B).

        Raises:
            ConfigError: No held-out prompts (`split` without rows), a cost cap with an unpriced gold judge, a
                verifier that needs a reference the rows lack, or a gold judge that is the training judge itself
                (same model, constitution and settings).
            DatasetError: The held-out prompts file or the people's labels cannot be read, or a gold checklist or a
                label is missing or malformed (named with its row).
        """
        config = config_from(MonitorConfig, config, "config")
        self.config, self.reward, self.trainer = config, reward, trainer
        if rows is None:
            if config.prompts is None:
                raise ConfigError("monitor: split holds out training prompts: give the held-out rows")
            source = config.prompts
            rows = held_out_rows(config.prompts, config.limit)
        else:
            source = "monitor held-out prompts"
            rows = [dict(r) for r in rows][: config.limit]
        if not rows:
            raise ConfigError("monitor: no held-out prompts")
        self.rows = list(rows)
        self.prompts = [r["prompt"] for r in self.rows]
        self.texts = [prompt_text(p) for p in self.prompts]
        gold = config.gold
        self.checklists = None
        if gold.checklist_column is not None:
            self.checklists = gold_checklists(self.rows, gold.checklist_column, source)
        self.required = [self._required(r) for r in self.rows]
        roles = [("gold", gold.judge)] if gold.judge is not None else []
        roles += [(f"gold.models.{i}", m) for i, m in enumerate(gold.models or [])]
        blind = blind_cap(config.budget, dict(prices or {}), roles)
        if blind is not None:
            raise ConfigError(f"monitor: {blind}")
        self.cache = CallCache(Path(cache).expanduser()) if cache is not None else None
        self.meter = UsageMeter(dict(prices or {}), config.budget)
        self.constitution = load_constitution(gold.constitution) if gold.constitution is not None else None
        refuse_same_judge(gold, reward, "monitor")
        self.labels = read_labels(gold.labels) if gold.labels is not None else None
        self.labels_matched: LabelsMatched | None = None
        if self.labels is not None:
            matched, prompts = self.labels.matched(self.texts)
            self.labels_matched = LabelsMatched(source=self.labels.source, read=len(self.labels), matched=matched,
                                                prompts=prompts, held_out=len(self.texts))  # fmt: skip
            log.info("monitor: people's labels: %s", labels_line(self.labels_matched))
            if not matched:
                log.warning(
                    "monitor: none of people's labels is of an answer to a held-out prompt: no step is corrected"
                )
        self.scored: list[ScoredAnswers] = []
        self.history: list[MonitorStep] = []
        """Every evaluation's record, in order."""
        self.stopped: str | None = None
        self.best_checkpoint: str | None = None
        self.watching = "training"
        """What goes on when the monitor's budget stops it (the loop's monitors say `the loop`)."""

    # -- TRL / transformers hooks ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        dataset = getattr(kwargs.get("train_dataloader"), "dataset", None)
        if dataset is not None and "prompt" in getattr(dataset, "column_names", ()):
            refuse_overlap(self.prompts, [_messages(p) for p in dataset["prompt"]], "monitor")
        if state.is_world_process_zero and not self.scored:  # step 0, or the step a resumed run starts from
            step = state.global_step
            self._evaluate(kwargs["model"], trainer_tokenizer(kwargs, "GoldMonitor"), step, args, state, control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        step = state.global_step
        if step % self.config.every != 0:
            return control
        if state.is_world_process_zero and not self.stopped:
            self._evaluate(kwargs["model"], trainer_tokenizer(kwargs, "GoldMonitor"), step, args, state, control)
        _follow_main_process(control)  # every process saves and stops where the main one's monitor says
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        best = self.best_step
        if self.config.keep_best and best and state.global_step == best:
            self.best_checkpoint = str(Path(args.output_dir) / f"checkpoint-{best}")
            state.best_model_checkpoint = self.best_checkpoint  # transformers' rotation keeps it

    # -- one evaluation ---------------------------------------------------------------------------------------
    def evaluate(self, model: Any, tokenizer: Any, step: int, output_dir: str | Path | None = None) -> MonitorStep:
        """Answer the held-out prompts, score the answers, and record the evaluation (also without a trainer)."""
        started = time.perf_counter()
        answers = greedy_answers(model, tokenizer, self.prompts, self.config.max_new_tokens)
        scored, cost = self.score(answers, step)
        return self.add(scored, {**cost, "seconds": time.perf_counter() - started}, output_dir)

    def score(self, answers: list[str], step: int) -> tuple[ScoredAnswers, dict[str, float]]:
        """The held-out answers of `step` scored by the training reward and the gold evaluator, and what the gold
        calls cost (`seconds`, `calls`, `cached`, `cost_usd`); not recorded (`add` records it)."""
        started, before = time.perf_counter(), self._usage()
        rewards = self._rewards(answers)
        gold = self._gold(answers)
        spent = self._usage()
        labels = [self.labels.get(label_key(p, a)) for p, a in zip(self.prompts, answers)] if self.labels else []
        cost = {"seconds": time.perf_counter() - started, **{k: spent[k] - before[k] for k in spent}}
        return ScoredAnswers(step, answers, rewards, gold, labels=labels), cost

    def add(
        self, scored: ScoredAnswers, cost: Mapping[str, float], output_dir: str | Path | None = None
    ) -> MonitorStep:
        """Record a scored evaluation, after the ones before it: its step record against the gold-best one so far,
        OUTPUT_DIR/monitor's files, and the monitor stopped where its budget was reached."""
        step, gold = scored.step, scored.gold
        self.scored.append(scored)
        base_length = sum(self.scored[0].words) / max(len(self.scored[0].words), 1)
        record = step_record(scored, self._best(), base_length, self.texts, self.required, cost)
        self.history.append(record)
        if output_dir is not None:
            self._write(Path(output_dir), scored)
        budget = next((g.failure for g in gold if g.failure and g.failure.startswith("budget")), None)
        try:
            self.meter.check()  # calls in flight together may pass the cap before any of them is counted
        except BudgetExceeded as exc:
            budget = budget or str(exc)
        if budget is not None and self.stopped is None:
            self.stopped = f"the monitor's budget was reached at step {step}; {self.watching} went on unmonitored"
            log.warning("monitor: %s (%s)", self.stopped, budget)
        return record

    def _evaluate(self, model: Any, tokenizer: Any, step: int, args: Any, state: Any, control: Any) -> None:
        record = self.evaluate(model, tokenizer, step, args.output_dir)
        if self.config.keep_best and record["best_step"] == step and step > 0:
            control.should_save = True  # the gold-best checkpoint: named in on_save
        if record["flagged"]:
            change, what = rule_change(record)
            message = (
                f"monitor: at step {step} {what} fell by {-(change['change'] or 0):.3f} "
                f"[{change['low']:.3f}, {change['high']:.3f}] since step {record['best_step']} while the training "
                f"reward rose by {record['reward_change']['change']:.3f}: the policy may be gaming its judge"
            )
            log.warning(message)
            if self.config.on_gap == "stop" and self.stopped is None:
                self.stopped = f"the stop rule stopped training at step {step}"
                control.should_training_stop = True
                control.should_save = True
        logs = _logs(record)
        state.log_history.append({**logs, "step": step})
        if self.trainer is not None:
            should_log = control.should_log  # the handler clears it: the trainer's own log of this step is kept
            self.trainer.callback_handler.on_log(args, state, control, logs)
            control.should_log = should_log

    def _rewards(self, answers: list[str]) -> list[float | None]:
        columns = {k: [r.get(k) for r in self.rows] for k in REWARD_COLUMNS if any(k in r for r in self.rows)}
        completions = [[{"role": "assistant", "content": a}] for a in answers]
        got = list(self.reward(prompts=self.prompts, completions=completions, **columns))
        if len(got) != len(answers):
            raise ConfigError(f"monitor: the reward gave {len(got)} rewards for {len(answers)} answers")
        return [None if r is None or r != r else float(r) for r in got]  # NaN: TRL's failed reward

    def _gold(self, answers: list[str]) -> list[GoldScore]:
        gold = self.config.gold
        if self.stopped is not None and self.stopped.startswith("the monitor's budget"):
            return [GoldScore(None, "budget: the monitor's budget was reached earlier") for _ in answers]
        if gold.verifier is not None:
            return verifier_gold(gold.verifier, self.rows, answers)
        concurrency = self.config.concurrency

        async def one(role: RoleConfig) -> list[GoldScore]:
            model = get_model(role.backend(), cache=self.cache, meter=self.meter, role="gold")
            try:
                if self.constitution is not None:
                    return await rated_gold(model, self.constitution, gold.rating, self.prompts, answers, concurrency)
                return await checklist_gold(
                    model, self.prompts, answers, self.checklists or [], gold.aggregation, concurrency
                )
            finally:
                await model.aclose()

        async def scored() -> list[list[GoldScore]]:
            return list(await asyncio.gather(*(one(role) for role in gold.members)))

        members = run_sync(scored())
        if gold.models is None:
            return members[0]
        return panel_gold({role.model: got for role, got in zip(gold.members, members)}, gold.weights)

    def _usage(self) -> dict[str, float]:
        rows = self.meter.tallies.values()
        return {
            "calls": float(sum(r.calls for r in rows)),
            "cached": float(sum(r.cached for r in rows)),
            "cost_usd": float(sum(r.cost_usd for r in rows)),
            "tokens": float(sum(r.prompt_tokens + r.completion_tokens for r in rows)),
        }

    def carry(self, spent: Mapping[str, float]) -> None:
        """Count what earlier evaluations paid against the monitor's budget (`cost_usd`, `tokens`): a monitor made
        again for each of a loop's steps keeps one budget line across them."""
        self.meter.prior_cost = float(spent.get("cost_usd", 0.0))
        self.meter.prior_tokens = int(spent.get("tokens", 0))

    def _best(self) -> ScoredAnswers:
        """The gold-best evaluation so far (the earliest of equals); the first where none has a gold score."""
        scored = [(s.estimate, s) for s in self.scored if s.estimate is not None]
        return max(scored, key=lambda e: (e[0], -e[1].step))[1] if scored else self.scored[0]

    def _required(self, row: Mapping[str, Any]) -> list[str]:
        """The phrases a held-out prompt asks for: from its text and its checklists' requirements."""
        found = required_phrases(prompt_text(row["prompt"]))
        for items in (row.get("checklist"), row.get(self.config.gold.checklist_column or "")):
            parsed = json.loads(items) if isinstance(items, str) else items
            for item in parsed if isinstance(parsed, list) else []:
                if isinstance(item, Mapping):
                    found += [p for p in required_phrases(str(item.get("requirement", ""))) if p not in found]
        return found

    def _write(self, output_dir: Path, scored: ScoredAnswers) -> None:
        folder = output_dir / MONITOR_DIR
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, (answer, reward, gold) in enumerate(zip(scored.answers, scored.rewards, scored.gold)):
            shown = [n for n, detect in SIGNATURES.items() if detect(answer, self.texts[i], self.required[i])]
            label: dict[str, Any] = {}
            if scored.labels and scored.labels[i] is not None:
                label["label"] = scored.labels[i]
            if gold.members is not None:  # a panel's: each member's score or failure
                label["gold_members"] = {m: {"score": g.score, "failure": g.failure} for m, g in gold.members.items()}
            lines.append(json.dumps({"step": scored.step, "prompt": self.prompts[i], "answer": answer,
                                     "reward": reward, "gold": gold.score, "gold_failure": gold.failure,
                                     "signatures": shown, **label}, ensure_ascii=False))  # fmt: skip
        (folder / f"step-{scored.step}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / HISTORY_FILE).write_text(json.dumps(self.history, ensure_ascii=False), encoding="utf-8")

    # -- the record -------------------------------------------------------------------------------------------
    @property
    def best_step(self) -> int | None:
        """The gold-best step so far (None before the first evaluation)."""
        return self._best().step if self.scored else None

    def summary(self) -> MonitorSummary:
        """The monitor's record of the run, for metrics.json, the report, the status and the card."""
        first = self.history[0] if self.history else None
        rates: dict[str, FalsePositives] = {}
        if first is not None:
            for name, count in first["signature_counts"].items():
                low, high = exact_interval(count, first["n"])
                rates[name] = FalsePositives(share=first["signatures"][name], low=low, high=high, n=first["n"])
        best = self._best() if self.scored else None
        flagged = [h["step"] for h in self.history if h["flagged"]]
        return MonitorSummary(
            gold=self.config.gold.describe(),
            prompts=len(self.rows),
            every=self.config.every,
            on_gap=self.config.on_gap,
            steps=list(self.history),
            best_step=best.step if best else None,
            best_gold=best.estimate if best else None,
            best_checkpoint=self.best_checkpoint if best and best.step else None,
            flagged_at=flagged[0] if flagged else None,
            stopped=self.stopped,
            false_positive_rates=rates,
            **({"labels": self.labels_matched} if self.labels_matched is not None else {}),
            seconds=sum(h["seconds"] for h in self.history),
            calls=sum(h["calls"] for h in self.history),
            cached=sum(h["cached"] for h in self.history),
            cost_usd=sum(h["cost_usd"] for h in self.history),
        )


def _follow_main_process(control: Any) -> None:
    """Under torchrun, every process takes the main process's `should_save` and `should_training_stop` (the monitor
    evaluates there alone): a checkpoint saved or a stop made by one process only would leave the others waiting on
    it. One broadcast at each evaluation step, which every process reaches; nothing without several processes."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flags = torch.tensor([float(control.should_save), float(control.should_training_stop)], device=device)
    dist.broadcast(flags, src=0)
    control.should_save, control.should_training_stop = bool(flags[0].item()), bool(flags[1].item())


def _messages(prompt: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _logs(record: MonitorStep) -> dict[str, float]:
    """The evaluation's numbers for the trainer's loggers (`monitor/...`; None values left out)."""
    values: dict[str, Any] = {
        "reward": record["reward"],
        "reward_low": record["reward_low"],
        "reward_high": record["reward_high"],
        "gold": record["gold"],
        "gold_low": record["gold_low"],
        "gold_high": record["gold_high"],
        "gold_failures": record["gold_failures"],
        **(
            {
                "gold_people": people["value"],
                "gold_people_low": people["low"],
                "gold_people_high": people["high"],
                "labels": people["labels"],
            }
            if (people := record["people"])
            else {}
        ),  # fmt: skip
        "gap": record["gap"],
        "gold_change": record["gold_change"]["change"],
        "gold_people_change": (record.get("people_change") or {}).get("change"),
        "length": record["length"],
        "gold_lc": record["gold_lc"],
        "flagged": float(record["flagged"]),
        "seconds": record["seconds"],
        **{f"signature/{k}": v for k, v in record["signatures"].items()},
    }
    return {f"monitor/{k}": float(v) for k, v in values.items() if v is not None}


def monitor_of(trainer: Any) -> GoldMonitor | None:
    """The trainer's `GoldMonitor`, if it has one."""
    found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GoldMonitor)]
    return found[0] if found else None
