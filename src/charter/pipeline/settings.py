"""The settings of a run config as the store, the report and the card name them: its model roles, the label each
model goes by, the fingerprints of its items and `DatasetSettings`; and a run made by an earlier release, brought up
to these settings when it resumes (`upgrade_run`).

Its store's tables are upgraded when the store opens (charter.runs.store). What remains is what the store cannot
know by itself: how this release names the settings that made its items. Since fingerprint scheme 2 a model served
away from its provider's own API is named with its normalised URL, so the items of a run made before are moved to
the fingerprints that name their settings now (computed from the config the run last ran with), and the call
cache is told which endpoint answered that run's calls from before endpoints were recorded (`CallCache.claim`).
Nothing is made again and no call is repeated: the same command resumes where the old release stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from charter.checklist.check import checklist_fingerprint_fields
from charter.checklist.store import checklists_fingerprint
from charter.constitutions import Constitution
from charter.critique.chain import chain_fingerprint
from charter.errors import CharterError, ConfigError, MissingAPIKey
from charter.judge.pairwise import judge_fingerprint
from charter.judge.panel import panel_label
from charter.pipeline.config import RoleConfig, RunConfig
from charter.preference.manifest import ConstitutionInfo, DatasetSettings
from charter.preference.pairs import samples_fingerprint
from charter.providers import CallCache, parse_model_string
from charter.providers.endpoints import served_id
from charter.records import Fingerprints, fingerprint
from charter.runs.history import rename_fingerprints
from charter.runs.store import RunStore
from charter.yamlio import dotted, load_yaml, locate


def run_roles(config: RunConfig) -> dict[str, RoleConfig]:
    """The model roles a run uses, by name (the synth stage's writer where the run synthesizes)."""
    roles: dict[str, RoleConfig] = {"policy": config.policy, "critic": config.critic_role}
    members = config.judge.models
    roles.update({"judge": config.judge} if members is None else {f"judge {i}": m for i, m in enumerate(members, 1)})
    if "synth" in config.stages and config.synth is not None:
        roles["synth"] = config.synth.writer
    if config.checklist is not None and config.checklist.model is not None:
        roles["checklist"] = config.checklist.model
    return roles


def model_label(role: RoleConfig) -> str:
    """A role's model as fingerprints name it: its `served_id` (provider:name, and the normalised base URL when it
    is not its provider's own API, so another server makes new items), or for a local model its `model_id`, which
    adds the precision its weights run in when that is not float32 (bfloat16 changes outputs)."""
    spec = parse_model_string(role.model)
    if spec.provider == "local":
        return role.backend().model_id
    return served_id(f"{spec.provider}:{spec.name}", role.endpoint())


def judge_model_label(config: RunConfig) -> str:
    """The run's judge as fingerprints name it: its model's label, or a panel's members' labels (and weights)."""
    judge = config.judge
    if judge.models is None:
        return model_label(judge)
    return panel_label([model_label(m) for m in judge.models], judge.weights)


def run_fingerprints(config: RunConfig, constitution: Constitution) -> Fingerprints:
    """The fingerprints of a config's settings: chains, samples, judgments and the dataset."""
    policy, critic = model_label(config.policy), model_label(config.critic_role)
    judge_model = judge_model_label(config)
    critique = (
        chain_fingerprint(
            config.critique, constitution, policy, config.policy.params, critic, config.critic_role.params, config.seed
        )
        if "revision" in config.pairs.kinds
        else None
    )
    samples = (
        samples_fingerprint(constitution, policy, config.samples_params(), config.pairs.k)
        if "samples" in config.pairs.kinds
        else None
    )
    checklist = checklist_settings(config, constitution)
    judge = judge_fingerprint(config.judge.settings(), judge_model, constitution, config.seed)
    if checklist is not None and config.judge.mode_entry.needs_context:
        assert config.checklist is not None
        fields = checklist_fingerprint_fields(config.checklist.aggregation, checklist)
        judge = fingerprint({"judge": judge, **fields})
    data = fingerprint(
        {
            "critique": critique,
            "samples": samples,
            "judge": judge,
            "pairs": config.pairs.model_dump(mode="json"),
            # a filter added unset leaves the fingerprint as it was, so existing datasets stay current
            "filters": config.filters.model_dump(
                mode="json", exclude={k for k in ("length_balance", "diversity") if getattr(config.filters, k) is None}
            ),
            **({"checklist": checklist} if checklist is not None else {}),
        }
    )
    return Fingerprints(critique=critique, samples=samples, judge=judge, dataset=data, checklist=checklist)


def checklist_settings(config: RunConfig, constitution: Constitution) -> str | None:
    """The fingerprint of the run's checklists (None without a `checklist:` section)."""
    section = config.checklist
    if section is None:
        return None
    writer = model_label(section.model) if section.model is not None else None
    return checklists_fingerprint(section, constitution, writer, config.judge.settings(), config.seed)


def dataset_settings(config: RunConfig, constitution: Constitution, run_id: str, created_at: str) -> DatasetSettings:
    """Every setting that shapes this config's rows, for the store, the report and the card."""
    fingerprints = run_fingerprints(config, constitution)
    judge = config.judge.settings()
    return DatasetSettings(
        run_id=run_id,
        created_at=created_at,
        constitution=ConstitutionInfo(
            name=constitution.name,
            version=constitution.version,
            hash=constitution.hash,
            principles=constitution.principle_ids,
        ),
        fingerprints=fingerprints,
        models={
            "policy": model_label(config.policy),
            "critic": model_label(config.critic_role),
            "judge": judge_model_label(config),
            **(
                {"checklist": model_label(config.checklist.model)}
                if config.checklist and config.checklist.model
                else {}
            ),
        },
        sampling={
            "policy": config.policy.params,
            "critic": config.critic_role.params,
            "judge": judge.sampling(),
            **({"samples": config.samples_params()} if fingerprints.samples else {}),
        },
        critique=config.critique if fingerprints.critique else None,
        judge=judge,
        pairs=config.pairs,
        filters=config.filters,
        seed=config.seed,
        checklist=config.checklist,
    )


def role_key(config: RunConfig, name: str) -> tuple[str | int, ...]:
    """Where a role of `run_roles` sits in a run config (the critic is the policy's section when it has none)."""
    if name.startswith("judge "):
        return ("judge", "models", int(name.split()[1]) - 1)
    if name == "critic" and config.critic is None:
        return ("policy",)
    if name == "checklist":
        return ("checklist", "model")
    return ("synth", "writer") if name == "synth" else (name,)


def key_place(config: RunConfig, name: str, source: str | Path | None) -> str:
    """Where to name another key variable for a role: `judge.api_key_env`, with the file and line of the role's
    `api_key_env` (else of its `model`) in `source`, the run config file, where it can be read."""
    key = role_key(config, name)
    place = f"{dotted(key)}.api_key_env"
    if source is None:
        return place
    try:
        _, positions = load_yaml(source)
    except ConfigError:
        return f"{place} in {source}"
    found = positions.get((*key, "api_key_env")) or positions.get((*key, "model")) or locate(positions, key)
    return f"{place} at {source}:{found[0]}" if found else f"{place} in {source}"


def check_credentials(config: RunConfig, source: str | Path | None = None) -> None:
    """Construct each remote backend once: a missing API key (or one that would go to the wrong host) fails here,
    before any call, naming the role and where its key variable is set (`source`: the run config file); and each
    scripted one (an unknown script name), as cheap. Local models are loaded later."""
    for name, role in run_roles(config).items():
        try:
            role.check_backend()
        except MissingAPIKey as exc:
            where = f"the {name} ({role.model}; another variable: {key_place(config, name, source)})"
            raise MissingAPIKey(exc.variable, exc.provider, exc.host, role=where) from None


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
