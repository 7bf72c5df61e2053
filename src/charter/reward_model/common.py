"""What the reward-model and DPO wrappers share: model aliases, device and precision, TRL config
pass-through, chat templates, checkpoints to resume from."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from charter.errors import ConfigError, TrainingError
from charter.providers.embeddings import MINILM_ALIASES, minilm_path

Device = Literal["auto", "cpu", "cuda"]

#: Under OUTPUT_DIR while several processes train: the datasets every process reads (removed at the end).
PREPARED = ".prepared-data"

#: A chat template for tokenizers that have none (encoders such as MiniLM): "role: content" turns,
#: separated by the tokenizer's separator token (or a newline), wrapped in its CLS/BOS and SEP/EOS tokens.
PLAIN_CHAT_TEMPLATE = (
    "{%- if cls_token %}{{ cls_token }}{% elif bos_token %}{{ bos_token }}{% endif -%}"
    "{%- for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
    "{% if not loop.last %}{{ sep_token if sep_token else '\\n' }}{% endif %}{% endfor -%}"
    "{%- if add_generation_prompt %}{{ sep_token if sep_token else '\\n' }}assistant: "
    "{%- elif sep_token %}{{ sep_token }}{% elif eos_token %}{{ eos_token }}{% endif -%}"
)


def resolve_model(name: str) -> str:
    """A model name as a path or Hub id: `minilm-l6`, `smollm2-135m-instruct`, a folder, or a Hub id."""
    if name in MINILM_ALIASES:
        return str(minilm_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    try:
        from charter.providers.local import resolve_local_model
    except ImportError:
        return name
    return resolve_local_model(name)


def default_chat_template(model: str) -> str | None:
    """`plain` for the MiniLM alias (its tokenizer has no chat template), else the tokenizer's own."""
    return "plain" if model in MINILM_ALIASES else None


def pick_device(device: Device) -> str:
    """`auto` picks CUDA when available."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but torch sees no CUDA device")
    return device


def device_defaults(device: str, cpu_batch: int, cuda_batch: int) -> dict[str, Any]:
    """TRL/Trainer settings chosen by device. On CPU, bf16 autocast made a DPO step ~8x slower (TRL's
    default is bf16=True), and gradient checkpointing only recomputes the forward pass for memory a
    small model does not need."""
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
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "per_device_train_batch_size": cpu_batch,
        "per_device_eval_batch_size": cpu_batch,
        "activation_checkpointing": False,
        "dataloader_pin_memory": False,
    }


def build_trl_config(cls: type, base: dict[str, Any], overrides: dict[str, Any], section: str) -> Any:
    """A TRL config from our defaults with the user's `trl:` fields on top; unknown fields are one-line errors."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"{section}.trl: unknown {cls.__name__} field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
        )
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # trainers ping the Hub on start otherwise
    try:
        return cls(**{**base, **overrides})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}.trl: {exc}") from None


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest `checkpoint-N` folder to resume from, if a previous run left one."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None


def apply_chat_template_setting(tokenizer: Any, setting: str | None, model: str, conversational: bool) -> None:
    """Give the tokenizer the chat template asked for; without one, conversational data is an error."""
    if setting == "plain":
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    elif setting:
        path = Path(setting).expanduser()
        tokenizer.chat_template = path.read_text(encoding="utf-8") if path.is_file() else setting
    if conversational and not getattr(tokenizer, "chat_template", None):
        raise TrainingError(
            f"the tokenizer of {model} has no chat template, and the dataset is conversational: "
            "set chat_template: plain (role: content turns) or a Jinja template file"
        )


def ensure_pad_token(tokenizer: Any, model: Any | None = None) -> None:
    """Reuse EOS (or SEP) as padding where the tokenizer has no pad token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.sep_token
    if model is not None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id


def load_tokenizer(path: str, model_name: str) -> Any:
    """The tokenizer of a model folder or Hub id, with a one-line error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise TrainingError(
            f"{model_name}: no tokenizer could be loaded ({type(exc).__name__}: {_short(exc)})"
        ) from None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def is_main_process() -> bool:
    """Whether this is the process that writes (rank 0 under torchrun or `accelerate launch`, or the only one)."""
    return int(os.environ.get("RANK", "0")) == 0


def parallel_settings(args: Any) -> dict[str, int]:
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
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    if args.process_index == 0:
        shutil.rmtree(folder, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, written whole."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
