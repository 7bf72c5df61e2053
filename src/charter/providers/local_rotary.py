"""Rotary position embeddings for the decoder: q and k turned together (`Rotation`), and `transformers`' own
rotary internals reached through one checked accessor (`transformers_rotary`); where one is missing or fails its
check, the model runs through `transformers` alone (`DecoderUnavailable`)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charter.providers.local_products import checking, first_line

if TYPE_CHECKING:
    import torch


@dataclass
class Rotation:
    """The rotary position embedding of one pass, applied to q and k together (`[rows, width, heads, dim]`):
    `x * cos + x.roll(half) * sin'` with `sin'` the sine whose first half is negated. That is what the models'
    `apply_rotary_pos_emb` computes (`x * cos + cat(-x2, x1) * sin`, a sign moved between factors rounds
    alike) in four operations a layer where the helper dispatches sixteen for q and k apart; the cosine and
    sine are shaped once a pass, not once a layer."""

    cos: torch.Tensor
    sin: torch.Tensor

    @classmethod
    def of(cls, cos: torch.Tensor, sin: torch.Tensor) -> Rotation:
        """From the model's `rotary_emb` output (`[rows, width, dim]` each)."""
        import torch

        half = sin.shape[-1] // 2
        return cls(cos.unsqueeze(2), torch.cat([-sin[..., :half], sin[..., half:]], dim=-1).unsqueeze(2))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cos + x.roll(x.shape[-1] // 2, dims=-1) * self.sin

    @classmethod
    def matches(
        cls, helper: Callable[..., tuple[torch.Tensor, torch.Tensor]], head_dim: int, dtype: torch.dtype, device: Any
    ) -> bool:
        """Whether this rotation gives `helper`'s q and k bit for bit, on random values in `dtype`."""
        import torch

        q, k, cos, sin = _rotary_sample(head_dim, dtype, device)
        try:
            want_q, want_k = helper(q, k, cos, sin)
        except (TypeError, RuntimeError):  # a helper that takes other arguments (`transformers_rotary` refuses it)
            return False
        got = cls.of(cos, sin)(torch.cat([q, k], dim=1).transpose(1, 2)).transpose(1, 2)
        return torch.equal(got[:, :3], want_q) and torch.equal(got[:, 3:], want_k)


def _rotary_sample(
    head_dim: int, dtype: torch.dtype, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random q (3 heads), k (1 head), cos and sin of 2 rows of 5 positions, as a rotary helper takes them."""
    import torch

    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, heads, 5, head_dim, generator=generator).to(dtype=dtype, device=device) for heads in (3, 1))
    cos, sin = (torch.randn(2, 5, head_dim, generator=generator).to(dtype=dtype, device=device) for _ in range(2))
    return q, k, cos, sin


class DecoderUnavailable(RuntimeError):
    """charter's decoder cannot run a loaded `transformers` model: a part of `transformers`' modeling code that it
    calls is missing from this version or fails its check (the message says which). The local provider then runs
    the model through `transformers` alone."""


def transformers_rotary(
    model: Any,
) -> tuple[
    Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    Callable[..., tuple[torch.Tensor, torch.Tensor]],
]:
    """What the decoder calls of a loaded `transformers` model's modeling code besides its modules' weights and
    norms: the rotary embedding (`model.model.rotary_emb(hidden, position_ids=...)`, giving cos and sin) and the
    modeling module's `apply_rotary_pos_emb`, which `transformers` exports from no public place and which is found
    there by name. Both are checked on tiny tensors, the helper once a process per helper, dtype and device type
    (`_helper_problem`; whether charter's own rotation gives its values, `Rotation.matches`, the decoder asks
    apart). `DecoderUnavailable` says what is missing or fails."""
    import torch

    inner = model.model

    def rotary(hidden: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return inner.rotary_emb(hidden, position_ids=positions)

    head_dim = inner.layers[0].self_attn.head_dim
    problem = _rotary_problem(rotary, model.config.hidden_size, head_dim, model.dtype, model.device)
    if problem is not None:
        raise DecoderUnavailable(f"{type(inner).__name__}.rotary_emb {problem}")
    module = type(model).__module__
    helper = getattr(sys.modules.get(module), "apply_rotary_pos_emb", None)
    with checking:
        problem = _helper_problem(helper, model.dtype, torch.device(model.device).type)
    if helper is None or problem is not None:
        raise DecoderUnavailable(f"{module}.apply_rotary_pos_emb {problem}")
    return rotary, helper


def _rotary_problem(
    rotary: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    hidden_size: int,
    head_dim: int,
    dtype: torch.dtype,
    device: Any,
) -> str | None:
    """What is wrong with a rotary embedding's call on 3 positions of one row (None: cos and sin come back,
    `[1, 3, head_dim]` each in the hidden states' dtype)."""
    import torch

    hidden = torch.zeros(1, 3, hidden_size, dtype=dtype, device=device)
    try:
        out = rotary(hidden, torch.arange(3, device=device).unsqueeze(0))
    except (TypeError, RuntimeError, ValueError, AttributeError) as error:
        return f"fails: {type(error).__name__}: {first_line(error)}"
    return _pair_problem(out, [(1, 3, head_dim)] * 2, dtype, "cos and sin")


@functools.cache
def _helper_problem(helper: Any, dtype: torch.dtype, device_type: str) -> str | None:
    """What is wrong with a rotary helper (None: it takes `(q, k, cos, sin)` and gives q and k back in their shapes
    and dtype). Kept for the process."""
    if not callable(helper):
        return "is missing"
    q, k, cos, sin = _rotary_sample(8, dtype, device_type)
    try:
        out = helper(q, k, cos, sin)
    except (TypeError, RuntimeError, ValueError) as error:
        return f"fails on (q, k, cos, sin): {type(error).__name__}: {first_line(error)}"
    return _pair_problem(out, [tuple(q.shape), tuple(k.shape)], dtype, "q and k")


def _pair_problem(out: Any, shapes: list[tuple[int, ...]], dtype: torch.dtype, names: str) -> str | None:
    """None where `out` is two tensors of `shapes` in `dtype`; else what came back instead of `names`."""
    import torch

    if not (isinstance(out, tuple | list) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        return f"gives {type(out).__name__}, not {names}"
    got = [(tuple(t.shape), t.dtype) for t in out]
    if got != [(shape, dtype) for shape in shapes]:
        return f"gives {names} as {got}, not {shapes} in {dtype}"
    return None
