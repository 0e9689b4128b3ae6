"""The growing KV cache layer holds exactly what transformers' concatenating one does, through
appends in place, moves into bigger buffers, and the batch's reshaping in between."""

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from glm.engine import kv_batch
from glm.engine.growing_cache import GrowingLayer


def caches(layers: int = 2) -> tuple[DynamicCache, DynamicCache]:
    growing, plain = DynamicCache(), DynamicCache()
    growing.layers = [GrowingLayer() for _ in range(layers)]
    plain.layers = [DynamicLayer() for _ in range(layers)]
    return growing, plain


def append(both: tuple[DynamicCache, DynamicCache], rows: int, positions: int) -> None:
    for index in range(len(both[0].layers)):
        keys, values = torch.randn(2, rows, 3, positions, 4).unbind(0)
        for cache in both:
            cache.layers[index].update(keys, values)


def same(both: tuple[DynamicCache, DynamicCache]) -> bool:
    return all(
        torch.equal(g.keys, p.keys) and torch.equal(g.values, p.values)
        for g, p in zip(both[0].layers, both[1].layers, strict=True)
    )


def test_decode_steps_write_in_place_until_the_room_runs_out():
    both = caches()
    append(both, rows=2, positions=10)
    start = both[0].layers[0].keys.data_ptr()
    for _ in range(60):
        append(both, rows=2, positions=1)
    assert both[0].layers[0].keys.data_ptr() == start and same(both)
    for _ in range(40):  # past the first buffer's room
        append(both, rows=2, positions=1)
    assert both[0].get_seq_length() == 110 and same(both)


def test_the_batch_can_reshape_it_between_steps():
    both = caches()
    append(both, rows=3, positions=5)
    for reshape in (
        lambda c: kv_batch.select_rows(c, torch.tensor([0, 2])),
        lambda c: kv_batch.left_pad(c, 4),
        lambda c: kv_batch.trim_left(c, 3),
    ):
        for cache in both:
            reshape(cache)
        append(both, rows=2, positions=1)
        assert same(both)
    other = caches()
    append(other, rows=2, positions=both[0].get_seq_length())
    for cache, joining in zip(both, other, strict=True):
        kv_batch.stack(cache, joining)
    append(both, rows=4, positions=2)
    assert same(both)
