"""The one builder of run directories for tests: records in, a run directory out, through the real run store,
the real settings and fingerprints of a run config, and the real dataset writer.

    with RunBuilder(tmp_path / "run", config={"judge": {"principles_per_pair": 2}}) as run:
        run.chain("q1", ["harm"])
        run.pair("p1", "q1", "short", "a longer revision")
        run.judgment("p1", 0.2, principles=["harm"])
        run.write_dataset()
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from charter.constitutions import Constitution, load_constitution
from charter.pipeline.config import RunConfig
from charter.pipeline.settings import dataset_settings
from charter.preference import dataset
from charter.preference.manifest import DatasetManifest, current_settings
from charter.records import (
    Chain,
    CritiqueRound,
    Failure,
    HumanLabel,
    Judgment,
    Message,
    Pair,
    Prompt,
    UsageRow,
    Vote,
)
from charter.runs import labels as stored
from charter.runs.failures import add_failure
from charter.runs.files import RunFiles
from charter.runs.history import record_config
from charter.runs.items import put_chains, put_judgments, put_pairs, put_prompts
from charter.runs.labels import SpotSample
from charter.runs.store import RunStore
from charter.runs.usage import add_usage

SCRIPTED = {"policy": "scripted:cai", "judge": {"model": "scripted:cai"}, "report": False}


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


class RunBuilder:
    """A run directory under construction; items get the fingerprints of `config`'s settings."""

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any] | None = None,
        constitution: str | Path = "harmless",
        run_id: str = "run-test-0001",
        created_at: str = "2025-01-01T00:00:00Z",
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.constitution: Constitution = load_constitution(constitution)
        self.config = RunConfig.model_validate({**SCRIPTED, "constitution": str(constitution), **(config or {})})
        self.settings = dataset_settings(self.config, self.constitution, run_id, created_at)
        self.fp = self.settings.fingerprints
        self.store = RunStore(self.run_dir, create=True)
        stored_config = {**self.config.model_dump(mode="json"), **(extra_config or {})}
        self.store.set_meta(run_id=run_id, created_at=created_at)
        record_config(self.store, stored_config, self.fp)
        self.store.set_meta(settings=self.settings, constitution=self.settings.constitution)
        files = RunFiles(self.run_dir)
        files.write_config(stored_config)
        files.write_constitution(self.constitution)
        self._prompts: list[Prompt] = []

    @classmethod
    def reopen(cls, run_dir: Path) -> RunBuilder:
        """A builder over a run directory that exists (its settings as stored), to add items or labels."""
        builder = cls.__new__(cls)
        builder.run_dir = Path(run_dir)
        builder.store = RunStore(builder.run_dir)
        settings = current_settings(builder.store)
        assert settings is not None, f"{run_dir}: not built by RunBuilder"
        builder.settings, builder.fp = settings, settings.fingerprints
        builder.constitution = load_constitution(RunFiles(builder.run_dir).constitution_path)
        builder._prompts = []
        return builder

    # -- items -------------------------------------------------------------------------------------------
    def prompt(self, prompt_id: str, text: str | None = None) -> Prompt:
        prompt = Prompt(prompt_id=prompt_id, messages=user(text or f"question {prompt_id}"), source="inline")
        put_prompts(self.store, [prompt])
        self._prompts.append(prompt)
        return prompt

    def _ensure_prompt(self, prompt_id: str, text: str | None) -> None:
        """Items belong to a prompt of the run's prompt set (the dataset covers those in use)."""
        if not any(p.prompt_id == prompt_id for p in self._prompts) and not self.store.execute(
            "SELECT 1 FROM prompts WHERE prompt_id = ?", (prompt_id,)
        ):
            self.prompt(prompt_id, text)

    def chain(
        self,
        prompt_id: str,
        principles: Iterable[str],
        initial: str = "init",
        final: str = "revised",
        text: str | None = None,
    ) -> Chain:
        self._ensure_prompt(prompt_id, text)
        chain = Chain(
            prompt_id=prompt_id,
            prompt=user(text or f"question {prompt_id}"),
            initial=initial,
            final=final,
            rounds=[CritiqueRound(principle_id=p, critique="c", revision=final) for p in principles],
            policy_model="scripted:cai",
            critic_model="scripted:cai",
            prompt_tokens=10,
            completion_tokens=5,
            fingerprint=self.fp.critique or "",
        )
        put_chains(self.store, [chain])
        return chain

    def pair(
        self,
        pair_id: str,
        prompt_id: str,
        a: str,
        b: str,
        kind: str = "revision",
        a_source: str = "initial",
        b_source: str = "revision",
        text: str | None = None,
    ) -> Pair:
        self._ensure_prompt(prompt_id, text)
        source = self.fp.samples if kind == "samples" else self.fp.critique
        pair = Pair(
            pair_id=pair_id,
            prompt_id=prompt_id,
            kind=kind,
            prompt=user(text or f"question {prompt_id}"),  # type: ignore[arg-type]
            a=a,
            b=b,
            a_source=a_source,
            b_source=b_source,
            a_model="scripted:cai",
            b_model="scripted:cai",
            source_fingerprint=source,
        )
        put_pairs(self.store, [pair])
        return pair

    def judgment(
        self,
        pair_id: str,
        p_a: float,
        p_ab: float | None = None,
        p_ba: float | None = None,
        principles: Iterable[str] = ("harm",),
        orders: str = "both",
        fingerprint: str | None = None,
        failure: str | None = None,
        raw: str = "neither A nor B",
    ) -> Judgment:
        """An ok judgment (p_ab and p_ba default to p_a), or a failed one when `failure` is given."""
        ids = list(principles)
        base = {
            "pair_id": pair_id,
            "fingerprint": fingerprint or self.fp.judge,
            "mode": "logprobs",
            "orders": orders,
            "judge_model": "scripted:cai",
            "principle_ids": ids,
        }
        if failure is not None:
            judgment = Judgment(**base, status="failed", failure=Failure(kind="unparseable", message=failure, raw=raw))
        else:
            p_ab = p_a if p_ab is None else p_ab
            p_ba = None if orders == "one" else (p_a if p_ba is None else p_ba)
            consistent = None if p_ba is None else (p_ab > 0.5) == (p_ba > 0.5)
            votes = [Vote(principle_id=p, p_a=p_a, p_a_ab=p_ab, p_a_ba=p_ba, consistent=consistent) for p in ids]
            judgment = Judgment(
                **base,
                status="ok",
                p_a=p_a,
                p_a_ab=p_ab,
                p_a_ba=p_ba,
                position_consistent=consistent,
                principles=votes,
                prompt_tokens=100,
                completion_tokens=2,
            )
        put_judgments(self.store, [judgment])
        if judgment.failure is not None:
            add_failure(self.store, "judge", pair_id, judgment.failure, judgment.fingerprint)
        return judgment

    def usage(self, *rows: UsageRow) -> None:
        add_usage(self.store, rows)

    def spot_sample(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """(pair_id, principle_id, shown_order) rows, in labeling order."""
        stored.add_to_sample(
            self.store,
            [
                SpotSample(
                    pair_id=p, principle_id=principle, confidence_bucket="x", shown_order=order, position=i, seed=0
                )  # type: ignore[arg-type]
                for i, (p, principle, order) in enumerate(rows)
            ],
        )

    def label(
        self, pair_id: str, annotator: str, label: str, shown_order: str, created_at: float | None = None
    ) -> None:
        stored.put_labels(
            self.store,
            [
                HumanLabel(
                    pair_id=pair_id,
                    annotator=annotator,
                    label=label,  # type: ignore[arg-type]
                    shown_order=shown_order,  # type: ignore[arg-type]
                    created_at=created_at or time.time(),
                )
            ],
            "test",
        )

    def write_dataset(self) -> DatasetManifest:
        """Write data/preferences.* and data/sft.* as a finished run would."""
        return dataset.write(self.store, self.settings)

    # -- lifetime -----------------------------------------------------------------------------------------
    def close(self) -> Path:
        self.store.close()
        return self.run_dir

    def __enter__(self) -> RunBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
