"""`charter synth` and the `synth:` stage: load the seeds, synthesize, write the prompts file and its report.

The prompts file is JSONL that `charter run` reads as it is (`prompt`, `category`), with provenance columns
(`synthetic`, `synth_method`, `synth_principle`, `synth_model`, `synth_seed_ids`, `synth_call`,
`synth_sampling_seed`, `synth_fingerprint`). Beside it, NAME.synth.md and NAME.synth.json give the achieved
mix against the target and the filter waterfall.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charter.api_args import ConfigArg, public
from charter.constitutions import load_constitution
from charter.errors import QuotaShortfall
from charter.prompts import PromptsConfig, load_prompts
from charter.providers.base import ChatModel
from charter.records import Prompt
from charter.stats.diversity import FieldDiversity, diversity_table, figure_notes
from charter.synth.config import SynthConfig, load_synth_config
from charter.synth.generate import REASONS, Synthesizer, SynthResult
from charter.tables import atomic_write
from charter.yamlio import config_from


def seed_rows(seeds: list[Prompt]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"seed-{p.prompt_id}",
            "prompt": p.messages[-1].content if len(p.messages) == 1 else [m.model_dump() for m in p.messages],
            "category": p.category,
            "synthetic": False,
            "synth_method": "seed",
        }
        for p in seeds
    ]


def report_files(output: Path) -> tuple[Path, Path]:
    stem = output.with_suffix("")
    return stem.with_name(stem.name + ".synth.md"), stem.with_name(stem.name + ".synth.json")


def summary(result: SynthResult, output: Path | None = None) -> dict[str, Any]:
    """The report as data: target against achieved mix, waterfall, throughput."""
    total_target = sum(result.targets.values()) or 1
    total_kept = sum(result.achieved.values()) or 1
    return {
        "output": str(output) if output else None,
        "fingerprint": result.fingerprint,
        "seeds": len(result.seeds),
        "kept": sum(result.achieved.values()),
        "calls": result.calls,
        "candidates": result.candidates,
        "wall_s": result.wall_s,
        "calls_per_s": round(result.calls / result.wall_s, 2) if result.wall_s else None,
        "kept_per_s": round(sum(result.achieved.values()) / result.wall_s, 2) if result.wall_s else None,
        "mix": [
            {
                "bucket": name,
                "target": target,
                "target_share": round(target / total_target, 4),
                "achieved": result.achieved.get(name, 0),
                "achieved_share": round(result.achieved.get(name, 0) / total_kept, 4),
            }
            for name, target in result.targets.items()
        ],
        "waterfall": [{"step": r, "dropped": result.waterfall.get(r, 0)} for r in REASONS if r in result.waterfall],
        "notes": result.notes,
        "temperatures": [{"temperature": float(t), **c} for t, c in result.temperatures.items()],
        "diversity": None if result.diversity is None else result.diversity.model_dump(mode="json"),
    }


def diversity_lines(found: dict[str, Any]) -> list[str]:
    """The kept prompts' diversity figures as a markdown table, with what could not be measured."""
    columns = {"`prompt`": FieldDiversity.model_validate(found)}
    notes = figure_notes(columns)
    return [*diversity_table(columns), *(["", *notes] if notes else [])]


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Prompt synthesis\n",
        f"{data['kept']} prompts kept from {data['candidates']} written in {data['calls']} calls "
        f"({data['wall_s']} s; {data['calls_per_s']} calls/s, {data['kept_per_s']} kept/s), beside "
        f"{data['seeds']} seeds. Fingerprint `{data['fingerprint']}`.\n",
        "## Mix: target against achieved\n",
        "| bucket | target | target share | achieved | achieved share |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m['bucket']} | {m['target']} | {m['target_share']:.1%} | {m['achieved']} | {m['achieved_share']:.1%} |"
        for m in data["mix"]
    ]
    left = data["candidates"]
    lines += ["", "## Filters\n", "| step | dropped | left |", "|---|---:|---:|", f"| written | | {left} |"]
    for step in data["waterfall"]:
        left -= step["dropped"]
        lines.append(f"| {step['step']} | {step['dropped']} | {left} |")
    if data["temperatures"]:
        lines += [
            "",
            "## Temperature schedule\n",
            "| temperature | written | kept | kept share |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {t['temperature']:g} | {t['written']} | {t['kept']} | "
            + (f"{t['kept'] / t['written']:.1%} |" if t["written"] else "– |")
            for t in data["temperatures"]
        ]
    if data["diversity"]:
        lines += ["", "## Diversity of the kept prompts\n", *diversity_lines(data["diversity"])]
    if data["notes"]:
        lines += ["", "Short of the target: " + "; ".join(data["notes"]) + "."]
    return "\n".join(lines) + "\n"


def check_kept(kept: int, config: SynthConfig, notes: list[str], report: Path) -> None:
    """Raise `QuotaShortfall` (exit code 3) where fewer than `min_kept` of `n` prompts were kept."""
    needed = math.ceil(config.min_kept * config.n - 1e-9)
    if kept < needed:
        short = f" ({'; '.join(notes)})" if notes else ""
        raise QuotaShortfall(
            f"synth kept {kept} of {config.n} prompts, short of min_kept {config.min_kept:g} ({needed} prompts)"
            f"{short}; the prompts and the report are written: {report}"
        )


def write_output(result: SynthResult, output: Path, include_seeds: bool) -> tuple[Path, Path]:
    """Write the prompts file (seeds first, if included) and its report; returns (prompts, report.md)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = (seed_rows(result.seeds) if include_seeds else []) + result.rows
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    md, js = report_files(output)
    data = summary(result, output)
    atomic_write(js, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8"))
    atomic_write(md, lambda tmp: tmp.write_text(markdown(data), encoding="utf-8"))
    return output, md


async def synthesize_async(
    config: SynthConfig,
    output: Path,
    *,
    seeds: PromptsConfig | None = None,
    constitution: str | None = None,
    writer: Any = None,
    cache: str | None = None,
    on_round: Any = None,
) -> SynthResult:
    """Run a synthesis job and write its files. `writer` is a ChatModel to use (not closed here); by default the
    config's writer is built, with the call cache at `cache`."""
    from charter.providers import CallCache, get_model

    loaded = load_prompts(config.seeds or seeds or PromptsConfig(bundled=True)).rows
    if not loaded:
        from charter.errors import ConfigError

        raise ConfigError("synth: no seed prompts")
    const = load_constitution(config.constitution or constitution or "harmless")
    own = writer is None
    if own:
        role = config.writer
        writer = get_model(role.backend(), cache=CallCache(Path(cache).expanduser()) if cache else None, role="synth")
    try:
        result = await Synthesizer(config, loaded, const, writer, on_round=on_round).run()
    finally:
        if own:
            await writer.aclose()
    write_output(result, output, config.include_seeds)
    return result


@public
def synthesize(
    config: ConfigArg[SynthConfig],
    output: str | Path | None = None,
    *,
    seeds: PromptsConfig | None = None,
    constitution: str | None = None,
    writer: ChatModel | None = None,
    cache: str | None = None,
    on_round: Callable[[dict[str, int]], Any] | None = None,
) -> SynthResult:
    """Synthesize prompts as `config` says and write them, with their report, to `output`.

    Beside the prompts file, NAME.synth.md and NAME.synth.json give the achieved mix against the target and the
    filter waterfall.

    Args:
        config: The synthesis settings (seeds, methods, target size and mix, writer model, filters): a
            `SynthConfig`, a dict of its fields, or a synth config YAML file (relative seed paths resolve against it).
        output: The prompts file (JSONL) to write; None uses `config.output`, else `synth/prompts.jsonl`.
        seeds: The seed prompts when `config.seeds` is unset; None uses the bundled prompts.
        constitution: The constitution when `config.constitution` is unset; None uses `harmless`.
        writer: A `ChatModel` to write with instead of `config.writer` (not closed here).
        cache: The call cache's SQLite file for the writer built from `config.writer`; None caches nothing.
        on_round: Called after each round with the prompts kept so far per bucket.

    Returns:
        The kept prompts as output rows, the seeds, the target and achieved mix, the filter waterfall, and the calls,
        candidates and seconds it took.

    Raises:
        ConfigError: There are no seed prompts, the seed source is unreadable or malformed, `config.mix` names an
            unknown bucket, or the writer's model settings are unusable.
        ConstitutionError: The constitution is neither a bundled name nor a valid constitution file.
        UnknownModel: The writer's model string names no known provider.
        MissingAPIKey: The variable holding the writer's key is unset.
        MissingExtra: A package the filters need (the `synth` extra) or the writer's provider needs is not
            installed.
        FatalProviderError: A provider error every later call would share (authentication, an unknown model).
        QuotaShortfall: Fewer prompts were kept than `config.min_kept` of `config.n` (the files are written).
        ArgumentError: An argument is of the wrong type.
    """
    config = config_from(SynthConfig, config, "config", load_synth_config)
    target = Path(output or config.output or "synth/prompts.jsonl")
    run = synthesize_async(
        config, target, seeds=seeds, constitution=constitution, writer=writer, cache=cache, on_round=on_round
    )
    result = asyncio.run(run)
    check_kept(sum(result.achieved.values()), config, result.notes, report_files(target)[0])
    return result
