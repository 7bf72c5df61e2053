"""The run's prompt set: kept in line with its source (`prompts.on_change`), or made by the run's `synth` stage (the
run's `prompts` are the seeds; the synthesized set becomes the prompt set). Reading prompts is `charter.prompts`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from charter.constitutions import Constitution, load_constitution
from charter.errors import ConfigError
from charter.pipeline.config import RunConfig
from charter.prompts import PromptsConfig, PromptSet, load_prompts, prompt_id
from charter.providers.base import ChatModel
from charter.runs.files import RunFiles
from charter.runs.items import keep_prompts, put_prompts, stored_prompts
from charter.runs.store import RunStore
from charter.synth.api import check_kept, report_files, write_output
from charter.synth.generate import Synthesizer, synth_fingerprint

__all__ = ["PromptSet", "PromptsConfig", "load_prompts", "prompt_id", "sync_prompt_set"]


def sync_prompt_set(store: Any, config: PromptsConfig, loaded: PromptSet | None) -> list[str]:
    """Bring the run's prompt set in line with its source as `on_change` says; returns notes for the user.

    The first start stores the loaded set. On a resume the source is compared with the set in use: `keep`
    says what differs, `extend` adds the new prompts, `replace` adds them and takes the missing ones out of use
    (their items stay in the store).
    """
    if not store.count("prompts"):
        assert loaded is not None
        put_prompts(store, loaded.rows)
        store.set_meta(prompt_counts=loaded.counts)
        return []
    if loaded is None:
        return []
    in_use = {p.prompt_id for p in stored_prompts(store)}
    source = {p.prompt_id for p in loaded.rows}
    new, gone = [p for p in loaded.rows if p.prompt_id not in in_use], in_use - source
    if not new and not gone:
        return []
    if config.on_change == "keep":
        return [
            f"prompts: the source has {len(new)} prompt(s) the run does not and lacks {len(gone)} of its "
            f"{len(in_use)}; the run keeps its prompt set (prompts.on_change: extend adds the new ones, "
            "replace follows the source)"
        ]
    put_prompts(store, new)
    notes = [f"prompts: added {len(new)} new prompt(s) from the source"]
    if config.on_change == "replace":
        removed = keep_prompts(store, source)
        notes.append(
            f"prompts: {removed} prompt(s) no longer in the source left the set (their items stay in the "
            "store, out of the dataset)"
        )
    store.set_meta(prompt_counts=loaded.counts)
    return notes


log = logging.getLogger("charter.synth")


def seeds_config(config: RunConfig) -> PromptsConfig:
    assert config.synth is not None
    return config.synth.seeds or config.prompts


def check_synth(config: RunConfig) -> None:
    """Before anything is written: the seeds load and are not empty."""
    seeds = load_prompts(seeds_config(config))
    if not seeds.rows:
        raise ConfigError(f"synth: no usable seed prompts (counts: {seeds.counts})")


def output_prompts(config: RunConfig, files: RunFiles) -> PromptsConfig:
    """How the run reads the synthesized set: the run's length limits, its `on_change`."""
    p = config.prompts
    return PromptsConfig(
        path=str(files.synth_prompts_path),
        max_prompt_tokens=p.max_prompt_tokens,
        too_long=p.too_long,
        on_change=p.on_change,
    )


async def synth_stage(
    config: RunConfig,
    constitution: Constitution,
    store: RunStore,
    writer: ChatModel,
    on_round: Callable[[dict[str, int]], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Synthesize (or reuse the file when nothing it depends on changed), then bring the run's prompt set in line
    with it. Returns a note and the stage counts."""
    synth = config.synth
    assert synth is not None
    files = RunFiles(store.run_dir)
    output = files.synth_prompts_path
    seeds = load_prompts(seeds_config(config)).rows
    const = constitution if synth.constitution is None else load_constitution(synth.constitution)
    fp = synth_fingerprint(synth, writer.served_id, const, seeds)
    _, report = report_files(output)
    earlier = json.loads(report.read_text(encoding="utf-8")) if report.exists() and output.exists() else None
    if earlier is not None and earlier.get("fingerprint") == fp:
        note = f"synthesized prompts unchanged ({earlier['kept']} kept); reusing {output}"
        counts = {"kept": earlier["kept"], "calls": 0}
        check_kept(earlier["kept"], synth, earlier.get("notes") or [], report_files(output)[0])
    else:
        result = await Synthesizer(synth, seeds, const, writer, on_round=on_round).run()
        write_output(result, output, synth.include_seeds)
        counts = {
            "kept": sum(result.achieved.values()),
            "calls": result.calls,
            "candidates": result.candidates,
            **{f"dropped {k}": v for k, v in result.waterfall.items()},
        }
        note = f"kept {counts['kept']} of {synth.n} prompts from {result.calls} calls; report {report_files(output)[0]}"
        for short in result.notes:
            log.warning(f"synth short of its target: {short}")
        check_kept(counts["kept"], synth, result.notes, report_files(output)[0])
    loaded = load_prompts(output_prompts(config, files))
    if not loaded.rows:
        raise ConfigError(f"{output}: the synth stage left no usable prompts")
    for line in sync_prompt_set(store, output_prompts(config, files), loaded):
        log.warning(line)
    return note, counts
