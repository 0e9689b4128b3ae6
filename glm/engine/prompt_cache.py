"""The prompt cache: the KV of token-id prefixes the engine has computed, for later prompts that
begin with the same ids (automatic prefix caching).

Every ChatGLM and OpenAI client sends the whole conversation again each turn, and agents the same
system prompt and tools on every call; without this, each of those is read again from the start.

A sequence is cut into blocks of BLOCK token ids, and only whole blocks are kept, as vLLM does. A
block is known by its ids and the block before it, compared exactly (no hash that two prefixes
could share), so the blocks form a tree whose paths are prefixes: conversations with one system
prompt share its blocks. A prompt reuses the longest path of kept blocks that begins it. Only the
KV of an identical id prefix is ever reused, so nothing a user did not send reaches them.

A request's cache salt stands before its first block, as vLLM's `cache_salt` does: the tree of
each salt is its own, so a prompt reuses only what prompts of its salt left. Otherwise how much of
a prompt came from the cache (usage's cached tokens, and the time to the first token) would tell
its sender what other users, who sent the same prefix, had sent.

The blocks live within a byte budget and are evicted least recently used first. A path is always
marked used from its end back to its start, so a block is never more recently used than the block
before it: the least recently used block is one that nothing continues, and evicting it leaves
every kept block reachable. The engine thread owns the cache; `stats` may be read from any thread.
"""

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from glm.engine.api import PromptCacheStats

BLOCK = 16  # token ids

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys and values [kv_heads, positions, head_dim]


# (the serial of the block before it, or at the start the request's cache salt, 0 for none; its ids)
BlockKey = tuple[Hashable, tuple[int, ...]]


@dataclass(eq=False)
class _Block:
    key: BlockKey
    serial: int
    kv: torch.Tensor  # [layers, 2, kv_heads, BLOCK, head_dim]

    @property
    def bytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


class PromptCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._blocks: OrderedDict[BlockKey, _Block] = OrderedDict()  # least recent first
        self._serials = itertools.count(1)
        self.stats = PromptCacheStats()

    def reusable(self, length: int) -> int:
        """How many tokens of a prompt of `length` a later one could take from the cache: its whole
        blocks but for the last token (0 with the cache off)."""
        return (length - 1) // BLOCK * BLOCK if self.budget else 0

    def reuse(
        self, prompt: list[int], empty: Callable[[], DynamicCache], salt: Hashable | None = None
    ) -> DynamicCache | None:
        """A cache (from `empty`) holding the KV of the longest prefix of `prompt` kept under
        `salt`, or None when none is kept. The prompt's last token is always left to read, since
        its logits choose the first token of the reply."""
        path = self._path(prompt[: self.reusable(len(prompt))], salt)
        reused = len(path) * BLOCK
        self.stats.count(len(prompt), reused)
        if not path:
            return None
        self._touch(path)
        # [blocks, layers, 2, kv_heads, BLOCK, head_dim] -> [layers, 2, kv_heads, positions, head_dim]:
        # two whole copies, where a concatenation per layer would take thousands of small operations.
        stacked = torch.stack([block.kv for block in path]).permute(1, 2, 3, 0, 4, 5)
        merged = stacked.reshape(*stacked.shape[:3], reused, stacked.shape[-1])
        cache = empty()
        for (keys, values), layer in zip(merged, cache.layers, strict=True):
            layer.update(keys[None], values[None])
        return cache

    def keep(self, ids: list[int], layers: list[LayerKV], salt: Hashable | None = None) -> None:
        """Keep the whole blocks of `ids` under `salt`, whose KV `layers` holds (each layer's keys
        and values for at least those positions), as far as the budget allows."""
        if self.budget == 0:
            return
        path = self._path(ids, salt)
        parent = path[-1].serial if path else _root(salt)
        start, end = len(path) * BLOCK, len(ids) // BLOCK * BLOCK
        if end > start:
            # The new blocks follow the kept ones (a block's key holds its parent's serial, so none
            # after a new one can be kept yet): their KV is gathered in one copy, then cut.
            span = torch.stack([torch.stack([keys[:, start:end], values[:, start:end]]) for keys, values in layers])
            for offset in range(0, end - start, BLOCK):
                key = (parent, tuple(ids[start + offset : start + offset + BLOCK]))
                block = self._add(key, span[..., offset : offset + BLOCK, :].clone())
                path.append(block)
                parent = block.serial
        self._touch(path)
        self._evict()

    def clear(self) -> None:
        self._blocks.clear()
        self.stats.bytes = 0

    def _path(self, ids: list[int], salt: Hashable | None) -> list[_Block]:
        path: list[_Block] = []
        parent = _root(salt)
        for start in range(0, len(ids) - BLOCK + 1, BLOCK):
            block = self._blocks.get((parent, tuple(ids[start : start + BLOCK])))
            if block is None:
                break
            path.append(block)
            parent = block.serial
        return path

    def _add(self, key: BlockKey, kv: torch.Tensor) -> _Block:
        block = _Block(key, next(self._serials), kv)
        self._blocks[key] = block
        self.stats.bytes += block.bytes
        return block

    def _touch(self, path: list[_Block]) -> None:
        for block in reversed(path):
            self._blocks.move_to_end(block.key)

    def _evict(self) -> None:
        while self.stats.bytes > self.budget:
            _, block = self._blocks.popitem(last=False)
            self.stats.bytes -= block.bytes


def _root(salt: Hashable | None) -> Hashable:
    """What stands before a prompt's first block: its salt (a string, or any other value that is
    not an int), or 0; never a block's serial, an int from 1."""
    return 0 if salt is None else salt
