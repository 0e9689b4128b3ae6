"""The decode batch: the requests generating together, their shared KV cache and its mask."""

from typing import Generic, TypeVar

import torch
from transformers import DynamicCache

from glm.engine import kv_batch

Row = TypeVar("Row")


class DecodeBatch(Generic[Row]):
    """Rows in a left-padded layout (see glm.engine.kv_batch). `rows[i]` owns row i of every tensor."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rows: list[Row] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=device)  # [batch, physical length]
        self.positions = torch.zeros(0, dtype=torch.long, device=device)  # [batch] next position id

    def __len__(self) -> int:
        return len(self.rows)

    def join(self, rows: list[Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Add requests whose prompts are prefilled into `cache`, left-padded as `mask` [rows, length] says."""
        width, length = self.mask.shape[1], mask.shape[1]
        if self.cache is None:
            self.cache, self.mask = cache, mask
        else:
            kv_batch.left_pad(cache, width - length)
            kv_batch.left_pad(self.cache, length - width)
            kv_batch.stack(self.cache, cache)
            self.mask = torch.cat([_pad_left(self.mask, length - width), _pad_left(mask, width - length)])
        self.rows.extend(rows)
        self.positions = torch.cat([self.positions, mask.sum(dim=1)])

    def sequence(self, row: Row) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's keys and values [kv_heads, positions, head_dim] of `row`'s real positions
        (views into the cache)."""
        i = next(i for i, r in enumerate(self.rows) if r is row)
        return kv_batch.row(self.cache, i, int(self.mask[i].sum()))

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions [batch] and the attention mask [batch, length + 1] for the next decode step."""
        ones = torch.ones(len(self.rows), 1, dtype=torch.long, device=self.device)
        return self.positions, torch.cat([self.mask, ones], dim=1)

    def advance(self, mask: torch.Tensor) -> None:
        """Record that a decode step appended one real token to every row."""
        self.mask = mask
        self.positions = self.positions + 1

    def keep(self, rows: list[Row]) -> None:
        """Keep only `rows` (a subset, in batch order); drop padding that no remaining row needs."""
        if len(rows) == len(self.rows):
            return
        if not rows:
            self.__init__(self.device)
            return
        where = {id(row): i for i, row in enumerate(self.rows)}
        index = torch.tensor([where[id(row)] for row in rows], device=self.device)
        kv_batch.select_rows(self.cache, index)
        self.rows, self.mask, self.positions = rows, self.mask[index], self.positions[index]
        shared_padding = int((self.mask.sum(dim=0) == 0).long().cumprod(dim=0).sum())
        kv_batch.trim_left(self.cache, shared_padding)
        self.mask = self.mask[:, shared_padding:]


def _pad_left(mask: torch.Tensor, n: int) -> torch.Tensor:
    if n <= 0:
        return mask
    return torch.cat([mask.new_zeros(mask.shape[0], n), mask], dim=1)
