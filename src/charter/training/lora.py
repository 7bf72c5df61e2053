"""LoRA through peft: the adapter config of a `lora:` section, for a sequence classifier or a causal LM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from charter.training.config import LoraSettings

#: The model a LoRA adapter trains: a sequence classifier (a reward model) or a causal LM (a policy).
LoraTask = Literal["SEQ_CLS", "CAUSAL_LM"]


def peft_config(lora: LoraSettings | None, task: LoraTask, modules_to_save: Sequence[str] = ()) -> Any:
    """peft's LoraConfig for the settings (None without a `lora:` section: every weight trains).

    Args:
        lora: The `lora:` section, or None.
        task: `SEQ_CLS` for a reward model, `CAUSAL_LM` for a policy.
        modules_to_save: Modules trained in full beside the adapters (a reward model's score head).
    """
    if lora is None:
        return None
    from peft import LoraConfig, TaskType

    extra: dict[str, Any] = {"modules_to_save": list(modules_to_save)} if modules_to_save else {}
    return LoraConfig(
        task_type=TaskType[task],
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        **extra,
    )
