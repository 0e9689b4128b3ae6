"""Which weight dtype and linear path decode fastest on this machine, per batch size.

One decode step of the demo model through the engine's own batch code: fp32 and bf16 weights
through torch's `F.linear`, and bf16 weights through the glm_quant.bf16_linear kernel for products
of up to two rows (glm/quant/bf16.py; torch's matmul for more), which is what `--quantize 16`
serves on the CPU. The fastest choice sets `--quantize 16`'s dtype on the CPU (glm/startup.py).
"""

import copy
import statistics
import time

import torch

from glm.engine.batch import DecodeBatch
from glm.engine.generation import decode_step, new_cache, prefill_chunk
from glm.quant import bf16


def filled_batch(model: torch.nn.Module, batch_size: int) -> DecodeBatch[int]:
    """A batch of `batch_size` rows, each after a prompt of its own length."""
    batch: DecodeBatch[int] = DecodeBatch(torch.device("cpu"))
    for row in range(batch_size):
        cache, ids = new_cache(model), list(range(1000, 1014 + row))
        prefill_chunk(model, ids, cache)
        batch.join([row], cache, torch.ones(1, len(ids), dtype=torch.long))
    return batch


def timed_step(model: torch.nn.Module, batch: DecodeBatch[int]) -> float:
    """Seconds for one decode step of every row of `batch`, the next token chosen."""
    tokens = torch.full((len(batch),), 1234)
    started = time.perf_counter()
    positions, mask = batch.step_inputs()
    torch.argmax(decode_step(model, tokens, positions, mask, batch.cache), dim=-1)
    batch.advance(mask)
    return time.perf_counter() - started


def step_ms(model: torch.nn.Module, batch_size: int, steps: int = 8) -> float:
    batch = filled_batch(model, batch_size)
    times = [timed_step(model, batch) for _ in range(steps)]
    return statistics.median(times[2:]) * 1000


@torch.inference_mode()
def measure(fp32_model: torch.nn.Module, batch_sizes: list[int], rounds: int = 2) -> dict[tuple[str, str, int], float]:
    """Best-of-`rounds` step time in ms for each (dtype, linear path, batch size), interleaved so
    that a noisy neighbour slows every variant alike."""
    bf16_model = copy.deepcopy(fp32_model).to(torch.bfloat16)
    with_kernel = copy.deepcopy(bf16_model)
    variants = {("fp32", "F.linear"): fp32_model, ("bf16", "F.linear"): bf16_model}
    if bf16.use_kernel(with_kernel):
        variants["bf16", f"kernel up to {bf16.KERNEL_MAX_ROWS} rows"] = with_kernel
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(rounds):
        for (dtype, path), model in variants.items():
            for size in batch_sizes:
                key = (dtype, path, size)
                best[key] = min(best.get(key, float("inf")), step_ms(model, size))
    return best


def table(best: dict[tuple[str, str, int], float]) -> list[str]:
    lines = ["| weights | linear layers | batch | ms per decode step | tokens/s |", "|---|---|---|---|---|"]
    for (dtype, path, size), ms in best.items():
        lines.append(f"| {dtype} | {path} | {size} | {ms:.1f} | {size * 1000 / ms:.1f} |")
    return lines
