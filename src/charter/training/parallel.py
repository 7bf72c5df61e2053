"""Several training processes (torchrun, `accelerate launch`): this process's rank and the world size, who writes,
the batch each step saw, the datasets every process reads, and sums and barriers over the processes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from charter.errors import ConfigError

#: Under OUTPUT_DIR while several processes train: the datasets every process reads (removed at the end).
PREPARED = ".prepared-data"


class ParallelSettings(TypedDict):
    """How many processes trained and the batch each optimizer step saw (`parallel_settings`)."""

    world_size: int
    """Processes that trained (1 without torchrun or `accelerate launch`)."""
    per_device_batch_size: int
    """Training pairs per process in one forward pass."""
    gradient_accumulation_steps: int
    """Forward passes whose gradients one optimizer step sums."""
    effective_batch_size: int
    """Pairs one optimizer step saw: per-device batch x gradient accumulation x processes."""


def env_int(name: str, default: int, minimum: int) -> int:
    """A whole number from the environment variable `name` (`default` when unset or empty), at least `minimum`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number (set by torchrun or accelerate)") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw}: expected a whole number of at least {minimum}")
    return value


def rank() -> int:
    """This process's rank under torchrun or accelerate (0 otherwise); a `RANK` that is no rank is a `ConfigError`."""
    return env_int("RANK", 0, 0)


def world_size() -> int:
    """Processes in the distributed job (1 otherwise); a `WORLD_SIZE` below 1 or no number is a `ConfigError`."""
    return env_int("WORLD_SIZE", 1, 1)


def ranks() -> tuple[int, int]:
    """This process's rank and the processes in the job, from `RANK` and `WORLD_SIZE` (0 and 1 when unset); a rank
    not below a set `WORLD_SIZE` is a `ConfigError`."""
    this, world = rank(), world_size()
    if this >= world and "WORLD_SIZE" in os.environ:
        raise ConfigError(f"RANK={this}: expected a rank below WORLD_SIZE={world}")
    return this, world


def is_main_process() -> bool:
    """Whether this is the process that writes (rank 0 under torchrun or `accelerate launch`, or the only one)."""
    return int(os.environ.get("RANK", "0")) == 0


def parallel_settings(args: Any) -> ParallelSettings:
    """How many processes trained and the batch each optimizer step saw: per-device batch x gradient
    accumulation x processes."""
    return {
        "world_size": args.world_size,
        "per_device_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "effective_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
    }


def describe_parallel(training: Mapping[str, Any]) -> str:
    """One line: processes, per-device batch, accumulation and the effective batch size."""
    return (
        f"  {training['world_size']} process{'es' if training['world_size'] > 1 else ''} on {training['device']}, "
        f"batch {training['per_device_batch_size']} per device x {training['gradient_accumulation_steps']} "
        f"accumulation = effective batch {training['effective_batch_size']}, {training['global_step']} steps"
    )


def shared_datasets(args: Any, folder: Path, sets: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`datasets.Dataset`s of `sets`, each a named list of rows.

    With one process they live in memory. With several (torchrun, `accelerate launch`), the main process writes
    them under `folder` first and every process loads those files: TRL's tokenisation then runs once on the main
    process and the others read its cache files, and its precomputed reference log-probs land in one file every
    rank can open (an in-memory dataset would give each process its own temporary folder)."""
    import datasets

    if args.world_size <= 1:
        return {name: datasets.Dataset.from_list(rows) for name, rows in sets.items()}
    with args.main_process_first(local=False, desc="preparing the training data"):
        if args.process_index == 0:
            shutil.rmtree(folder, ignore_errors=True)
            for name, rows in sets.items():
                datasets.Dataset.from_list(rows).save_to_disk(str(folder / name))
        return {name: datasets.load_from_disk(str(folder / name)) for name in sets}


def finish_shared_datasets(args: Any, folder: Path) -> None:
    """Remove the files `shared_datasets` wrote, once every process is past training (and its evaluations)."""
    if args.world_size <= 1:
        return
    barrier()
    if args.process_index == 0:
        shutil.rmtree(folder, ignore_errors=True)


def barrier() -> None:
    """Wait for every process of a distributed job (nothing to wait for otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def sum_over_processes(value: float) -> float:
    """The sum of a value over the processes of a distributed job (the value itself otherwise)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item())


def sum_each_over_processes(values: list[float]) -> list[float]:
    """Each value summed over the processes of a distributed job, in one exchange (the values otherwise)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or not values:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]
