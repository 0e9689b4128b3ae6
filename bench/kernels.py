"""Milliseconds per call of a linear layer on a model's shapes: `python -m bench.kernels [--model gemma]`.

Compares stock PyTorch (fp32 and bf16 F.linear, per-channel int8 `_weight_int8pack_mm`) with the
glm_quant.bf16_linear kernel (bf16k, x in bf16) and the glm_quant.qlinear kernel on each block format,
each on every instruction set this CPU runs (`:avx2`, `:avx512`, `:avx512-bf16`, `:avx512-vnni`,
`:amx`; the block formats do not use BF16, so they skip `:avx512-bf16`, and only they have integer
products, from `:avx512-vnni` on, with x rounded to int8 and, marked `/x16`, to int16, which `:amx`
multiplies on its tiles for q8_0), at 1, 2, 4 and 8 rows of x (decoding that many streams):
where bf16k stops beating bf16 sets glm/quant/bf16.py's KERNEL_MAX_ROWS. The last lines turn the
times into a per-token estimate for the whole model.
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

# (N, K) of each model's projections, and how many of each one token passes through.
SHAPES = {
    "smollm2": {  # SmolLM2-135M: 30 layers of 576, MLP 1536, 3 of 9 heads for k and v, vocabulary 49152
        "q": ((576, 576), 30),
        "k, v": ((192, 576), 60),
        "o": ((576, 576), 30),
        "gate, up": ((1536, 576), 60),
        "down": ((576, 1536), 30),
        "lm head": ((49152, 576), 1),
    },
    "gemma": {  # Gemma 3 270M: 18 layers of 640, MLP 2048, vocabulary 262144
        "q": ((1024, 640), 18),
        "k, v": ((256, 640), 36),
        "o": ((640, 1024), 18),
        "gate, up": ((2048, 640), 36),
        "down": ((640, 2048), 18),
        "lm head": ((262144, 640), 1),
    },
}
ROWS = (1, 2, 4, 8)
INTEGER_ISAS = ("avx512-vnni", "amx")
CACHE_FLUSH_BYTES = 128 << 20


def q5_0(w: torch.Tensor) -> Packed:
    """Q5_0 as a GGUF file holds it: formats.py only takes it over from GGUF files."""
    raw = gguf_quantize(w.float().numpy(), GGMLQuantizationType.Q5_0)
    return take_over(raw, GGMLQuantizationType.Q5_0, Format.Q5_0)


# A way of multiplying: the instruction set it needs chosen first (None: no glm_quant kernel), and the call.
Candidate = tuple[str | None, Callable[[], object]]


def medians_ms(fns: dict[str, Candidate], repeats: int, flush: torch.Tensor | None) -> dict[str, float]:
    """Each candidate's median time. A round calls each once, so a drift of this shared machine's
    load reaches every candidate alike; the first two rounds warm up and are not counted."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 2):
        for name, (isa, fn) in fns.items():
            if isa is not None:
                torch.ops.glm_quant.use_isa(isa)
            if flush is not None:
                flush.add_(1)
            start = time.perf_counter()
            fn()
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def candidates(w: torch.Tensor, x: torch.Tensor) -> dict[str, Candidate]:
    wb, xb = w.bfloat16(), x.bfloat16()
    scales = w.abs().amax(dim=1) / 127
    w8 = (w / scales.unsqueeze(1)).round().to(torch.int8)
    fns: dict[str, Candidate] = {
        "fp32": (None, lambda: F.linear(x, w)),
        "bf16": (None, lambda: F.linear(xb, wb)),
        "int8pack": (None, lambda: torch._weight_int8pack_mm(x, w8, scales)),
    }
    bf16_op, op = bf16_linear_op(), qlinear_op()
    if bf16_op is None or op is None:
        return fns
    isas = torch.ops.glm_quant.supported_isas()
    for isa in isas:
        if isa not in INTEGER_ISAS:  # whose bf16 loops are avx512-bf16's
            fns[f"bf16k:{isa}"] = (isa, lambda: bf16_op(xb, wb))
    # The block formats run the same loops at avx512 and avx512-bf16.
    block_isas = [isa for isa in isas if isa != "avx512-bf16"]
    for packed in (quantize(w, Format.Q8_0), quantize(w, Format.Q4_1), q5_0(w)):
        for isa in block_isas:
            name = f"{packed.format.name.lower()}:{isa}"
            fns[name] = (isa, lambda p=packed: op(x, int(p.format), p.qs, p.d, p.aux, 8))
            if isa in INTEGER_ISAS:  # x rounded to int16 instead
                fns[f"{name}/x16"] = (isa, lambda p=packed: op(x, int(p.format), p.qs, p.d, p.aux, 16))
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="smollm2", help="whose shapes (default: smollm2)")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per cell (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="torch's threads (default: 2, as the server runs)")
    parser.add_argument(
        "--warm", action="store_true", help="leave the weight in cache between calls (default: evict it)"
    )
    args = parser.parse_args()
    # A decode step streams ~100M weights, far more than the L3 holds, so by default each call
    # starts with its weight evicted by writing a buffer larger than any cache.
    flush = None if args.warm else torch.zeros(CACHE_FLUSH_BYTES // 4)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    totals: dict[tuple[int, str], float] = {}
    header = None
    for name, ((n, k), count) in SHAPES[args.model].items():
        w = torch.randn(n, k) / k**0.5
        for m in ROWS:
            fns = candidates(w, torch.randn(m, k))
            if header is None:
                header = f"{'layer':>9} {'N x K':>12} {'M':>2} " + " ".join(f"{c:>16}" for c in fns)
                print(header)
            times = medians_ms(fns, args.repeats, flush)
            for c, t in times.items():
                totals[m, c] = totals.get((m, c), 0.0) + t * count
            print(f"{name:>9} {f'{n}x{k}':>12} {m:>2} " + " ".join(f"{t:16.3f}" for t in times.values()))
    check_q8_0()
    print(f"per decode step (M tokens), whole {args.model} model (every layer and the lm head), ms:")
    for m in ROWS:
        print(f"  M={m}: " + " ".join(f"{c}={t:.1f}" for (rows, c), t in totals.items() if rows == m))
    if qlinear_op() is not None:
        whole_steps(args.model, args.repeats)


def rounded(x: torch.Tensor, x_bits: int) -> torch.Tensor:
    """x as the integer products multiply it: rounded per block of 32 to x_bits."""
    blocks = x.reshape(len(x), -1, 32)
    d = blocks.abs().amax(-1, keepdim=True) / (2 ** (x_bits - 1) - 1)
    return ((blocks * torch.where(d != 0, 1 / d, 0)).round() * d).reshape(x.shape)


def check_q8_0() -> None:
    """The kernels against the reference once per instruction set, so a fast wrong kernel shows."""
    op = qlinear_op()
    if op is None:
        return
    p = quantize(torch.randn(640, 640), Format.Q8_0)
    x = torch.randn(8, 640)
    for isa in torch.ops.glm_quant.supported_isas():
        torch.ops.glm_quant.use_isa(isa)
        wanted = (rounded(x, 8) if isa in INTEGER_ISAS else x) @ dequantize(p).T
        error = (op(x, int(p.format), p.qs, p.d, p.aux, 8) - wanted).abs().max().item()
        print(f"q8_0:{isa} max abs error vs x (as it multiplies it) @ dequantize(w).T: {error:.2e}")


def whole_steps(model: str, repeats: int) -> None:
    """A decode step's products as the demo model holds them: q4_1 layers and the q8_0 LM head (its
    x at 16 bits where the kernel rounds x, or kept float: /float-head), called in order with nothing
    evicted between them."""
    op = qlinear_op()
    layers = []
    for name, ((n, k), count) in SHAPES[model].items():
        fmt, x_bits = (Format.Q8_0, 16) if name == "lm head" else (Format.Q4_1, 8)
        # Each its own weight, as each layer streams its own from memory.
        layers += [(quantize(torch.randn(n, k) / k**0.5, fmt), x_bits) for _ in range(count)]
    print(f"whole decode steps (q4_1 layers, q8_0 head), median of {repeats}, ms:")
    for m in ROWS:
        xs = {k: torch.randn(m, k) for k in {p.shape[1] for p, _ in layers}}

        def step(xs: dict[int, torch.Tensor] = xs) -> None:
            for p, x_bits in layers:
                op(xs[p.shape[1]], int(p.format), p.qs, p.d, p.aux, x_bits)

        def float_head(xs: dict[int, torch.Tensor] = xs) -> None:
            for p, x_bits in layers:
                op(xs[p.shape[1]], int(p.format), p.qs, p.d, p.aux, 32 if x_bits == 16 else x_bits)

        isas = [isa for isa in torch.ops.glm_quant.supported_isas() if isa != "avx512-bf16"]
        fns: dict[str, Candidate] = {isa: (isa, step) for isa in isas}
        fns |= {f"{isa}/float-head": (isa, float_head) for isa in isas if isa in INTEGER_ISAS}
        times = medians_ms(fns, repeats, None)
        print(f"  M={m}: " + " ".join(f"{isa}={t:.2f}" for isa, t in times.items()))


if __name__ == "__main__":
    main()
