"""The run's prompt set: kept in line with its source (`prompts.on_change`). Reading prompts is `charter.prompts`."""

from __future__ import annotations

from typing import Any

from charter.prompts import PromptsConfig, PromptSet, load_prompts, prompt_id
from charter.runs.items import keep_prompts, put_prompts, stored_prompts

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
