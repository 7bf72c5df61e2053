"""The decoder's key/value memory: a shared prefix run once (`PrefixKV`), the prefixes and rows kept between calls
(`PrefixCache`, `RowCache`), and each row's own preallocated buffers during a batch (`RowKV`, `RowSlots`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch

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
