"""A Llama-family model's weights as the decoder runs them (`Weights`): from a loaded `transformers` model, or read
straight from a checkpoint folder (`folder_is_readable` says which folders), each layer's projections fused."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter.providers.local_kernels import Linear, packing, transformers_rotary

if TYPE_CHECKING:
    import torch


@dataclass
class FusedLayer:
    """One decoder layer's projections concatenated (q/k/v, gate/up: one matrix product each instead of
    three and two), each product a `Linear`, and its norms as torch's fused RMSNorm (one kernel instead of
    eight small ones)."""

    qkv: Linear
    o: Linear
    gate_up: Linear
    down: Linear
    norm_in: Callable[[torch.Tensor], torch.Tensor]
    norm_post: Callable[[torch.Tensor], torch.Tensor]

    @classmethod
    def of(cls, layer: Any, packed: bool) -> FusedLayer:
        """From a `transformers` decoder layer, whose projections then work on views of the fused weights."""
        attn, mlp = layer.self_attn, layer.mlp
        qkv, qkv_bias = _concatenated((attn.q_proj, attn.k_proj, attn.v_proj))
        gate_up, gate_up_bias = _concatenated((mlp.gate_proj, mlp.up_proj))
        norms = [
            _rms_norm(norm.weight, norm.variance_epsilon)
            for norm in (layer.input_layernorm, layer.post_attention_layernorm)
        ]
        return cls(
            Linear(qkv, qkv_bias, packed),
            Linear.of(attn.o_proj, packed),
            Linear(gate_up, gate_up_bias, packed),
            Linear.of(mlp.down_proj, packed),
            *norms,
        )

    @classmethod
    def read(cls, take: Callable[[str], torch.Tensor | None], layer: str, eps: float, packed: bool) -> FusedLayer:
        """From a checkpoint's tensors (`take(name)`, None where absent) of the layer named `layer`."""
        import torch

        def fused(names: Sequence[str]) -> Linear:
            found = [take(f"{layer}.{n}.weight") for n in names]
            biases = [take(f"{layer}.{n}.bias") for n in names]
            weights = [w for w in found if w is not None]
            if len(weights) < len(found):
                raise KeyError(f"{layer}: a projection of {', '.join(names)} is missing")
            bias = None
            if any(b is not None for b in biases):
                bias = torch.cat([b if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(weights, biases)])
            return Linear(torch.cat(weights) if len(weights) > 1 else weights[0], bias, packed)

        found = [take(f"{layer}.{n}.weight") for n in ("input_layernorm", "post_attention_layernorm")]
        norms = [n for n in found if n is not None]
        if len(norms) < len(found):
            raise KeyError(f"{layer}: a norm is missing")
        return cls(
            fused(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
            fused(("self_attn.o_proj",)),
            fused(("mlp.gate_proj", "mlp.up_proj")),
            fused(("mlp.down_proj",)),
            *(_rms_norm(n, eps) for n in norms),
        )


def _concatenated(parts: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights (and biases, zeros where a part has none) of `nn.Linear` parts stacked into one product.
    The parts keep working on views of the stacked weight: no second copy in memory."""
    import torch

    weight = torch.cat([p.weight for p in parts]).detach()
    bias = None
    if any(p.bias is not None for p in parts):
        bias = torch.cat(
            [
                p.bias if p.bias is not None else torch.zeros(p.out_features, dtype=weight.dtype, device=weight.device)
                for p in parts
            ]
        ).detach()
    offset = 0
    for part in parts:
        part.weight.data = weight[offset : offset + part.out_features]
        offset += part.out_features
    return weight, bias


def _rms_norm(weight: torch.Tensor, eps: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """`LlamaRMSNorm` as torch's fused `rms_norm` (computed in float32, as the module does)."""
    import torch.nn.functional as F

    weight = weight.detach()

    def apply(hidden: torch.Tensor) -> torch.Tensor:
        return weight * F.rms_norm(hidden.float(), (hidden.shape[-1],), eps=eps).to(hidden.dtype)

    return apply


@dataclass
class Weights:
    """A Llama-family model as the decoder runs it: each layer's fused products and norms, the embedding, the
    rotary embedding, the activation, the final norm and the output product.

    From a loaded `transformers` model (`of_model`: its modules' memory, shared), or read straight from a
    checkpoint folder (`read`: config.json and safetensors), which leaves `transformers`' modeling code unimported
    (about 2 s of every process that loads the model) and gives the same values bit for bit (tests compare the two
    on tiny Llama and Qwen2 models and on the embedded one)."""

    layers: list[FusedLayer]
    embed: Callable[[torch.Tensor], torch.Tensor]
    rotary: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    """`(hidden, positions) -> (cos, sin)`, in the hidden states' dtype."""
    act: Callable[[torch.Tensor], torch.Tensor]
    norm: Callable[[torch.Tensor], torch.Tensor]
    head: Linear
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    hidden_size: int
    dtype: Any
    device: Any
    rotary_helper: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    """The model module's `apply_rotary_pos_emb` (None when read from a folder: the rotate-half kind)."""

    @classmethod
    def of_model(cls, model: Any, packed: bool) -> Weights:
        """A loaded `transformers` model's weights, shared (the fused products are views of them, unless packed);
        `DecoderUnavailable` where its modeling code lacks what the decoder calls (`transformers_rotary`)."""
        inner, config = model.model, model.config
        layers = list(inner.layers[: config.num_hidden_layers])
        attention = layers[0].self_attn
        rotary, helper = transformers_rotary(model)  # before the layers' weights are fused
        return cls(
            [FusedLayer.of(layer, packed) for layer in layers],
            inner.embed_tokens,
            rotary,
            layers[0].mlp.act_fn,
            inner.norm,
            Linear.of(model.lm_head, packed),
            config.num_attention_heads,
            config.num_key_value_heads,
            attention.head_dim,
            attention.scaling,
            config.hidden_size,
            model.dtype,
            model.device,
            helper,
        )

    @classmethod
    def read(cls, folder: str | Path, dtype: Any, device: Any, exact: bool = True) -> Weights:
        """The weights of a checkpoint folder that `folder_is_readable` accepts, in `dtype` on `device`, their
        products packed as `packing` says for `exact`."""
        import torch
        import torch.nn.functional as F

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        tensors = _read_tensors(folder)

        def take(name: str) -> torch.Tensor | None:
            tensor = tensors.pop(name, None)
            return None if tensor is None else tensor.to(device=device, dtype=dtype)

        packed = packing(dtype, device, exact)
        eps = float(config["rms_norm_eps"])
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        layers = [FusedLayer.read(take, f"model.layers.{i}", eps, packed) for i in range(config["num_hidden_layers"])]
        embedding, final_norm = take("model.embed_tokens.weight"), take("model.norm.weight")
        head = embedding if config.get("tie_word_embeddings") else take("lm_head.weight")
        if embedding is None or final_norm is None or head is None:
            raise KeyError(f"{folder}: the embedding, final norm or output weights are missing")
        # what `transformers`' default rotary embedding computes (`compute_default_rope_parameters`, `forward`)
        theta = float(_rope(config)["rope_theta"])
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        inv_freq = inv_freq.to(device)

        def rotary(hidden: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            freqs = positions[..., None].float() * inv_freq
            angles = torch.cat((freqs, freqs), dim=-1)
            return angles.cos().to(hidden.dtype), angles.sin().to(hidden.dtype)

        return cls(
            layers,
            lambda ids: F.embedding(ids, embedding),
            rotary,
            F.silu,
            _rms_norm(final_norm, eps),
            Linear(head, None, packed),
            heads,
            config.get("num_key_value_heads") or heads,
            head_dim,
            head_dim**-0.5,
            config["hidden_size"],
            dtype,
            torch.device(device),
        )


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """The rotary settings of a config.json: `rope_parameters` (transformers 5), else the older top-level keys."""
    if isinstance(config.get("rope_parameters"), dict):
        return config["rope_parameters"]
    scaling = config.get("rope_scaling") or {}
    return {
        "rope_type": scaling.get("rope_type", scaling.get("type", "default")),
        "rope_theta": config.get("rope_theta", 10000.0),
    }


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors checkpoint: one file, or the shards its index names."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {name: t for shard in shards for name, t in load_file(folder / shard).items()}
    return load_file(folder / "model.safetensors")


#: Tokenizer classes that `AutoTokenizer` resolves to the generic fast tokenizer, which loads without the models...
GENERIC_TOKENIZERS = frozenset({"PreTrainedTokenizerFast", "TokenizersBackend"})
#: ...for these model types (for others, qwen2 and mistral among them, it may pick the model's own tokenizer class
#: whatever the folder names, with other special tokens: those load through `transformers`).
READABLE_TYPES = frozenset({"llama"})


def folder_is_readable(folder: str | Path) -> bool:
    """Whether `Weights.read` and the generic fast tokenizer load `folder` as `transformers` would: a Llama model
    (SmolLM2 among them) with silu, the default rotary embedding, no quantization, safetensors weights, and a
    tokenizer that `AutoTokenizer` loads as the generic fast one. Anything else goes through `transformers`."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    weights = (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()
    return bool(
        weights
        and (folder / "tokenizer.json").exists()
        and tokenizer.get("tokenizer_class") in GENERIC_TOKENIZERS
        and config.get("model_type") in READABLE_TYPES
        and config.get("hidden_act", "silu") == "silu"
        and _rope(config).get("rope_type", "default") == "default"
        and not config.get("quantization_config")
        and config.get("pretraining_tp", 1) == 1
        and all(isinstance(config.get(k), int) for k in ("hidden_size", "num_attention_heads", "num_hidden_layers"))
        and "rms_norm_eps" in config
    )
