"""The decoder's kernels: its matrix products and rotary position embeddings, each with torch's or `transformers`'
private internals reached through one checked accessor.

The decoder's matrix products (`Linear`): torch's oneDNN operators with the weight reordered once, or plain
`F.linear`. torch's private operators are reached through one checked accessor (`packed_products`); where they are
missing or fail the check, a warning line says so and the products run through `F.linear` (the same results as
`transformers`).

Rotary position embeddings for the decoder: q and k turned together (`Rotation`), and `transformers`' own
rotary internals reached through one checked accessor (`transformers_rotary`); where one is missing or fails its
check, the model runs through `transformers` alone (`DecoderUnavailable`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger("charter.providers.local_decode")  # the decoder's warnings, under its name
checking = threading.Lock()
"""Held while a private operator or helper is checked, so that threads loading models at once check it once."""


class Linear:
    """`x @ weight.T + bias`, through oneDNN with the weight reordered once into the blocked layout its kernels
    read (`packed_products`, what torch's compiled CPU code does), or plain `F.linear` (`packed=False`).

    `F.linear` in bfloat16 on CPU calls the same oneDNN kernel but hands it the plain weight at every call: a
    decode step (16 rows) spent ~40 of its ~65 ms in the 121 matrix products, ~60 GFLOP/s. Reordered once, the
    same products give the same bits (`packing_is_exact` checks) ~1.5x faster at 16 rows, 2x at one.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, packed: bool) -> None:
        self.weight, self.bias = weight, bias
        self.products: PackedProducts | None = None
        self.packed: torch.Tensor | None = None
        if packed:
            products = packed_products(weight.dtype, weight.device)
            if products is None:
                raise RuntimeError(f"torch's oneDNN packed products do not run for {weight.dtype} on {weight.device}")
            self.products, self.packed = products, products.pack(weight)

    @classmethod
    def of(cls, module: Any, packed: bool) -> Linear:
        """The product of an `nn.Linear` (its weight shared, not copied, when not packed)."""
        bias = module.bias.detach() if module.bias is not None else None
        return cls(module.weight.detach(), bias, packed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        products, packed = self.products, self.packed
        if products is None or packed is None:
            import torch.nn.functional as F

            return F.linear(x, self.weight, self.bias)
        return products(x, packed, self.bias)


@dataclass(frozen=True)
class PackedProducts:
    """torch's private oneDNN operators for a linear product whose weight is reordered once:
    `torch.ops.mkldnn._reorder_linear_weight` and `torch.ops.mkldnn._linear_pointwise`. The decoder reaches them
    only through `packed_products`, which hands out an instance once they have passed its check."""

    reorder: Callable[..., torch.Tensor]
    pointwise: Callable[..., torch.Tensor]
    exact: bool = False
    """The product gave `F.linear`'s bits on the test matrix."""
    rowwise: bool = False
    """The last position of each row got the same bits run alone as among all (`Decoder._rowwise`)."""

    @classmethod
    def lookup(cls) -> PackedProducts:
        """The operators as this torch build names them (AttributeError where it has none by those names)."""
        import torch

        return cls(torch.ops.mkldnn._reorder_linear_weight, torch.ops.mkldnn._linear_pointwise)

    def pack(self, weight: torch.Tensor) -> torch.Tensor:
        """`weight` in the blocked layout, for products of about 16 rows."""
        return self.reorder(weight.detach(), 16)

    def __call__(self, x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self.pointwise(x, packed, bias, "none", [], "")


#: How far a packed product may stray from `F.linear`'s on the test matrix (values up to ~30), relatively and
#: absolutely, before `packed_products` turns it away: in float32, what the float32 tests accept of log-probabilities
#: (products that round otherwise stray ~4e-6); in bfloat16, about two of its rounding steps. Other dtypes must give
#: the same bits.
PACKED_TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2}


def packed_products(dtype: torch.dtype, device: Any) -> PackedProducts | None:
    """torch's oneDNN packed products for `dtype` on `device`, checked once a process per dtype and device type
    (`_checked_products`); None where they are not to be used. Every use of those operators goes through here."""
    import torch

    with checking:
        return _checked_products(dtype, torch.device(device).type)


@functools.cache
def _checked_products(dtype: torch.dtype, device_type: str) -> PackedProducts | None:
    """The operators found and checked on a test matrix against `F.linear`: they must run and agree within
    `PACKED_TOLERANCE`. None on a device other than a CPU (oneDNN's packed products are CPU kernels: nothing is
    missing there) and where the check fails, which one warning line then says: the decoder multiplies with
    `F.linear` instead (`packing`), which gives `transformers`' results."""
    import torch
    import torch.nn.functional as F

    if device_type != "cpu":
        return None
    if not torch.backends.mkldnn.is_available():
        return _plain_instead(dtype, "are missing: this torch build has no oneDNN")
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=generator).to(dtype)
    bias = torch.randn(96, generator=generator).to(dtype)
    x = torch.randn(2, 5, 64, generator=generator).to(dtype)
    try:
        products = PackedProducts.lookup()
        got = products(x, products.pack(weight), bias)
        rowwise = _rows_are_independent(products, dtype)
    except AttributeError as error:
        return _plain_instead(dtype, f"are missing from torch {torch.__version__} ({first_line(error)})")
    except (RuntimeError, TypeError, ValueError) as error:
        return _plain_instead(dtype, f"fail in torch {torch.__version__}: {type(error).__name__}: {first_line(error)}")
    want = F.linear(x, weight, bias)
    if got.shape != want.shape or got.dtype != want.dtype:
        return _plain_instead(dtype, f"give {tuple(got.shape)} {got.dtype} where F.linear gives {tuple(want.shape)}")
    tolerance = PACKED_TOLERANCE.get(str(dtype).removeprefix("torch."), 0.0)
    if not torch.allclose(got.float(), want.float(), rtol=tolerance, atol=tolerance):
        gap = float((got.float() - want.float()).abs().max())
        return _plain_instead(dtype, f"stray up to {gap:.3g} from F.linear on a test product (tolerance {tolerance:g})")
    return PackedProducts(products.reorder, products.pointwise, bool(torch.equal(got, want)), rowwise)


def _rows_are_independent(products: PackedProducts, dtype: torch.dtype) -> bool:
    """Whether a packed product gives the last position of each row the same bits run alone as among all."""
    import torch

    generator = torch.Generator().manual_seed(0)
    packed = products.pack(torch.randn(192, 64, generator=generator).to(dtype))
    x = torch.randn(3, 150, 64, generator=generator).to(dtype)
    return bool(torch.equal(products(x, packed, None)[:, -1:], products(x[:, -1:], packed, None)))


def _plain_instead(dtype: torch.dtype, problem: str) -> None:
    """Say, once, that the packed products are not used and why."""
    log.warning(
        "torch.ops.mkldnn._reorder_linear_weight and _linear_pointwise (%s) %s: charter's decoder multiplies with "
        "F.linear instead (results stay correct, slower)",
        str(dtype).removeprefix("torch."),
        problem,
    )


def first_line(error: BaseException) -> str:
    return next(iter(str(error).splitlines()), "")


def packing_is_exact(dtype: torch.dtype, device: Any) -> bool:
    """Whether `Linear` may reorder weights without changing outputs: bfloat16 on a CPU whose torch has the oneDNN
    ops, and the packed product equal bit for bit to `F.linear`'s on a test matrix. Float32 packed rounds otherwise
    than `F.linear` (MKL), and a named `dtype: float32` promises the exact `transformers` results."""
    import torch

    if dtype != torch.bfloat16:
        return False
    products = packed_products(dtype, device)
    return products is not None and products.exact


def packing(dtype: torch.dtype, device: Any, exact: bool) -> bool:
    """Whether `Linear` reorders weights for oneDNN: where that gives `F.linear`'s bits (`packing_is_exact`), and,
    unless `exact`, wherever oneDNN's packed product passes `packed_products`' check. That is float32 on a CPU without
    native bfloat16 (AVX2 only), where it rounds otherwise than MKL's `F.linear` but runs a decode step's 16 rows
    ~1.7-2.3x faster (benchmarks/RESULTS.md, "The embedded model at full speed"): what `dtype: auto` picks there."""
    exactly = packing_is_exact(dtype, device)
    if exact or exactly:
        return exactly
    return packed_products(dtype, device) is not None


def rows_are_independent(dtype: torch.dtype, device: Any) -> bool:
    """Whether a packed `Linear` gives the last position of each row the same bits run alone as among all."""
    products = packed_products(dtype, device)
    return products is not None and products.rowwise


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
