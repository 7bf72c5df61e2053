"""Models and tokenizers for the trainers: model aliases, the device, chat templates, padding, the policy, and LoRA
through peft (the adapter config of a `lora:` section, for a sequence classifier or a causal LM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from charter.errors import ConfigError, TrainingError
from charter.providers.embeddings import MINILM_ALIASES, minilm_path
from charter.training.config import LoraSettings

Device = Literal["auto", "cpu", "cuda"]

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


def short_error(exc: Exception) -> str:
    """An exception's message on one line, cut to 200 characters: for one-line errors from deep inside a library."""
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def load_tokenizer(path: str, model_name: str) -> Any:
    """The tokenizer of a model folder or Hub id, with a one-line error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise TrainingError(
            f"{model_name}: no tokenizer could be loaded ({type(exc).__name__}: {short_error(exc)})"
        ) from None


def load_policy(model_name: str, chat_template: str | None) -> tuple[Any, Any, str]:
    """A causal LM to train (float32), its tokenizer (pad token set, chat template checked) and its folder."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model(model_name)
    tokenizer = load_tokenizer(path, model_name)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except Exception as exc:
        raise TrainingError(
            f"{model_name}: cannot be loaded as a causal LM ({type(exc).__name__}: {short_error(exc)})"
        ) from None
    ensure_pad_token(tokenizer, model)
    apply_chat_template_setting(tokenizer, chat_template, model_name, conversational=True)
    return model, tokenizer, path


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


def trainer_tokenizer(kwargs: Mapping[str, Any], who: str) -> Any:
    """The tokenizer a trainer hands its callbacks (`processing_class`; a processor's own tokenizer)."""
    tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
    if tokenizer is None:
        raise ConfigError(f"{who}: the trainer gave no tokenizer (processing_class)")
    return getattr(tokenizer, "tokenizer", tokenizer)  # a processor holds its tokenizer


def _encode(tokenizer: Any, prompt: Sequence[Mapping[str, str]]) -> Any:
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, return_tensors="pt")
        return ids if not isinstance(ids, Mapping) else ids["input_ids"]
    text = "\n\n".join(m["content"] for m in prompt)
    return tokenizer(text, return_tensors="pt")["input_ids"]


def greedy_answers(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[Mapping[str, str]]], max_new_tokens: int
) -> list[str]:
    """The policy's greedy answers to conversations of `{role, content}` messages, one at a time, in eval mode (the
    model's training mode restored after)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for prompt in prompts:
                ids = _encode(tokenizer, prompt).to(model.device)
                generated = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
                out.append(tokenizer.decode(generated[0, ids.shape[1] :], skip_special_tokens=True).strip())
    finally:
        if was_training:
            model.train()
    return out
