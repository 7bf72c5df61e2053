"""TRL arguments: the settings every charter trainer starts from, those chosen by device, the user's `trl:` fields on
top, and the checkpoint to resume from; and a `trl:` section checked against TRL's own config class when the config
loads, before anything is read or loaded.

Each key must be a field of the class (DPOConfig, RewardConfig, GRPOConfig, RLOOConfig, OnlineDPOConfig) and each
value of the field's type as the dataclass annotates it (Optional, unions, literals, lists and dicts as pydantic reads
them; an `Enum | str` field takes the enum's values; a field with `choices` in its metadata, as transformers' argument
parser reads them, takes those). Every bad field is an error at its own key, so the loaders report each with its file,
line and column. Without TRL installed nothing is checked here: training then names the extra to install.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import json
import logging
import os
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, LiteralString, Union

from pydantic import AfterValidator, ConfigDict, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from charter.errors import ConfigError
from charter.training.parallel import is_main_process

log = logging.getLogger(__name__)


def checkpointing_args(out: Path | str, seed: int, logging_steps: int, save_steps: int) -> dict[str, Any]:
    """The TRL/Trainer settings every charter trainer shares: its output folder and seed, checkpoints every
    `save_steps` (the last two kept, to resume from), no reporting, no progress bar, no dataloader workers."""
    return {
        "output_dir": str(out),
        "logging_steps": logging_steps,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 2,
        "report_to": "none",
        "seed": seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def offline_args(out: Path, seed: int) -> dict[str, Any]:
    """The settings the offline trainers (reward model, DPO) share: one epoch, a log line every 10 steps, a
    checkpoint every 100, no evaluation during training."""
    return {
        **checkpointing_args(out, seed, logging_steps=10, save_steps=100),
        "num_train_epochs": 1,
        "eval_strategy": "no",
    }


def online_args(out: Path | str, seed: int) -> dict[str, Any]:
    """The settings the online trainers (GRPO, RLOO, online DPO) share: a log line every step, a checkpoint every 50."""
    return checkpointing_args(out, seed, logging_steps=1, save_steps=50)


def cpu_args(device: str) -> dict[str, Any]:
    """On CPU, the CPU used and no bf16 autocast (TRL's default is bf16=True; it made a DPO step ~8x slower)."""
    return {"bf16": False, "use_cpu": True} if device == "cpu" else {}


def device_defaults(device: str, cpu_batch: int, cuda_batch: int) -> dict[str, Any]:
    """TRL/Trainer settings chosen by device (`cpu_args` on CPU). Gradient checkpointing only recomputes the forward
    pass for memory a small model does not need."""
    import torch

    if device == "cuda":
        return {
            "bf16": torch.cuda.is_bf16_supported(),
            "fp16": False,
            "per_device_train_batch_size": cuda_batch,
            "per_device_eval_batch_size": cuda_batch,
            "activation_checkpointing": False,
        }
    return {
        **cpu_args(device),
        "fp16": False,
        "per_device_train_batch_size": cpu_batch,
        "per_device_eval_batch_size": cpu_batch,
        "activation_checkpointing": False,
        "dataloader_pin_memory": False,
    }


#: Trainer fields transformers renamed (old name: new name); the old name still works where the new one is unset.
RENAMED = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def build_trl_config(cls: type, base: dict[str, Any], overrides: dict[str, Any], where: str) -> Any:
    """A TRL config from our defaults with the user's `trl:` fields on top (`where`: that section's key path, as
    `dpo.trl`). The config checked the fields' names and types when it loaded (`charter.training.args`); a
    field of the other online trainer's config, or settings TRL refuses together, are one-line errors here, before
    any model loads."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown {cls.__name__} field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
        )
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # trainers ping the Hub on start otherwise
    # transformers reads a deprecated name only where its new name is unset: our default under the new name would
    # silently undo the user's setting under the old one
    base = {k: v for k, v in base.items() if not any(k == new and old in overrides for old, new in RENAMED.items())}
    try:
        return cls(**{**base, **overrides})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


#: A checkpoint folder as transformers names it (`checkpoint-N`, N its global step).
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
#: What transformers writes last into a checkpoint (Trainer._save_checkpoint): a folder without it was cut short.
STATE_FILE = "trainer_state.json"


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete `checkpoint-N` folder to resume from, if a previous run left one.

    A newer folder that is incomplete (the process was killed while saving it: no readable trainer_state.json,
    which transformers writes last) is set aside, renamed `incomplete-checkpoint-N` (never deleted, and out of reach
    of transformers' checkpoint rotation), with one warning naming it and what training starts from instead."""
    if not output_dir.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), path) for path in output_dir.iterdir() if (m := CHECKPOINT.fullmatch(path.name))),
        reverse=True,
    )
    incomplete: list[Path] = []
    for _, folder in found:
        if not folder.is_dir():
            continue
        if checkpoint_step(folder) is not None:
            _set_aside(incomplete, folder)
            return str(folder)
        incomplete.append(folder)
    _set_aside(incomplete, None)
    return None


def checkpoint_step(folder: str | Path) -> int | None:
    """The global step a checkpoint folder saved, as its trainer_state.json says; None for an incomplete folder."""
    try:
        state = json.loads((Path(folder) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _set_aside(incomplete: list[Path], resumed: Path | None) -> None:
    """Rename the incomplete checkpoints `incomplete-checkpoint-N` (the main process) and say so in one line."""
    if not incomplete or not is_main_process():
        return
    moved = []
    for folder in incomplete:
        target, n = folder.with_name(f"incomplete-{folder.name}"), 1
        while target.exists():  # set aside before: keep that one too
            n += 1
            target = folder.with_name(f"incomplete-{folder.name}.{n}")
        folder.rename(target)
        moved.append(f"{folder.name} (set aside as {target.name})")
    then = f"resuming from {resumed.name}" if resumed is not None else "starting from the beginning"
    log.warning(
        f"{incomplete[0].parent}: incomplete checkpoint{'s' if len(moved) > 1 else ''} {', '.join(moved)}, without a "
        f"readable {STATE_FILE} (saving was cut short); {then}"
    )


#: A function that imports and returns one of TRL's config classes (imported only when a `trl:` section has fields).
TRLClass = Callable[[], type]
#: Fields whose annotation is narrower than what TRL documents and takes (class name, field): their type as TRL
#: reads them. TRL 1.16 annotates OnlineDPOConfig.beta `list[float]`; its docstring and trainer take one float too.
WIDER: dict[tuple[str, str], Any] = {("OnlineDPOConfig", "beta"): float | list[float]}


def dpo_config() -> type:
    """TRL's DPOConfig."""
    from trl import DPOConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    return DPOConfig


def reward_config() -> type:
    """TRL's RewardConfig."""
    from trl import RewardConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    return RewardConfig


def grpo_config() -> type:
    """TRL's GRPOConfig."""
    from trl import GRPOConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    return GRPOConfig


def rloo_config() -> type:
    """TRL's RLOOConfig."""
    from trl import RLOOConfig  # pyright: ignore[reportPrivateImportUsage] - TRL exports it lazily

    return RLOOConfig


def online_dpo_config() -> type:
    """TRL's OnlineDPOConfig, from `trl.experimental` (whose warning on import is for those who import it: charter
    pins the TRL it runs, and its users cannot act on the warning, which came before a config's errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        from trl.experimental.online_dpo import OnlineDPOConfig

    return OnlineDPOConfig


#: The TRL classes whose sections the config being validated does not train (see `unchecked`).
_UNTRAINED: ContextVar[frozenset[TRLClass]] = ContextVar("untrained_trl_classes", default=frozenset())


@contextmanager
def unchecked(classes: frozenset[TRLClass]) -> Iterator[None]:
    """While validating a config that does not train with these classes (a run config whose `stages` leave the
    section out): their `trl:` sections are kept as given, not checked, and TRL is not imported for them (importing
    it costs seconds of CPU). A load whose stages train with a class checks its section, before anything runs."""
    token = _UNTRAINED.set(classes)
    try:
        yield
    finally:
        _UNTRAINED.reset(token)


def checked_trl_fields(
    fields: dict[str, Any], classes: Sequence[TRLClass], own: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`fields` checked against TRL's config class (or classes, where the trainer is chosen later: a key known to
    any of them, of the type the first that knows it gives); returns them with their values as validated
    (`"1e-5"` read as a number). `own`: TRL fields that charter sets from its own settings, each with what to set
    instead. Raises pydantic's ValidationError with one error per bad field, at its key. Inside `unchecked` for
    these classes, `fields` are returned as they are."""
    if classes and all(load in _UNTRAINED.get() for load in classes):
        return dict(fields)
    refused: list[InitErrorDetails] = [
        {"type": _said("trl_own", message), "loc": (key,), "input": fields[key]}
        for key, message in (own or {}).items()
        if key in fields
    ]
    try:
        found = [load() for load in classes] if fields else []
    except ImportError:  # the train extra is missing: training says which to install
        found = []
    checked, errors = dict(fields), refused
    for key, value in fields.items() if found else ():
        if key in (own or {}):
            continue
        owner = next((cls for cls in found if key in _field_names(cls)), None)
        if owner is None:
            errors.append(_unknown(key, value, found))
            continue
        try:
            checked[key] = _adapter(owner, key).validate_python(value)
        except ValidationError as exc:
            errors += [_at(key, err) for err in exc.errors()]
    if errors:
        raise ValidationError.from_exception_data("trl", errors)
    return checked


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init)


def _unknown(key: str, value: Any, classes: list[type]) -> InitErrorDetails:
    known = sorted(set().union(*(_field_names(cls) for cls in classes)))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    names = " or ".join(cls.__name__ for cls in classes)
    return {"type": _said("trl_field", f"unknown {names} field{hint}"), "loc": (key,), "input": value}


def _at(key: str, err: Any) -> InitErrorDetails:
    """A field's error located at its key (pydantic's own type and message, or a check's message as it is)."""
    if err["type"] == "value_error":
        message = str(err["ctx"]["error"])
        return {"type": _said("trl_value", message), "loc": (key, *err["loc"]), "input": err["input"]}
    found: InitErrorDetails = {"type": err["type"], "loc": (key, *err["loc"]), "input": err["input"]}
    if "ctx" in err:
        found["ctx"] = err["ctx"]
    return found


def _said(kind: LiteralString, message: str) -> PydanticCustomError:
    """An error whose message is `message` as it is (braces in a value are not a template's)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


@functools.cache
def _adapter(cls: type, name: str) -> TypeAdapter:
    """The check of one field: its annotation, with its enum values or `choices` where it has them."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    annotation: Any = _hints(cls).get(name, field.type if not isinstance(field.type, str) else Any)
    annotation = WIDER.get((cls.__name__, name), annotation)
    allowed = _allowed(annotation, field.metadata.get("choices"))
    if allowed is not None:
        annotation = Annotated[annotation, AfterValidator(functools.partial(_one_of, allowed))]
    try:
        try:
            return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
        except PydanticUserError:  # a dataclass or model with a config of its own
            return TypeAdapter(annotation)
    except Exception:  # a type pydantic cannot check: any value, left to TRL
        return TypeAdapter(Any)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation naming what the module imports only for type checkers
        return {}


def _allowed(annotation: Any, choices: Any) -> tuple[str, ...] | None:
    """The strings a field takes where it names them: its `choices`, or the values of the enum a `E | str` takes."""
    if choices is not None:
        return tuple(str(c) for c in choices)
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else ()
    enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
    if enums and str in members:
        return tuple(str(item.value) for kind in enums for item in kind)
    return None


def _one_of(allowed: tuple[str, ...], value: Any) -> Any:
    text = value.value if isinstance(value, enum.Enum) else value
    if not isinstance(text, str) or text in allowed:
        return value
    close = [name for name in allowed if name.startswith(text)] or difflib.get_close_matches(text, allowed, 1, 0.6)
    listed = ", ".join(allowed) if len(allowed) <= 12 else f"{len(allowed)} names"
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"{text!r} is not one of {listed}{hint}")
