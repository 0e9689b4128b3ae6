"""One decode step of the demo model with the lean decoder's fused products against its separate ones.

`python -m bench.fusion` times decode steps at `--quantize 4` (packed weights, the compiled step)
and `--quantize 16` (bf16 weights through the bf16 kernel, torch's step), at 1 and 8 rows, with
q/k/v and gate/up each one product (glm.engine.fusion) and with each projection called on its own
(the step before fusion), alternating step by step on one batch so that a noisy neighbour slows
both alike. Set OMP_WAIT_POLICY in the environment to compare thread wait policies: OpenMP reads
it when torch loads.
"""

import copy
import dataclasses
import os
import statistics

import torch

from bench.steps import filled_batch, timed_step
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
def main(steps: int = 40, sizes: tuple[int, ...] = (1, 8)) -> None:
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, {torch.get_num_threads()} threads")
    print("| --quantize | rows | separate ms | fused ms | fused / separate |")
    print("|---|---|---|---|---|")
    for bits, dtype in QUANTIZE.items():
        model = load_model(model_source("demo"), torch.device("cpu"), dtype, CACHE, bits=bits).model
        bf16.use_kernel(model)
        lean = lean_decoder(model)
        # Both in the layer-by-layer step, whose calls the fusion saves (not every layer in one call).
        lean.run_step = lean._compiled_step if lean.ops else lean._torch_step
        variants = {"separate": [separate(block) for block in lean.blocks], "fused": lean.blocks}
        for size in sizes:
            batch = filled_batch(model, size)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(steps):
                for name, blocks in variants.items():
                    lean.blocks = blocks
                    times[name].append(timed_step(model, batch) * 1000)
            before, after = (statistics.median(times[name][2:]) for name in variants)
            print(f"| {bits} | {size} | {before:.2f} | {after:.2f} | {after / before:.3f} |")
        lean.blocks = variants["fused"]


if __name__ == "__main__":
    main()
