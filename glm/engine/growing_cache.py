"""KV cache layers with room to grow, so that a decode step writes one position instead of copying
the whole cache.

transformers' DynamicLayer appends with torch.cat: every decode step copies every layer's keys
and values, a cost that grows with the context and with the batch. A GrowingLayer keeps its keys
and values as views into buffers with spare positions and writes new positions in place, taking
a bigger buffer (a quarter more) only when the room runs out. The views are ordinary tensors to
everything else: when glm.engine.kv_batch replaces them (a request joins or leaves the batch), the next
append sees they are no longer the views it made and moves them into new buffers.
"""

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

MIN_ROOM = 64  # positions


class GrowingLayer(DynamicLayer):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        # The views grow() made: whatever reshapes the cache puts other tensors in their place.
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        added = key_states.shape[-2]
        keys, values, length = self.room(added, key_states, value_states)
        keys[..., length : length + added, :] = key_states
        values[..., length : length + added, :] = value_states
        return self.grow(added)

    def room(
        self, added: int, keys_like: torch.Tensor, values_like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Key and value buffers with room for `added` positions after the `length` cached ones,
        and that length; whoever writes the new positions then calls `grow(added)`."""
        length = self.get_seq_length()
        if not self._has_room(length, added):
            self._buffers = (
                _moved(self.keys, keys_like, length, added),
                _moved(self.values, values_like, length, added),
            )
        return *self._buffers, length

    def grow(self, added: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Count the `added` positions written after the cached ones; the keys and values now cached."""
        length = self.get_seq_length()
        keys, values = self._buffers
        self.keys, self.values = keys[..., : length + added, :], values[..., : length + added, :]
        self._views = (self.keys, self.values)
        return self.keys, self.values

    def _has_room(self, length: int, added: int) -> bool:
        if self._buffers is None or self._views is None or length == 0:
            return False
        untouched = self.keys is self._views[0] and self.values is self._views[1]
        return untouched and length + added <= self._buffers[0].shape[-2]


def _moved(current: torch.Tensor, new: torch.Tensor, length: int, added: int) -> torch.Tensor:
    """A buffer with room for `added` more positions and a quarter more, holding `current`'s."""
    needed = length + added
    buffer = new.new_empty((*new.shape[:-2], needed + max(MIN_ROOM, needed // 4), new.shape[-1]))
    if length:
        buffer[..., :length, :] = current
    return buffer


def new_cache(model: PreTrainedModel) -> DynamicCache:
    """A cache for `model` whose full-attention layers grow in place (sliding-window layers, which
    drop old positions, stay transformers' own)."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
