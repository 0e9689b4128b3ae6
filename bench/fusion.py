"""One decode step of the demo model with the lean decoder's fused products against its separate ones.

`python -m bench.fusion` times bench.steps.step_ms at `--quantize 4` (packed weights, the compiled
step) and `--quantize 16` (bf16 weights through the bf16 kernel, torch's step), at 1 and 8 rows,
with q/k/v and gate/up each one product (glm.engine.fusion) and, interleaved in the same process,
the same decoder with each projection called on its own (today's path where weights do not fuse).
Set OMP_WAIT_POLICY in the environment to compare thread wait policies: it is read when torch loads.
"""

import copy
import dataclasses
import os
import statistics

import torch

from bench.steps import step_ms
from glm.engine.decoder import Block, lean_decoder
from glm.models import load_model
from glm.models.source import model_source
from glm.quant import bf16
from tests.conftest import CACHE

QUANTIZE = {4: torch.float32, 16: torch.bfloat16}


def separate(block: Block) -> Block:
    """The block with each projection a call of its own (the fused weights' views, so the same bits)."""
    projections, mlp = copy.copy(block.projections), copy.copy(block.mlp)
    projections.fused, mlp.gate_up = None, None
    return dataclasses.replace(block, projections=projections, mlp=mlp)


@torch.inference_mode()
def main(rounds: int = 5, sizes: tuple[int, ...] = (1, 8)) -> None:
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, {torch.get_num_threads()} threads")
    print("| --quantize | rows | separate ms | fused ms | fused / separate |")
    print("|---|---|---|---|---|")
    for bits, dtype in QUANTIZE.items():
        model = load_model(model_source("demo"), torch.device("cpu"), dtype, CACHE, bits=bits).model
        bf16.use_kernel(model)
        lean = lean_decoder(model)
        variants = {"fused": lean.blocks, "separate": [separate(block) for block in lean.blocks]}
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(rounds):
            for name, blocks in variants.items():
                lean.blocks = blocks
                for size in sizes:
                    times.setdefault((name, size), []).append(step_ms(model, size))
        lean.blocks = variants["fused"]
        for size in sizes:
            before, after = (statistics.median(times[name, size]) for name in ("separate", "fused"))
            print(f"| {bits} | {size} | {before:.2f} | {after:.2f} | {after / before:.3f} |")


if __name__ == "__main__":
    main()
