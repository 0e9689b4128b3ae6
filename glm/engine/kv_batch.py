"""Reshaping transformers' DynamicCache so requests of different lengths can decode as one batch.

The batch is left-padded: every row shares one physical length, a row's real tokens sit at the
right end, and an attention mask hides the padding (the layout transformers' own batched
generation uses). Joining a request pads the shorter side on the left; a row that leaves is
dropped; padding that every row shares is trimmed. Only the two layer kinds of DynamicCache are
supported: full attention (transformers' own or glm.engine.growing_cache's), and sliding-window
attention, which stores at most `sliding_window - 1` positions and counts the rest in
`cumulative_length`.
"""

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from glm.engine.growing_cache import GrowingLayer


def _check(layer: DynamicLayer) -> None:
    if type(layer) not in (DynamicLayer, GrowingLayer, DynamicSlidingWindowLayer):
        raise TypeError(f"batching does not support cache layers of type {type(layer).__name__}")


def _stored_length(layer: DynamicLayer, physical: int) -> int:
    """How many positions a layer keeps for a sequence of `physical` positions."""
    if isinstance(layer, DynamicSlidingWindowLayer):
        return min(physical, layer.sliding_window - 1)
    return physical


def physical_length(cache: DynamicCache) -> int:
    return cache.get_seq_length()


def left_pad(cache: DynamicCache, n: int) -> None:
    """Prepend `n` padding positions to every row."""
    if n <= 0:
        return
    length = physical_length(cache) + n
    for layer in cache.layers:
        _check(layer)
        missing = _stored_length(layer, length) - layer.keys.shape[-2]
        if missing > 0:
            shape = (*layer.keys.shape[:-2], missing, layer.keys.shape[-1])
            layer.keys = torch.cat([layer.keys.new_zeros(shape), layer.keys], dim=-2)
            layer.values = torch.cat([layer.values.new_zeros(shape), layer.values], dim=-2)
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length = length


def stack(batch: DynamicCache, row: DynamicCache) -> None:
    """Append the rows of `row` to `batch`; both must have the same physical length."""
    if physical_length(batch) != physical_length(row):
        raise ValueError("caches must be padded to the same length before stacking")
    for mine, theirs in zip(batch.layers, row.layers, strict=True):
        _check(mine)
        mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
        mine.values = torch.cat([mine.values, theirs.values], dim=0)


def row(cache: DynamicCache, i: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Row i's last `n` positions (its real ones, when the row has `n`) in every layer: keys and
    values [kv_heads, n, head_dim], as views."""
    for layer in cache.layers:
        _check(layer)
    return [(layer.keys[i, :, -n:], layer.values[i, :, -n:]) for layer in cache.layers]


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    for layer in cache.layers:
        _check(layer)
        layer.keys = layer.keys[rows]
        layer.values = layer.values[rows]


def trim_left(cache: DynamicCache, n: int) -> None:
    """Drop the first `n` positions, which must be padding in every row."""
    if n <= 0:
        return
    length = physical_length(cache) - n
    for layer in cache.layers:
        _check(layer)
        keep = _stored_length(layer, length)
        layer.keys = layer.keys[..., layer.keys.shape[-2] - keep :, :]
        layer.values = layer.values[..., layer.values.shape[-2] - keep :, :]
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length = length
