"""The local provider's own decoder for Llama-family models: one shared prefix, rows that leave when done.

`transformers`' `generate` copies a batch's common prefix (few-shot examples, judge instructions) into
every row's key/value cache and appends to it with `torch.cat` at each step, so a batch of 16 critique
prompts with a 1,000-token shared start moves ~1 GB per decode step on CPU. This decoder keeps:

- the shared prefix once (`PrefixKV`, batch 1), reused across calls through a bounded `PrefixCache`;
- each row's own tokens in preallocated buffers, attended together with the prefix in one softmax;
- recently generated rows (`RowCache`), so that a prompt continuing one (a revision request after its
  critique) runs only its new tokens;
- for a judge's batch, the starts that rows share beyond the common prefix (one pair and order asked about
  two principles) run once, and each row runs only its own tokens after them;
- prefill in groups of similar length (little padding), and only unfinished rows in decode steps: a row
  that hit its end or stop string leaves the batch;
- few small operations a layer (a decode step of a 135M model dispatches ~1,800): q, k and v from one product,
  q and k turned together, masks built once a pass.

Greedy decoding, per-row sampling and stop strings behave as with `generate`. Models whose layers are
not plain pre-norm Llama blocks (Llama, SmolLM, Qwen2 without a sliding window, Mistral without one)
go through `generate` instead (`supports`).

Below the decode loop, the parts it runs:

- the key/value memory: a shared prefix run once (`PrefixKV`), the prefixes and rows kept between calls
  (`PrefixCache`, `RowCache`), and each row's own preallocated buffers during a batch (`RowKV`, `RowSlots`);
- a Llama-family model's weights as the decoder runs them (`Weights`): from a loaded `transformers` model, or read
  straight from a checkpoint folder (`folder_is_readable` says which folders), each layer's projections fused;
- the kernels: the matrix products (`Linear`: torch's oneDNN operators with the weight reordered once, or plain
  `F.linear`) and rotary position embeddings (`Rotation`: q and k turned together). torch's private operators and
  `transformers`' rotary internals are reached through one checked accessor each (`packed_products`,
  `transformers_rotary`); where one is missing or fails its check, a warning line says so and the products run
  through `F.linear` (the same results as `transformers`), or the model runs through `transformers` alone
  (`DecoderUnavailable`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch
    from torch import Tensor


#: A prefill group stops growing at this many tokens (more buys no speed on CPU)...
PREFILL_TOKENS = 2048
#: ...or before padding would exceed this share of it.
PREFILL_PADDING = 0.1
#: The same on a CUDA device (measured on an H100: benchmarks/RESULTS.md).
PREFILL_TOKENS_GPU, PREFILL_PADDING_GPU = 32768, 1.0
#: Model types whose decoder layers this module runs itself.
SUPPORTED = frozenset({"llama", "qwen2", "mistral"})


def supports(model: Any) -> bool:
    """Whether `model` is a Llama-family causal LM this decoder runs exactly like `transformers` does."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in SUPPORTED:
        return False
    # a sliding window is not applied here: such models go through `generate`
    if getattr(config, "use_sliding_window", False):  # qwen2's switch
        return False
    if config.model_type == "mistral" and getattr(config, "sliding_window", None):
        return False
    inner = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or not all(hasattr(inner, n) for n in needed) or not hasattr(model, "lm_head"):
        return False
    layer = inner.layers[0]
    parts = [getattr(layer.self_attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    parts += [getattr(layer.mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
    norms = (layer.input_layernorm, layer.post_attention_layernorm)
    return (
        all(hasattr(p, "weight") for p in parts)
        and hasattr(layer.mlp, "act_fn")
        and all(hasattr(n, "variance_epsilon") for n in norms)
    )


class Decoder:
    """Runs a Llama-family `*ForCausalLM` layer by layer with a shared prefix and per-row buffers."""

    def __init__(self, weights: Weights | Any, prefix_cache_bytes: int = 256 * 1024 * 1024, exact: bool = True) -> None:
        """`weights`: read from a checkpoint folder (`Weights.read`), or a loaded `transformers` model (its products
        packed as `packing` says for `exact`)."""
        if not isinstance(weights, Weights):
            weights = Weights.of_model(weights, packing(weights.dtype, weights.device, exact))
        self.weights = w = weights
        self.heads, self.kv_heads, self.head_dim = w.heads, w.kv_heads, w.head_dim
        self.groups = self.heads // self.kv_heads
        self.scaling = w.scaling
        self.dtype, self.device = w.dtype, w.device
        # q and k are turned together, in fewer operations, where that gives the model's own rotary helper's
        # values bit for bit (`Rotation.matches`); weights read from a folder have no other helper
        self._rotary = w.rotary_helper
        self._joint_rotary = w.rotary_helper is None or Rotation.matches(
            w.rotary_helper, self.head_dim, w.dtype, w.device
        )
        self.fused, self.head = w.layers, w.head
        # oneDNN's packed products give a row the same bits whatever other rows share the product (MKL's float32
        # `F.linear` does not): only then may the last layer run its output products on the last positions alone
        self._rowwise = self.head.packed is not None and rows_are_independent(w.dtype, w.device)
        # one budget: a quarter for shared prefixes (few-shot examples, instructions), the rest for recent rows
        self.cache = PrefixCache(prefix_cache_bytes // 4)
        self.rows = RowCache(prefix_cache_bytes - prefix_cache_bytes // 4)
        # prefill groups: on CPU the matrix units are busy at ~2k tokens and padding costs its full share; on a GPU
        # each group is ~30 layers of kernel launches, so fewer, wider groups win
        on_gpu = getattr(w.device, "type", str(w.device)).startswith("cuda")
        self.prefill_tokens, self.prefill_padding = (
            (PREFILL_TOKENS_GPU, PREFILL_PADDING_GPU) if on_gpu else (PREFILL_TOKENS, PREFILL_PADDING)
        )
        # On CUDA, torch picks cuDNN's attention first, which builds a graph for each new shape: ~1.7 ms of CPU a
        # call against 10 us on the GPU, and prefill groups come in many widths (H100, benchmarks/RESULTS.md)
        self._attention_backends = _without_cudnn_attention if on_gpu else contextlib.nullcontext
        self.branched_tokens = 0
        """Tokens that rows of one batch shared past its common prefix and so ran once, not once a row."""
        self.pace: Callable[[], object] | None = None
        """Called before each decode step and prefill group (the local provider's thread governor: a neighbour that
        starts mid-batch is met within a step, not at the next batch; outputs do not depend on the thread count)."""
        self.check: Callable[[], object] | None = None
        """Called before each decode step and prefill group: it raises to end the batch there (the local provider's
        stop request: a stop is met within a step, not at the end of the batch)."""

    # ---- the forward pass

    def _forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        prefix: PrefixKV | None,
        own: RowKV | RowSlots | None,
        visible: torch.Tensor | None,
        outputs: str = "all",
    ) -> tuple[torch.Tensor | None, list, list]:
        """Hidden states after the final norm for `ids` (`[rows, width]`), and each layer's new keys/values.

        Attention covers the prefix (every row sees all of it), the rows' earlier own tokens in `own`, and
        the new tokens; `visible` (`[rows, width, own + width]`, bool) says which own/new keys each new token
        sees (causal order and padding).

        `outputs`: "all" positions' hidden states; only each row's "last" (`[rows, 1, hidden]`: the last layer's
        output product and MLP then run on those positions alone, where products give a row the same values
        whatever rows share them, `_rowwise`); or "none" (keys and values only: the last layer stops after them).
        """
        w = self.weights
        hidden = w.embed(ids)
        cos, sin = w.rotary(hidden, positions)
        rotation = Rotation.of(cos, sin) if self._joint_rotary else None  # once a pass, not once a layer
        rows, width = ids.shape
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        mask = self._mask(visible, prefix, rows, width)
        # softmax attention of each layer's q (`[rows, heads, width, dim]`) over the prefix and the rows' own keys
        attend = self._attend_many if width > 1 else self._attend_one
        new_keys, new_values = [], []
        for index, fused in enumerate(self.fused):
            qkv = fused.qkv(fused.norm_in(hidden))  # q, k and v in one product
            if rotation is not None:
                qk = rotation(qkv[..., : q_size + kv_size].view(rows, width, self.heads + self.kv_heads, -1))
                q, k = (part.transpose(1, 2) for part in qk.split([self.heads, self.kv_heads], dim=2))
            else:
                q, k = qkv[..., :q_size], qkv[..., q_size : q_size + kv_size]
                q = q.view(rows, width, self.heads, self.head_dim).transpose(1, 2)
                k = k.view(rows, width, self.kv_heads, self.head_dim).transpose(1, 2)
                assert self._rotary is not None  # no joint rotation: the model's own helper rotates
                q, k = self._rotary(q, k, cos, sin)
            v = qkv[..., q_size + kv_size :].view(rows, width, self.kv_heads, self.head_dim).transpose(1, 2)
            if own is not None:
                keys, values = own.extend(index, k, v)
            else:
                keys, values = k, v
            new_keys.append(k)
            new_values.append(v)
            last = index == len(self.fused) - 1
            if last and outputs == "none":
                return None, new_keys, new_values
            out = attend(q, keys, values, prefix.layer(index) if prefix is not None else None, mask)
            if last and outputs == "last" and width > 1 and self._rowwise:
                hidden, out, width = hidden[:, -1:], out[:, :, -1:], 1
            hidden = hidden + fused.o(out.transpose(1, 2).reshape(rows, width, -1))
            gate, up = fused.gate_up(fused.norm_post(hidden)).chunk(2, dim=-1)  # gate and up in one
            hidden = hidden + fused.down(w.act(gate) * up)
        return w.norm(hidden), new_keys, new_values

    def _mask(
        self, visible: torch.Tensor | None, prefix: PrefixKV | None, rows: int, width: int
    ) -> torch.Tensor | None:
        """`visible` as the attention of every layer takes it, built once a pass: for prefill, which prefix and
        own/new keys each token sees (`[rows, 1, width, prefix + own]`); for a decode step, which own keys each
        row does not see (`[rows, 1, 1, own]`)."""
        import torch

        if visible is None:
            return None
        if width == 1:
            return ~visible.unsqueeze(1)
        if prefix is not None and len(prefix):
            seen = torch.ones(rows, width, len(prefix), dtype=torch.bool, device=visible.device)
            visible = torch.cat([seen, visible.expand(rows, -1, -1)], dim=-1)
        return visible.unsqueeze(1)

    def _attend_many(self, q: Tensor, k: Tensor, v: Tensor, past: LayerKV | None, mask: Tensor | None) -> Tensor:
        """Prefill: torch's fused attention over the prefix layer `past` (copied to each row once) and the new
        tokens; `mask` says which of them each token sees."""
        import torch
        import torch.nn.functional as F

        rows = q.shape[0]
        if past is not None:
            k = torch.cat([past.keys.unsqueeze(0).expand(rows, -1, -1, -1), k], dim=2)
            v = torch.cat([past.values.unsqueeze(0).expand(rows, -1, -1, -1), v], dim=2)
        with self._attention_backends():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=True)

    def _attend_one(self, q: Tensor, k: Tensor, v: Tensor, past: LayerKV | None, hidden: Tensor | None) -> Tensor:
        """A decode step: one query per row; the prefix layer `past` is one batch-1 tensor, never copied per row.
        `hidden` marks the own keys a row does not see."""
        import torch

        rows, _, _, dim = q.shape
        q = q.reshape(rows, self.kv_heads, self.groups, dim)  # a kv head's query heads side by side
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scaling  # [rows, kvh, groups, own]
        if hidden is not None:
            scores = scores.masked_fill(hidden, -math.inf)
        if past is None:
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            return torch.matmul(probs, v).view(rows, self.heads, 1, dim)
        pv, p_len = past.values, past.values.shape[1]  # [kvh, p, dim]
        pk_t = past.keys_t if past.keys_t is not None else past.keys.transpose(1, 2)
        flat = q.permute(1, 0, 2, 3).reshape(self.kv_heads, rows * self.groups, dim)
        pscores = torch.bmm(flat, pk_t).view(self.kv_heads, rows, self.groups, p_len)
        pscores = pscores.permute(1, 0, 2, 3) * self.scaling
        probs = torch.softmax(torch.cat([pscores, scores], dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
        pprobs = probs[..., :p_len].permute(1, 0, 2, 3).reshape(self.kv_heads, rows * self.groups, p_len)
        from_prefix = torch.bmm(pprobs, pv).view(self.kv_heads, rows, self.groups, dim).permute(1, 0, 2, 3)
        out = from_prefix + torch.matmul(probs[..., p_len:], v)
        return out.reshape(rows, self.heads, 1, dim)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden).float()

    # ---- prefixes

    def prefix(self, tokens: Sequence[int]) -> PrefixKV | None:
        """Keys and values of `tokens` run alone, from the cache as far as it goes."""
        import torch

        tokens = tuple(tokens)
        if not tokens:
            return None
        cached = self.cache.longest(tokens)
        done = len(cached) if cached is not None else 0
        if done == len(tokens):
            return cached
        device = self.device
        ids = torch.tensor([tokens[done:]], device=device)
        positions = torch.arange(done, len(tokens), device=device).unsqueeze(0)
        width = ids.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril().unsqueeze(0)
        _, keys, values = self._forward(ids, positions, cached, None, causal, outputs="none")
        # compact copies: the forward's keys and values are views into its q/k/v products, which a cached view
        # would keep whole (four to five times the bytes that `nbytes` counts)
        new_keys = [k[0].contiguous() for k in keys]
        new_values = [v[0].contiguous() for v in values]
        if cached is not None:
            new_keys = [torch.cat([c, n], dim=1) for c, n in zip(cached.keys, new_keys)]
            new_values = [torch.cat([c, n], dim=1) for c, n in zip(cached.values, new_values)]
        entry = PrefixKV(tokens, new_keys, new_values)
        self.cache.put(entry)
        return entry

    # ---- batches

    def next_token_logprobs(self, batch: Sequence[Sequence[int]], shared: int) -> torch.Tensor:
        """Log-probabilities of the next token after each prompt, `[rows, vocab]`.

        Rows that start alike beyond the batch's common prefix (a judge's calls for one pair and order share the
        instructions and the conversation, and differ from the principle's question on) run what they share
        once: those starts are prefilled first, and each row then runs only its own tokens after them."""
        import torch

        prefix = self.prefix(batch[0][:shared])
        branch = _branch_points(batch, shared)
        reuse: dict[int, tuple[int, list[torch.Tensor], list[torch.Tensor]]] = {}
        if branch:
            starts = sorted({tuple(batch[row][:end]) for row, end in branch.items()})
            kv, _, _, width = self._prefill(starts, shared, prefix, 0, {}, outputs="none")
            at = {tokens: slot for slot, tokens in enumerate(starts)}
            for row, end in branch.items():
                slot = at[tuple(batch[row][:end])]
                first = width - (end - shared)
                reuse[row] = (
                    end,
                    [k[slot, :, first:width] for k in kv.keys],
                    [v[slot, :, first:width] for v in kv.values],
                )
            del kv  # the starts' buffers go once _prefill has copied them into the rows
            self.branched_tokens += sum(end - shared for end in branch.values()) - sum(len(t) - shared for t in starts)
        _, _, last_hidden, _ = self._prefill(batch, shared, prefix, 0, reuse)
        return torch.log_softmax(self.logits(last_hidden), dim=-1)

    def generate(
        self,
        batch: Sequence[Sequence[int]],
        shared: int,
        max_new: int,
        stop: Callable[[int, int], bool],
        choose: Callable[[torch.Tensor, list[int]], torch.Tensor],
    ) -> list[list[int]]:
        """New tokens per row, at most `max_new`. `choose(logits, rows)` picks the next token of each live row
        (`rows` are their indexes in `batch`); `stop(row, token)` says whether that token ends the row."""
        import torch

        prefix = self.prefix(batch[0][:shared])
        device = self.device
        tails = [list(ids[shared:]) for ids in batch]
        # What an earlier call already ran of a row beyond the shared prefix (a revision request continues its
        # critique) is copied in, not run again.
        reuse = {row: hit for row, ids in enumerate(batch) if (hit := self.rows.longest(ids, shared)) is not None}
        own, seen, last_hidden, width = self._prefill(batch, shared, prefix, max_new, reuse)
        if prefix is not None:
            prefix = prefix.for_decode()
        live = list(range(len(batch)))  # rows still in the batch (finished ones leave in groups)
        finished: set[int] = set()
        out: list[list[int]] = [[] for _ in batch]
        next_position = torch.tensor([shared + len(t) for t in tails], device=device)
        for _ in range(max_new):
            tokens = choose(self.logits(last_hidden), live)
            for row, token in zip(live, tokens.tolist()):
                if row not in finished:
                    out[row].append(token)
                    if stop(row, token):
                        finished.add(row)
            keep = [slot for slot, row in enumerate(live) if row not in finished]
            if not keep or len(out[live[keep[0]]]) >= max_new:
                break
            if len(live) - len(keep) >= max(1, len(live) // 4):  # compact once a quarter of the rows are done
                self._keep_rows(batch, tails, out, own, width, {s: r for s, r in enumerate(live) if r in finished})
                index = torch.tensor(keep, device=device)
                own.select(index)
                seen, next_position, tokens = seen[index], next_position[index], tokens[index]
                live = [live[slot] for slot in keep]
            seen[:, own.length] = True
            if self.check is not None:
                self.check()
            if self.pace is not None:
                self.pace()
            visible = seen.unsqueeze(1)  # all slots of the buffers; those not yet written stay unseen
            hidden, _, _ = self._forward(tokens.view(-1, 1), next_position.view(-1, 1), prefix, own, visible)
            assert hidden is not None  # outputs="all": the hidden states are filled in
            own.length += 1
            next_position = next_position + 1
            last_hidden = hidden[:, -1, :]
        self._keep_rows(batch, tails, out, own, width, dict(enumerate(live)))
        return out

    def _prefill(
        self,
        batch: Sequence[Sequence[int]],
        shared: int,
        prefix: PrefixKV | None,
        room: int,
        reuse: dict[int, tuple[int, list[torch.Tensor], list[torch.Tensor]]],
        outputs: str = "last",
    ) -> tuple[RowKV, torch.Tensor, torch.Tensor, int]:
        """Run each row's tokens after the shared prefix into its own buffers, with `room` slots left for new
        tokens. `reuse` gives rows whose keys/values up to some token were computed before: `row: (end, keys,
        values)`; they are copied in (and `reuse` emptied) and only the tokens from `end` run. Returns the
        buffers, which slots each row sees, the last hidden state of each row and the slot after each row's last
        token. `outputs`: as `_forward`'s (with "none" the hidden states returned are not filled in)."""
        import torch

        device = self.device
        tails = [list(ids[shared:]) for ids in batch]
        rows, width = len(tails), max(len(t) for t in tails)
        own = RowKV(len(self.fused), rows, self.kv_heads, width + room, self.head_dim, device, self.dtype)
        seen = torch.zeros(rows, width + room, dtype=torch.bool, device=device)
        # Each row's tokens sit right-aligned before slot `width`.
        done = [shared] * rows
        while reuse:  # emptied as it is copied in, so that what it held can be freed
            row, (end, keys, values) = reuse.popitem()
            done[row] = end
            first = width - len(tails[row])
            own.write(row, first, keys, values)
            seen[row, first : first + end - shared] = True
        todo = [len(ids) - d for ids, d in zip(batch, done)]
        order = sorted(range(rows), key=lambda r: -todo[r])
        last_hidden = torch.empty(rows, self.weights.hidden_size, device=device, dtype=self.dtype)
        for start, end in _prefill_groups([todo[r] for r in order], self.prefill_tokens, self.prefill_padding):
            # rows with about as many tokens left to run, padded to the most of them
            group = order[start:end]
            ids, positions, _, real = self._suffix_inputs([batch[r] for r in group], [done[r] for r in group])
            span = max(len(tails[r]) for r in group)  # the group's keys: slots width - span .. width
            for r in group:
                seen[r, width - todo[r] : width] = True
            key_slots = torch.arange(width - span, width, device=device)
            query_slots = torch.arange(width - ids.shape[1], width, device=device)
            index = torch.tensor(group, device=device)
            visible = (key_slots.unsqueeze(0) <= query_slots.unsqueeze(1)).unsqueeze(0) & seen.index_select(0, index)[
                :, width - span : width
            ].unsqueeze(1)
            visible |= ~real.unsqueeze(2)  # a padding query sees everything: never an empty softmax
            slots = RowSlots(own, index, [todo[r] for r in group], width, span)
            if self.check is not None:
                self.check()
            if self.pace is not None:
                self.pace()
            hidden, _, _ = self._forward(ids, positions, prefix, slots, visible, outputs)
            if hidden is not None:
                last_hidden[index] = hidden[:, -1, :]
        own.length = width
        return own, seen, last_hidden, width

    def _keep_rows(
        self,
        batch: Sequence[Sequence[int]],
        tails: list[list[int]],
        out: list[list[int]],
        own: RowKV,
        width: int,
        slots: dict[int, int],
    ) -> None:
        """Put rows (`slot: row`) into the row cache: the prompt and what was generated but the last token."""
        if self.rows.max_bytes <= 0:
            return
        shared = len(batch[0]) - len(tails[0])
        for slot, row in slots.items():
            first, end = width - len(tails[row]), min(width + len(out[row]) - 1, own.length)
            tokens = tuple(batch[row]) + tuple(out[row][: end - width])
            keys = [k[slot, :, first:end].clone() for k in own.keys]
            values = [v[slot, :, first:end].clone() for v in own.values]
            self.rows.put(tokens, RowEntry(shared, keys, values))

    def _suffix_inputs(
        self, batch: Sequence[Sequence[int]], shared: int | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ids after the prefix (`shared` tokens, or that many per row), their positions, which keys
        each token sees, and the real-token mask."""
        import torch

        device = self.device
        starts = [shared] * len(batch) if isinstance(shared, int) else list(shared)
        tails = [list(ids[start:]) for ids, start in zip(batch, starts)]
        width = max(len(t) for t in tails)
        pad = 0
        ids = torch.tensor([[pad] * (width - len(t)) + t for t in tails], device=device)
        real = torch.tensor([[False] * (width - len(t)) + [True] * len(t) for t in tails], device=device)
        first = torch.tensor(starts, device=device).unsqueeze(1)
        positions = torch.maximum(first + real.long().cumsum(-1) - 1, first)
        causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
        eye = torch.eye(width, dtype=torch.bool, device=device)
        visible = (causal.unsqueeze(0) & real.unsqueeze(1)) | eye  # a padding slot sees itself: no empty softmax
        return ids, positions, visible, real


def _without_cudnn_attention() -> contextlib.AbstractContextManager:
    """torch's attention kernels other than cuDNN's, chosen among in torch's own order."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _branch_points(batch: Sequence[Sequence[int]], shared: int) -> dict[int, int]:
    """`row: end` for rows that share their first `end` tokens with another row of the batch, at least
    `MIN_ROW_REUSE` past the batch's common `shared` ones (and leaving a token to run): the longest such start."""
    order = sorted(range(len(batch)), key=lambda r: tuple(batch[r]))
    common = [common_length(batch[a], batch[b]) for a, b in zip(order, order[1:])]  # neighbours in sorted order
    points = {}
    for i, row in enumerate(order):
        end = min(max(common[i - 1] if i else 0, common[i] if i < len(common) else 0), len(batch[row]) - 1)
        if end - shared >= MIN_ROW_REUSE:
            points[row] = end
    return points


def _prefill_groups(
    lengths: Sequence[int], most: int = PREFILL_TOKENS, padding: float = PREFILL_PADDING
) -> list[tuple[int, int]]:
    """Consecutive rows run together in prefill: enough tokens to keep the matrix units busy (`most`), little
    padding (at most that share of the group)."""
    groups, start = [], 0
    while start < len(lengths):
        end = start + 1
        while end < len(lengths):
            rows = end + 1 - start
            width = max(lengths[start : end + 1])
            if rows * width - sum(lengths[start : end + 1]) > padding * rows * width:
                break
            if sum(lengths[start:end]) >= most:
                break
            end += 1
        groups.append((start, end))
        start = end
    return groups


#: A row generated earlier is reused when a new prompt continues at least this many of its tokens.
MIN_ROW_REUSE = 16


class LayerKV(NamedTuple):
    """One layer's keys and values of a prefix, `[kv_heads, length, head_dim]`; `keys_t` the keys transposed where
    `PrefixKV.for_decode` made them."""

    keys: torch.Tensor
    values: torch.Tensor
    keys_t: torch.Tensor | None


@dataclass
class PrefixKV:
    """Keys and values of one token sequence run alone: per layer, `[kv_heads, length, head_dim]`."""

    tokens: tuple[int, ...]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    keys_t: list[torch.Tensor] | None = None
    """The keys transposed, `[kv_heads, head_dim, length]`, contiguous: what a decode step multiplies by."""

    def __len__(self) -> int:
        return len(self.tokens)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def layer(self, index: int) -> LayerKV | None:
        """Layer `index`'s keys and values (None for an empty prefix): what that layer's attention reads."""
        if not self.tokens:
            return None
        keys_t = self.keys_t[index] if self.keys_t is not None else None
        return LayerKV(self.keys[index], self.values[index], keys_t)

    def for_decode(self) -> PrefixKV:
        """This prefix laid out for decode steps: transposed keys and values made contiguous once per batch,
        not copied by every step's matrix product."""
        return PrefixKV(
            self.tokens,
            self.keys,
            [v.contiguous() for v in self.values],
            [k.transpose(1, 2).contiguous() for k in self.keys],
        )

    def cut(self, length: int) -> PrefixKV:
        """The first `length` tokens (views, no copy)."""
        return PrefixKV(self.tokens[:length], [k[:, :length] for k in self.keys], [v[:, :length] for v in self.values])


@dataclass
class PrefixCache:
    """The most recently used prefixes, up to `max_bytes` of keys and values together."""

    max_bytes: int
    entries: OrderedDict[tuple[int, ...], PrefixKV] = field(default_factory=OrderedDict)
    hits: int = 0
    reused_tokens: int = 0

    def longest(self, tokens: Sequence[int]) -> PrefixKV | None:
        """The cached prefix sharing the most leading tokens with `tokens`, cut to what they share."""
        best, best_len = None, 0
        for key in self.entries:
            shared = common_length(key, tokens)
            if shared > best_len:
                best, best_len = key, shared
        if best is None:
            return None
        self.entries.move_to_end(best)
        self.hits += 1
        self.reused_tokens += best_len
        return self.entries[best].cut(best_len)

    def put(self, prefix: PrefixKV) -> None:
        if self.max_bytes <= 0 or prefix.nbytes() > self.max_bytes:
            return
        # a longer prefix supersedes the ones it starts with
        for key in [k for k in self.entries if prefix.tokens[: len(k)] == k]:
            del self.entries[key]
        self.entries[prefix.tokens] = prefix
        while sum(e.nbytes() for e in self.entries.values()) > self.max_bytes:
            self.entries.popitem(last=False)


@dataclass
class RowEntry:
    """One generated row's keys/values beyond the prefix its batch shared: positions `start:len(tokens)`."""

    start: int
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


@dataclass
class RowCache:
    """Rows generated lately, so that a prompt continuing one (a revision request after its critique) runs only
    its new tokens. Up to `max_bytes`, least recently used out first."""

    max_bytes: int
    entries: OrderedDict[tuple[int, ...], RowEntry] = field(default_factory=OrderedDict)
    hits: int = 0
    reused_tokens: int = 0

    def longest(self, tokens: Sequence[int], start: int) -> tuple[int, list[torch.Tensor], list[torch.Tensor]] | None:
        """`(end, keys, values)`: the keys/values of `tokens[start:end]` from the row sharing the most of `tokens`
        (`end` leaves at least one token to run), or None when no row shares `MIN_ROW_REUSE` tokens past `start`."""
        best, best_end = None, start + MIN_ROW_REUSE - 1
        for key, entry in self.entries.items():
            if entry.start > start:
                continue
            end = min(common_length(key, tokens), len(tokens) - 1)
            if end > best_end:
                best, best_end = key, end
        if best is None:
            return None
        self.entries.move_to_end(best)
        entry = self.entries[best]
        self.hits += 1
        self.reused_tokens += best_end - start
        cut = slice(start - entry.start, best_end - entry.start)
        return best_end, [k[:, cut] for k in entry.keys], [v[:, cut] for v in entry.values]

    def put(self, tokens: tuple[int, ...], entry: RowEntry) -> None:
        if self.max_bytes <= 0 or entry.nbytes() > self.max_bytes:
            return
        self.entries[tokens] = entry
        self.entries.move_to_end(tokens)
        total = sum(e.nbytes() for e in self.entries.values())
        while total > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            total -= dropped.nbytes()


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class RowKV:
    """Each row's own keys and values, preallocated to the longest they can grow to."""

    def __init__(self, layers: int, rows: int, kv_heads: int, capacity: int, dim: int, device: Any, dtype: Any) -> None:
        import torch

        # zeros, not empty: padding slots are never written, and 0 x (a stale NaN or denormal) is NaN or slow
        self.keys = [torch.zeros(rows, kv_heads, capacity, dim, device=device, dtype=dtype) for _ in range(layers)]
        self.values = [torch.zeros(rows, kv_heads, capacity, dim, device=device, dtype=dtype) for _ in range(layers)]
        self.length = 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new keys/values after the current length; return the whole buffers, slots not yet written
        included (zeros, which the caller's mask hides): a slice of them would be strided, and bfloat16
        matrix products copy strided operands (~15 ms a decode step), while masked slots cost little."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer], self.values[layer]

    def write(self, row: int, first: int, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Keys/values computed earlier (`[kv_heads, n, dim]` per layer) into `row` from slot `first`."""
        for layer, (k, v) in enumerate(zip(keys, values)):
            self.keys[layer][row, :, first : first + k.shape[1]] = k
            self.values[layer][row, :, first : first + v.shape[1]] = v

    def select(self, index: torch.Tensor) -> None:
        """Keep only the rows at `index` (finished rows leave); only the filled part is copied."""
        import torch

        def keep(buffers: list[torch.Tensor]) -> list[torch.Tensor]:
            out = []
            for buffer in buffers:
                # zeros past the length too: the whole buffer is attended (masked), and 0 x stale NaN is NaN
                fresh = torch.zeros((len(index), *buffer.shape[1:]), device=buffer.device, dtype=buffer.dtype)
                torch.index_select(buffer[:, :, : self.length], 0, index, out=fresh[:, :, : self.length])
                out.append(fresh)
            return out

        self.keys, self.values = keep(self.keys), keep(self.values)


@dataclass
class RowSlots:
    """Some rows of a `RowKV` during prefill: each row's new tokens (left-padded to the group's width) go to
    the last slots before `width`; attention reads the last `span` slots (tokens copied in, then the new)."""

    kv: RowKV
    index: torch.Tensor
    new: list[int]
    width: int
    span: int

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.kv.keys[layer], self.kv.values[layer]
        group = k.shape[2]
        for i, (row, n) in enumerate(zip(self.index.tolist(), self.new)):
            keys[row, :, self.width - n : self.width] = k[i, :, group - n :]
            values[row, :, self.width - n : self.width] = v[i, :, group - n :]
        window = slice(self.width - self.span, self.width)
        return keys[:, :, window].index_select(0, self.index), values[:, :, window].index_select(0, self.index)


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
