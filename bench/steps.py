"""Which weight dtype and LM-head layout decode fastest on this machine, per batch size.

One decode step of the demo model through the engine's own batch code, for fp32 and bf16 weights
and for the LM head as transformers has it (`F.linear(x, W)`) or as a contiguous transposed copy
(`x @ W.T`). The fastest choice sets `--quantize 16`'s dtype on the CPU (glm/device.py).
"""

import copy
import statistics
import time

import torch

from glm.batch import DecodeBatch
from glm.generation import decode_step, new_cache, prefill_chunk


class TransposedHead(torch.nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight_t = weight.detach().t().contiguous()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.weight_t


def step_ms(model: torch.nn.Module, batch_size: int, steps: int = 8) -> float:
    batch: DecodeBatch[int] = DecodeBatch(torch.device("cpu"))
    for row in range(batch_size):
        cache, ids = new_cache(model), list(range(1000, 1014 + row))
        prefill_chunk(model, ids, cache)
        batch.join([row], cache, torch.ones(1, len(ids), dtype=torch.long))
    tokens = torch.full((batch_size,), 1234)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        positions, mask = batch.step_inputs()
        torch.argmax(decode_step(model, tokens, positions, mask, batch.cache), dim=-1)
        batch.advance(mask)
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:]) * 1000


@torch.inference_mode()
def measure(fp32_model: torch.nn.Module, batch_sizes: list[int], rounds: int = 2) -> dict[tuple[str, str, int], float]:
    """Best-of-`rounds` step time in ms for each (dtype, head layout, batch size), interleaved so
    that a noisy neighbour slows every variant alike."""
    models = {"fp32": fp32_model, "bf16": copy.deepcopy(fp32_model).to(torch.bfloat16)}
    heads = {name: {"F.linear": m.lm_head, "x @ W.T": TransposedHead(m.lm_head.weight)} for name, m in models.items()}
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(rounds):
        for dtype, model in models.items():
            for layout, head in heads[dtype].items():
                model.lm_head = head
                for size in batch_sizes:
                    key = (dtype, layout, size)
                    best[key] = min(best.get(key, float("inf")), step_ms(model, size))
            model.lm_head = heads[dtype]["F.linear"]
    return best


def table(best: dict[tuple[str, str, int], float]) -> list[str]:
    lines = ["| weights | LM head | batch | ms per decode step | tokens/s |", "|---|---|---|---|---|"]
    for (dtype, layout, size), ms in best.items():
        lines.append(f"| {dtype} | `{layout}` | {size} | {ms:.1f} | {size * 1000 / ms:.1f} |")
    return lines
