"""One run's per-prompt work: chain, samples, pairs, judgments. Each item is reused when the store holds it
under the settings in effect; a call that fails for good fails its one item, which is recorded (and tried
again on the next run, until it has failed in `quarantine_after` runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charter.checklist import Checklist
from charter.checklist.store import Checklists, checklist_failure
from charter.constitutions import Constitution
from charter.critique.chain import run_chain
from charter.errors import FatalProviderError, JudgeParseError, ProviderError, TooManyFailures
from charter.judge.judgment import ChecklistCriteria
from charter.judge.pairwise import judge_failure, judge_pair, principle_key, principles_for
from charter.judge.panel import Panel
from charter.judge.score import rank_samples
from charter.judge.settings import JudgeSettings
from charter.pipeline.config import RunConfig
from charter.preference.pairs import policy_samples, revision_pair, sample_pair, sample_pairs, step_identity
from charter.preference.selection import field_text
from charter.providers import ManagedModel
from charter.records import Chain, Failure, Fingerprints, Pair, Prompt, Sample
from charter.runs.failures import add_failure, failing_items, resolve_failures
from charter.runs.items import (
    BufferedWriter,
    chain_ids,
    judged_ids,
    pair_source,
    sampled_ids,
    stored_chain,
    stored_samples,
)
from charter.runs.store import RunStore

#: Below this many attempted items a share-type `max_failures` does not stop a run early (it still counts at
#: the end): the first failure of a run is not yet a rate.
MIN_ITEMS_FOR_A_RATE = 20


def judge_settings(config: RunConfig) -> JudgeSettings:
    """How the run's judge compares: its settings, without warming when a judge's calls go through a batch API."""
    settings = config.judge.settings()
    judges = config.judge.models or [config.judge]
    if any(config.batch.for_role(judge) for judge in judges):  # a batch round takes hours: warming one first
        settings = settings.model_copy(update={"warm_cache": False})  # would multiply its wait
    return settings


class Work:
    """The work of one run session over its prompts."""

    def __init__(
        self,
        config: RunConfig,
        constitution: Constitution,
        fp: Fingerprints,
        store: RunStore,
        models: tuple[ManagedModel, ManagedModel, ManagedModel | Panel],
        session: int,
    ) -> None:
        self.config, self.constitution, self.fp, self.store, self.session = config, constitution, fp, store, session
        self.policy, self.critic, self.judge = models
        self.make_items = "critique" in config.stages
        self.do_judge = "judge" in config.stages
        self.chains_done = chain_ids(store, fp.critique) if fp.critique else set()
        self.sampled = sampled_ids(store, fp.samples, config.pairs.k) if fp.samples else set()
        self.judged = judged_ids(store, fp.judge)
        self.pairs_stored = store.count("pairs") > 0
        self.settings = judge_settings(config)
        self.writer = BufferedWriter(store)
        self.failing = {
            "critique": failing_items(store, "critique", fp.critique),
            "samples": failing_items(store, "samples", fp.samples),
            "judge": failing_items(store, "judge", fp.judge),
        }
        self.quarantined = {
            stage: {item for item, runs in failing.items() if runs >= config.quarantine_after}
            for stage, failing in self.failing.items()
        }
        self.counts = {
            "chains": 0,
            "samples": 0,
            "pairs": 0,
            "judged": 0,
            "judge_failures": 0,
            "items": 0,
            "attempted": 0,
            "failed": 0,
            "quarantined": 0,
        }
        self.progress: Any = None
        self.task: Any = None
        self.checklists: Checklists | None = None
        self.by_checklist = False
        """Judge mode `checklist`: pairs are judged, and samples ranked, by their prompt's checklist."""
        self.on_texts: Callable[[list[str]], None] | None = None
        """Given each new pair's texts (prompt, both responses): the run embeds them for its diversity figures
        while its calls are still in flight."""

    def use_checklists(self, writer: ManagedModel | None) -> None:
        """Make each prompt's checklist (a `checklist:` section), written by `writer` for source `model`."""
        section, fp = self.config.checklist, self.fp.checklist
        if section is None or fp is None:
            return
        drawn = lambda prompt_id: principles_for(self.constitution, self.settings, prompt_id, self.config.seed)  # noqa: E731
        self.checklists = Checklists(section, self.constitution, drawn, self.store, fp, writer)
        self.by_checklist = self.settings.mode_entry.needs_context
        self.failing["checklist"] = failing_items(self.store, "checklist", fp)
        self.quarantined["checklist"] = {
            item for item, runs in self.failing["checklist"].items() if runs >= self.config.quarantine_after
        }

    # -- failures ---------------------------------------------------------------------------------------
    def past_threshold(self, final: bool = False) -> bool:
        """Whether more items fail than `max_failures` allows: a count, or a share of the run's items (done
        before, done now, failed or quarantined); a share needs enough attempts before it stops a run early."""
        failing = self.counts["failed"] + self.counts["quarantined"]
        items, limit = self.counts["items"], self.config.max_failures
        if limit >= 1:
            return failing > limit
        if not final and self.counts["attempted"] < MIN_ITEMS_FOR_A_RATE:
            return False
        return items > 0 and failing / items > limit

    def _failed(self, stage: str, item_id: str, fingerprint: str | None, failure: Failure) -> None:
        self.counts["failed"] += 1
        add_failure(self.store, stage, item_id, failure, fingerprint, self.session)

    def _succeeded(self, stage: str, item_id: str, fingerprint: str | None) -> None:
        if item_id in self.failing[stage]:
            resolve_failures(self.store, stage, [item_id], fingerprint)

    async def _attempt(self, stage: str, item_id: str, fingerprint: str | None, work: Any) -> Any:
        """Run one item's calls; a provider failure that dooms only this item is recorded and gives None."""
        self.counts["attempted"] += 1
        try:
            result = await work
        except FatalProviderError:
            raise
        except ProviderError as exc:
            self._failed(
                stage,
                item_id,
                fingerprint,
                Failure(kind=exc.kind, message=str(exc), raw=exc.raw, attempts=exc.attempts),
            )
            return None
        self._succeeded(stage, item_id, fingerprint)
        return result

    def _held_back(self, stage: str, item_id: str) -> bool:
        """Whether the item is quarantined at this stage (counted): its calls are not made this run."""
        if item_id in self.quarantined[stage]:
            self.counts["quarantined"] += 1
            return True
        return False

    # -- the items ----------------------------------------------------------------------------------------
    async def prompt(self, item: Prompt) -> None:
        checklist = await self._checklist(item) if self.checklists is not None else None
        if self.by_checklist and checklist is None:  # recorded: its pairs wait for a checklist on a later run
            self.progress.advance(self.task)
            return
        pairs: list[Pair] = []
        chain = await self._chain(item) if self.fp.critique else None
        if chain is not None:
            self.counts["chains"] += 1
            pair = revision_pair(chain)
            pairs += [pair] if pair else []
        samples = await self._samples(item) if self.fp.samples else []
        if samples:
            self.counts["samples"] += 1
            if not self.settings.rates_alone:
                pairs += sample_pairs(item.prompt_id, item.messages, samples)
            elif self.do_judge:
                scored = await self._best_and_worst(item, samples, checklist)
                pairs += [scored] if scored else []
        if self.on_texts is not None and pairs:
            self.on_texts([text for p in pairs for text in (field_text(p.prompt, "prompt"), p.a, p.b)])
        for pair in pairs:
            if self._stored_source(pair.pair_id) != pair.source_fingerprint:
                self.writer.add(pair)
            self.counts["pairs"] += 1
        if self.do_judge:
            self.counts["items"] += len(pairs)
            todo = [p for p in pairs if p.pair_id not in self.judged]
            held = [p for p in todo if p.pair_id in self.quarantined["judge"]]
            self.counts["quarantined"] += len(held)
            outcomes = await asyncio.gather(
                *(self._judge(p, checklist) for p in todo if p not in held), return_exceptions=True
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if errors:  # every judgment of the prompt ran to its end first
                raise errors[0]
        self.progress.advance(self.task)

    def _stored_source(self, pair_id: str) -> str | None:
        """The source fingerprint of the pair the store holds under this id, if any. Looked up, not held: a map
        of every pair grew a shard by ~50 MB at half a million prompts (a session meets each pair once)."""
        if not self.pairs_stored:
            return None
        return pair_source(self.store, pair_id)

    async def _chain(self, item: Prompt) -> Chain | None:
        fp = self.fp.critique
        assert fp is not None
        self.counts["items"] += 1
        if item.prompt_id in self.chains_done:
            return stored_chain(self.store, item.prompt_id, fp)
        if not self.make_items:
            return None
        if self._held_back("critique", item.prompt_id):
            return None
        config = self.config
        chain = await self._attempt(
            "critique",
            item.prompt_id,
            fp,
            run_chain(
                self.policy,
                self.critic,
                self.constitution,
                item.prompt_id,
                item.messages,
                config.critique,
                config.policy.params,
                config.critic_role.params,
                config.seed,
                fp,
                item.tools,
            ),
        )
        if chain is not None:
            self.writer.add(chain)
        return chain

    async def _samples(self, item: Prompt) -> list[Sample]:
        fp = self.fp.samples
        assert fp is not None
        self.counts["items"] += 1
        if item.prompt_id in self.sampled:
            return stored_samples(self.store, item.prompt_id, fp)
        if not self.make_items:
            return []
        if self._held_back("samples", item.prompt_id):
            return []
        samples = await self._attempt(
            "samples",
            item.prompt_id,
            fp,
            policy_samples(
                self.policy,
                self.constitution,
                item.prompt_id,
                item.messages,
                self.config.pairs.k,
                self.config.samples_params(),
                fp,
                item.tools,
            ),
        )
        for sample in samples or []:
            self.writer.add(sample)
        return samples or []

    async def _checklist(self, item: Prompt) -> Checklist | None:
        """The prompt's checklist, from the store or made now; None where it could not be written (recorded)."""
        assert self.checklists is not None and self.fp.checklist is not None
        self.counts["items"] += 1
        if self._held_back("checklist", item.prompt_id):
            return None
        try:
            checklist = await self._attempt("checklist", item.prompt_id, self.fp.checklist, self.checklists.get(item))
        except JudgeParseError as exc:
            self._failed("checklist", item.prompt_id, self.fp.checklist, checklist_failure(exc))
            return None
        return checklist

    async def _best_and_worst(self, item: Prompt, samples: list[Sample], checklist: Checklist | None) -> Pair | None:
        """Mode `score`: rate each sample under the prompt's principles; the pair of the best against the worst
        (None when the samples hold fewer than two texts, or the rating failed, which is recorded)."""
        if len({step_identity(s.text, s.tool_calls) for s in samples}) < 2:
            return None
        item_id = f"{item.prompt_id}:samples"
        if self._held_back("judge", item_id):
            return None
        ids = principles_for(self.constitution, self.settings, item.prompt_id, self.config.seed)
        assert not isinstance(self.judge, Panel)  # the config refuses mode score for a panel
        try:
            criteria = self._criteria(checklist)
            ranked = await rank_samples(
                self.judge, self.constitution, item.messages, samples, ids, self.settings, criteria
            )
        except FatalProviderError:
            raise
        except (JudgeParseError, ProviderError) as exc:
            self.counts["attempted"] += 1
            self.counts["items"] += 1
            self.counts["judge_failures"] += 1
            self._failed("judge", item_id, self.fp.judge, judge_failure(exc))
            return None
        self._succeeded("judge", item_id, self.fp.judge)
        identity = {s.sample_idx: step_identity(s.text, s.tool_calls) for s, _ in ranked}  # text and calls
        if len(set(identity.values())) < 2:  # fewer than two samples scored: nothing to pair
            return None
        (best, _), (worst, _) = ranked[0], ranked[-1]
        if identity[best.sample_idx] == identity[worst.sample_idx]:
            worst = next(s for s, _ in reversed(ranked) if identity[s.sample_idx] != identity[best.sample_idx])
        return sample_pair(item.prompt_id, item.messages, best, worst)

    def _criteria(self, checklist: Checklist | None) -> ChecklistCriteria | None:
        """The prompt's checklist as the criteria of a mode that judges by checklist (None without one)."""
        section = self.config.checklist
        return None if checklist is None or section is None else ChecklistCriteria(checklist, section.aggregation)

    async def _judge(self, pair: Pair, checklist: Checklist | None = None) -> None:
        ids = principles_for(self.constitution, self.settings, principle_key(pair, self.settings), self.config.seed)
        self.counts["attempted"] += 1
        criteria = self._criteria(checklist)
        judgment = await judge_pair(self.judge, self.constitution, pair, self.settings, ids, self.fp.judge, criteria)
        self.writer.add(judgment)
        self.counts["judged"] += 1
        if judgment.failure is not None:
            self.counts["judge_failures"] += 1
            self._failed("judge", pair.pair_id, self.fp.judge, judgment.failure)
        else:
            self._succeeded("judge", pair.pair_id, self.fp.judge)


def too_many_failures(work: Work, run_dir: Path) -> TooManyFailures:
    """The stop of a run in which more items failed than `max_failures` allows."""
    failing, items = work.counts["failed"] + work.counts["quarantined"], work.counts["items"]
    return TooManyFailures(
        f"{failing} of {items} items failed, over max_failures {work.config.max_failures:g}; what is done is "
        f"kept (charter status {run_dir} lists the failures) and a new run tries the failed items again"
    )
