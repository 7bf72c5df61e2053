"""A run made by an earlier release, brought up to this one when it resumes.

Its store's tables are upgraded when the store opens (charter.runs.store). What remains is what the store cannot
know by itself: how this release names the settings that made its items. Since fingerprint scheme 2 a model served
away from its provider's own API is named with its normalised URL, so the items of a run made before are moved to
the fingerprints that name their settings now (computed from the config the run last ran with), and the call
cache is told which endpoint answered that run's calls from before endpoints were recorded (`CallCache.claim`).
Nothing is made again and no call is repeated: the same command resumes where the old release stopped.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from charter.constitutions import Constitution
from charter.errors import CharterError
from charter.pipeline.config import RunConfig
from charter.pipeline.settings import run_fingerprints, run_roles
from charter.providers import CallCache, parse_model_string
from charter.records import Fingerprints
from charter.runs.history import rename_fingerprints
from charter.runs.store import RunStore

#: 1: models named by their model string; 2: by provider:name and, away from the provider's own API, the
#: normalised base URL (`ChatModel.served_id`).
FINGERPRINT_SCHEME = 2
ROLES = ("policy", "critic", "judge")


def upgrade_run(store: RunStore, config: RunConfig, constitution: Constitution, cache: CallCache | None) -> list[str]:
    """Bring a stored run of an earlier fingerprint scheme to this one (nothing for a new or current store).
    Returns notes for the user."""
    scheme = store.meta("fingerprint_scheme")
    if scheme is not None and scheme >= FINGERPRINT_SCHEME:
        return []
    notes: list[str] = []
    before, stored = store.fingerprints(), store.run_config()
    if before is not None and stored:
        last = _last_config(stored, config)
        if last is None:
            notes.append(
                "the config this run last ran with no longer reads; items whose settings are named "
                "differently now are made again (the call cache answers the calls it holds)"
            )
        else:
            notes += _rename(store, before, run_fingerprints(last, constitution))
            notes += _claim(cache, last, store)
    store.set_meta(fingerprint_scheme=FINGERPRINT_SCHEME)
    return notes


def _last_config(stored: dict[str, Any], config: RunConfig) -> RunConfig | None:
    """The config the run last ran with, read by this release. Keys are not settings: a role's `api_key_env`, which
    this release may require where the earlier one sent its usual key, is taken from the current config."""
    data = dict(stored)
    for role in ROLES:
        current = getattr(config, role)
        if isinstance(data.get(role), dict) and current is not None and current.api_key_env:
            data[role] = {**data[role], "api_key_env": data[role].get("api_key_env") or current.api_key_env}
    try:
        return RunConfig.model_validate(data)
    except (ValidationError, CharterError):
        return None


def _rename(store: RunStore, before: Fingerprints, after: Fingerprints) -> list[str]:
    renamed = {
        old: new
        for old, new in (
            (before.critique, after.critique),
            (before.samples, after.samples),
            (before.judge, after.judge),
        )
        if old and new and old != new
    }
    if not renamed:
        return []
    moved = rename_fingerprints(store, renamed)
    store.set_meta(fingerprints=after)
    total = sum(moved.get(t, 0) for t in ("chains", "samples", "judgments"))
    return [
        f"upgraded a run made by an earlier release: {total} items moved to this release's settings "
        "fingerprints (a model's base URL is part of them now); nothing is made again"
    ]


def _claim(cache: CallCache | None, last: RunConfig, store: RunStore) -> list[str]:
    """Tell the cache which endpoint answered this run's models' calls from before endpoints were recorded."""
    if cache is None:
        return []
    notes = []
    for name, role in run_roles(last).items():
        try:
            endpoint = role.endpoint()
        except CharterError:
            continue
        if endpoint is None:
            continue
        spec = parse_model_string(role.model)
        warning = cache.claim(f"{spec.provider}:{spec.name}", endpoint.url, f"run {store.run_dir} ({name})")
        if warning:
            notes.append(warning)
    return notes


__all__ = ["FINGERPRINT_SCHEME", "upgrade_run"]
