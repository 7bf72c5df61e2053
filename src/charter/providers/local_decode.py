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

The parts it runs live beside it, one job each: `local_kv` (the prefix and row caches, each row's buffers),
`local_kernels` (the matrix products and rotary embeddings), `local_weights` (reading the weights).
torch's private oneDNN operators and `transformers`' rotary internals are reached through one checked accessor
each (`local_kernels.packed_products`, `local_kernels.transformers_rotary`). Where one is missing or fails its
check, a warning line says so and the products run through `F.linear` (the same results as `transformers`), or the
model runs through `transformers` alone (`DecoderUnavailable`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from charter.providers.local_kernels import Rotation, packing, rows_are_independent
from charter.providers.local_kv import (
    MIN_ROW_REUSE,
    LayerKV,
    PrefixCache,
    PrefixKV,
    RowCache,
    RowEntry,
    RowKV,
    RowSlots,
    common_length,
)
from charter.providers.local_weights import Weights

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
