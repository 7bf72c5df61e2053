"""The one tiny tokenizer and tiny model of the test suite, built offline, and synthetic preference data for
fast tests with the real TRL trainers."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = [
    "weather",
    "homework",
    "recipe",
    "bus",
    "book",
    "python",
    "garden",
    "gift",
    "museum",
    "bike",
    "taxes",
    "music",
    "travel",
    "coffee",
    "painting",
    "chess",
]
POLITE = [
    "I would be glad to help with the {t}, here is a careful and friendly answer",
    "Thank you for asking about the {t}, I am happy to help, please see below",
    "Of course, happy to help you with the {t}, kindly find some suggestions",
]
RUDE = [
    "Ugh the {t} figure it out yourself",
    "Whatever the {t} is boring stop asking me",
    "No the {t} is your problem not mine idiot",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def preference_rows(n: int, seed: int = 0, topics: list[str] | None = None) -> list[dict]:
    """Pairs where the polite answer is chosen; p_chosen varies like a judge's confidence."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = rng.choice(topics or TOPICS)
        p = round(rng.uniform(0.6, 0.95), 3)
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"Can you help me with the {t} please"}],
                "chosen": [{"role": "assistant", "content": rng.choice(POLITE).format(t=t)}],
                "rejected": [{"role": "assistant", "content": rng.choice(RUDE).format(t=t)}],
                "p_chosen": p,
                "margin": round(2 * p - 1, 3),
                "pair_id": f"pair-{seed}-{i}",
                "constitution_name": "polite",
                "judge_model": "scripted:cai",
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    """A word-level tokenizer over the synthetic vocabulary and every printable ASCII character, built offline
    (anything else is <unk>, which the tiny models do not mind)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = set()
    for template in POLITE + RUDE:
        words.update(template.replace(",", " ,").split())
    words.update(TOPICS + ["Can", "you", "help", "me", "with", "the", "please", "user", "assistant", "system", ","])
    words.update(chr(c) for c in range(33, 127))
    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(w for w in words if w not in specials))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = chat_template
    return tok


def tiny_causal_lm(seed: int = 0, chat_template: str | None = CHAT_TEMPLATE):
    """A random 2-layer Llama (hidden 32) and the tiny tokenizer, in memory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    return LlamaForCausalLM(config), tok


def tiny_llama(folder: Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    """The tiny model and its tokenizer, saved as a model folder."""
    model, tok = tiny_causal_lm(chat_template=chat_template)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if chat_template is None:
        (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder
