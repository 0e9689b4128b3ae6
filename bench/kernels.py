"""Milliseconds per call of a linear layer on the demo model's shapes: `python -m bench.kernels`.

Compares stock PyTorch (fp32 and bf16 F.linear, per-channel int8 `_weight_int8pack_mm`) with the
glm_quant.bf16_linear kernel (bf16k) and the glm_quant.qlinear kernel on each block format, at 1, 2,
4 and 8 rows of x (decoding that many streams): where bf16k stops beating bf16 sets
glm/quant/bf16.py's KERNEL_MAX_ROWS. The last lines turn the times into a per-token estimate for the whole demo model.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType
from gguf.quants import quantize as gguf_quantize

from glm.quant.formats import Format, Packed, dequantize, quantize
from glm.quant.gguf_blocks import take_over
from glm.quant.kernels import bf16_linear_op, qlinear_op

# (N, K) of the demo model's projections, and how many of each one token passes through.
SHAPES = {
    "q": ((1024, 640), 18),
    "k, v": ((256, 640), 36),
    "o": ((640, 1024), 18),
    "gate, up": ((2048, 640), 36),
    "down": ((640, 2048), 18),
    "lm head": ((262144, 640), 1),
}
ROWS = (1, 2, 4, 8)
CACHE_FLUSH_BYTES = 128 << 20


def q5_0(w: torch.Tensor) -> Packed:
    """Q5_0 as a GGUF file holds it: formats.py only takes it over from GGUF files."""
    raw = gguf_quantize(w.float().numpy(), GGMLQuantizationType.Q5_0)
    return take_over(raw, GGMLQuantizationType.Q5_0, Format.Q5_0)


def median_ms(fn: Callable[[], object], repeats: int, flush: torch.Tensor | None) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if flush is not None:
            flush.add_(1)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def candidates(w: torch.Tensor, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    wb, xb = w.bfloat16(), x.bfloat16()
    scales = w.abs().amax(dim=1) / 127
    w8 = (w / scales.unsqueeze(1)).round().to(torch.int8)
    fns = {
        "fp32": lambda: F.linear(x, w),
        "bf16": lambda: F.linear(xb, wb),
        "int8pack": lambda: torch._weight_int8pack_mm(x, w8, scales),
    }
    bf16_op = bf16_linear_op()
    if bf16_op is not None:
        fns["bf16k"] = lambda: bf16_op(xb, wb)
    op = qlinear_op()
    if op is not None:
        for packed in (quantize(w, Format.Q8_0), quantize(w, Format.Q4_1), q5_0(w)):
            name = packed.format.name.lower()
            fns[name] = lambda p=packed: op(x, int(p.format), p.qs, p.d, p.aux)
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per cell (median taken)")
    parser.add_argument(
        "--warm", action="store_true", help="leave the weight in cache between calls (default: evict it)"
    )
    args = parser.parse_args()
    # A decode step streams ~100M weights, far more than the L3 holds, so by default each call
    # starts with its weight evicted by writing a buffer larger than any cache.
    flush = None if args.warm else torch.zeros(CACHE_FLUSH_BYTES // 4)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    totals: dict[tuple[int, str], float] = {}
    header = None
    for name, ((n, k), count) in SHAPES.items():
        w = torch.randn(n, k) / k**0.5
        for m in ROWS:
            fns = candidates(w, torch.randn(m, k))
            if header is None:
                header = f"{'layer':>9} {'N x K':>12} {'M':>2} " + " ".join(f"{c:>9}" for c in fns)
                print(header)
            times = {c: median_ms(fn, args.repeats, flush) for c, fn in fns.items()}
            for c, t in times.items():
                totals[m, c] = totals.get((m, c), 0.0) + t * count
            print(f"{name:>9} {f'{n}x{k}':>12} {m:>2} " + " ".join(f"{t:9.3f}" for t in times.values()))
    # The quantized packs are checked against the reference once, so a fast wrong kernel shows.
    w = torch.randn(640, 640)
    p = quantize(w, Format.Q8_0)
    op = qlinear_op()
    if op is not None:
        x = torch.randn(8, 640)
        error = (op(x, int(p.format), p.qs, p.d, p.aux) - x @ dequantize(p).T).abs().max().item()
        print(f"q8_0 max abs error vs x @ dequantize(w).T: {error:.2e}")
    print("per decode step (M tokens), whole demo model (18 layers + lm head), ms:")
    for m in ROWS:
        print(f"  M={m}: " + " ".join(f"{c}={t:.1f}" for (rows, c), t in totals.items() if rows == m))


if __name__ == "__main__":
    main()
