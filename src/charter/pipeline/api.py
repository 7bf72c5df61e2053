"""The Python API of the pipeline: `run`, and stage functions usable alone with the same semantics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterable, Sequence

from charter.constitutions import Constitution, load_constitution
from charter.critique.chain import run_chain
from charter.pipeline.concurrency import bounded_map
from charter.pipeline.config import CritiqueConfig, FiltersConfig, RunConfig, load_run_config
from charter.pipeline.prompts import prompt_id, to_messages
from charter.pipeline.run import RunResult, Runner
from charter.preference import dataset
from charter.preference.judge import JudgeSettings, judge_pair, principles_for
from charter.providers import ChatModel, SamplingParams, get_model


def run(config: RunConfig | str | Path, overrides: list[str] | None = None) -> RunResult:
    """Run (or resume) a run from a RunConfig or a YAML path with `--set`-style overrides."""
    if not isinstance(config, RunConfig):
        config = load_run_config(config, overrides)
    return asyncio.run(Runner(config).arun())


def _model(model: str | ChatModel, role: str) -> ChatModel:
    return model if isinstance(model, ChatModel) and hasattr(model, "inner") else get_model(model, role=role)


def critique(
    prompts: Iterable[str | list[dict]], constitution: str | Constitution = "harmless",
    policy: str | ChatModel = "local:smollm2-135m-instruct", critic: str | ChatModel | None = None,
    rounds: int = 1, principles: list[str] | None = None, params: SamplingParams | None = None,
    seed: int = 0, concurrency: int = 64,
) -> list[dict]:
    """SL-CAI chains for prompts (strings or message lists); returns chain records in input order."""
    const = load_constitution(constitution)
    config = CritiqueConfig(rounds=rounds, principles=principles)
    params = params or SamplingParams()
    items = [(prompt_id(m), m) for m in (to_messages(p, "prompt") for p in prompts) if m]

    async def go() -> list[dict]:
        pol = _model(policy, "policy")
        crit = _model(critic, "critic") if critic else pol
        records = {}

        async def one(item: tuple[str, list[dict]]) -> dict:
            return await run_chain(pol, crit, const, item[0], item[1], config, params, params, seed)

        async for record in bounded_map(one, items, concurrency):
            records[record["prompt_id"]] = record
        return [records[pid] for pid, _ in items]

    return asyncio.run(go())


def judge_pairs(
    pairs: Sequence[dict], judge: str | ChatModel = "local:smollm2-135m-instruct",
    constitution: str | Constitution = "harmless", settings: JudgeSettings | None = None, seed: int = 0,
    concurrency: int = 64, **setting_fields: Any,
) -> list[dict]:
    """Judge pairs ({pair_id?, prompt, a, b}); returns judgment records in input order."""
    const = load_constitution(constitution)
    settings = settings or JudgeSettings(**setting_fields)
    items = [{**p, "pair_id": p.get("pair_id", f"pair-{i}"),
              "prompt": to_messages(p["prompt"], f"pairs[{i}]") or []} for i, p in enumerate(pairs)]

    async def go() -> list[dict]:
        model = _model(judge, "judge")

        async def one(pair: dict) -> dict:
            ids = principles_for(const, settings, pair["pair_id"], seed)
            return await judge_pair(model, const, pair, settings, ids)

        out = {}
        async for record in bounded_map(one, items, concurrency):
            out[record["pair_id"]] = record
        return [out[p["pair_id"]] for p in items]

    return asyncio.run(go())


def build_preferences(
    pairs: Sequence[dict], judgments: Sequence[dict], filters: FiltersConfig | None = None,
    provenance: dict | None = None, strategy: str = "all",
) -> tuple[list[dict], dict]:
    """Preference rows (TRL format) from pairs and their judgments, filtered; returns (rows, counts)."""
    by_id = {p["pair_id"]: p for p in pairs}
    base = {"prompt_id": None, "kind": "custom", "a_source": "a", "b_source": "b"}
    provenance = provenance or {"synthetic": True, "generator": f"charter {dataset.__version__}"}
    rows = [
        dataset.preference_row({**base, **by_id[j["pair_id"]], "prompt": to_messages(by_id[j["pair_id"]]["prompt"],
                                                                                       "pair") or []}, j, provenance)
        for j in judgments if j["status"] == "ok" and j["pair_id"] in by_id
    ]
    return dataset.apply_filters(rows, filters or FiltersConfig(), strategy)
