"""The Python API of the pipeline: `run`, and the stages usable alone with the same semantics.

Stages take and return records (charter.records): `critique_chains` gives Chains, `judge_pairs` takes
Pairs (or `{prompt, a, b}` dicts) and gives Judgments, `build_preferences` gives PreferenceRows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from charter.concurrency import bounded_map
from charter.constitutions import Constitution, load_constitution
from charter.critique.chain import chain_fingerprint, run_chain
from charter.critique.config import CritiqueConfig
from charter.errors import DatasetError
from charter.messages import as_messages
from charter.pipeline.config import RunConfig, load_run_config
from charter.pipeline.launch import run as run_config
from charter.pipeline.prompts import prompt_id
from charter.pipeline.run import RunResult
from charter.preference.config import FiltersConfig, JudgeSettings
from charter.preference.dataset import apply_filters, now_iso, preference_row
from charter.preference.judge import judge_many
from charter.providers import ChatModel, ManagedModel, SamplingParams, get_model
from charter.providers.config import DEFAULT_MODEL
from charter.records import Chain, Judgment, Message, Pair, PreferenceRow, Provenance, fingerprint


def run(config: RunConfig | str | Path, overrides: list[str] | None = None) -> RunResult:
    """Run (or resume) a run from a RunConfig or a YAML path with `--set`-style overrides. From the main thread,
    Ctrl-C and SIGTERM stop it cleanly while it runs (`charter.errors.Interrupted`); see charter.interrupt."""
    source = None if isinstance(config, RunConfig) else str(config)
    if not isinstance(config, RunConfig):
        config = load_run_config(config, overrides)
    return run_config(config, source)


def _model(model: str | ChatModel, role: str) -> ChatModel:
    return model if isinstance(model, ManagedModel) else get_model(model, role=role)


async def _closing(models: Iterable[ChatModel], work: Any) -> Any:
    try:
        return await work
    finally:
        for model in {id(m): m for m in models}.values():
            await model.aclose()


def critique_chains(
    prompts: Iterable[str | list[dict] | list[Message]],
    constitution: str | Constitution = "harmless",
    policy: str | ChatModel = DEFAULT_MODEL,
    critic: str | ChatModel | None = None,
    rounds: int = 1,
    principles: list[str] | None = None,
    params: SamplingParams | None = None,
    seed: int = 0,
    concurrency: int = 64,
) -> list[Chain]:
    """SL-CAI chains for prompts (strings or message lists), in input order."""
    const = load_constitution(constitution)
    config = CritiqueConfig(rounds=rounds, principles=principles)
    params = params or SamplingParams()
    items = [as_messages(p, f"prompts[{i}]") for i, p in enumerate(prompts)]

    async def go() -> list[Chain]:
        pol = _model(policy, "policy")
        crit = _model(critic, "critic") if critic else pol
        chain_fp = chain_fingerprint(config, const, pol.served_id, params, crit.served_id, params, seed)
        chains: dict[str, Chain] = {}

        async def one(messages: list[Message]) -> Chain:
            return await run_chain(
                pol, crit, const, prompt_id(messages), messages, config, params, params, seed, chain_fp
            )

        async def collect() -> list[Chain]:
            async for chain in bounded_map(one, items, concurrency):
                chains[chain.prompt_id] = chain
            return [chains[prompt_id(m)] for m in items]

        return await _closing([pol, crit], collect())

    return asyncio.run(go())


def as_pairs(pairs: Sequence[Pair | dict[str, Any]]) -> list[Pair]:
    """Pairs from records or `{pair_id?, prompt, a, b}` dicts (a prompt is a string or a message list)."""
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, Pair):
            out.append(pair)
            continue
        where = f"pairs[{i}]"
        missing = [k for k in ("prompt", "a", "b") if k not in pair]
        if missing:
            raise DatasetError(f"{where}: missing {', '.join(missing)}")
        out.append(
            Pair.model_validate(
                {
                    **pair,
                    "pair_id": str(pair.get("pair_id", f"pair-{i}")),
                    "prompt": as_messages(pair["prompt"], f"{where}.prompt"),
                }
            )
        )
    ids = [p.pair_id for p in out]
    if len(set(ids)) != len(ids):
        raise DatasetError("pairs: pair ids must be unique")
    return out


def judge_pairs(
    pairs: Sequence[Pair | dict[str, Any]],
    judge: str | ChatModel = DEFAULT_MODEL,
    constitution: str | Constitution = "harmless",
    settings: JudgeSettings | None = None,
    seed: int = 0,
    concurrency: int = 64,
    **setting_fields: Any,
) -> list[Judgment]:
    """Judge pairs; returns judgments in input order (a failed one carries its failure, never a made-up p)."""
    const = load_constitution(constitution)
    settings = settings or JudgeSettings(**setting_fields)
    items = as_pairs(pairs)

    async def go() -> list[Judgment]:
        model = _model(judge, "judge")

        async def collect() -> list[Judgment]:
            out = {j.pair_id: j async for j in judge_many(model, const, items, settings, seed, concurrency)}
            return [out[p.pair_id] for p in items]

        return await _closing([model], collect())

    return asyncio.run(go())


def build_preferences(
    pairs: Sequence[Pair | dict[str, Any]],
    judgments: Sequence[Judgment],
    filters: FiltersConfig | None = None,
    strategy: str = "all",
    constitution: str | Constitution = "harmless",
    provenance: Provenance | None = None,
) -> tuple[list[PreferenceRow], dict[str, int]]:
    """Preference rows (TRL format) from pairs and their successful judgments, filtered; returns (rows, counts).

    Without `provenance`, rows say they came from the Python API (run id `python-api`) with this constitution.
    """
    by_id = {p.pair_id: p for p in as_pairs(pairs)}
    filters = filters or FiltersConfig()
    if provenance is None:
        const = load_constitution(constitution)
        models = {p.a_model for p in by_id.values() if p.a_model} | {p.b_model for p in by_id.values() if p.b_model}
        provenance = Provenance(
            run_id="python-api",
            created_at=now_iso(),
            constitution_name=const.name,
            constitution_hash=const.hash,
            policy_model=", ".join(sorted(models)) or None,
            settings_fingerprint=fingerprint(
                {
                    "judge": sorted({j.fingerprint for j in judgments}),
                    "strategy": strategy,
                    "filters": filters.model_dump(mode="json"),
                }
            ),
        )
    rows = [
        preference_row(by_id[j.pair_id], j, provenance) for j in judgments if j.status == "ok" and j.pair_id in by_id
    ]
    return apply_filters(rows, filters, strategy)
