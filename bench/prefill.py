"""Milliseconds to read a prompt through the demo model with packed weights: `python -m bench.prefill`.

Products of more than glm/quant/modules.py's KERNEL_MAX_ROWS rows widen the packed weight per call
and run torch's matmul; this compares widening to float32 with a float32 matmul (PROMPT_BF16 off,
the path of CPUs without AMX) against widening to bfloat16 with oneDNN's bf16 matmul (on). For
each --quantize setting and each prompt shape (streams x tokens, as the engine's prefill_group
reads several whole prompts in one pass, or a chunk of one), it times:
  - the whole model reading it (prefill_group: a fresh cache, logits of the last position only);
  - one layer's seven products (q, k, v, o, gate, up, down) on that many rows.
`--quality` instead reads bench/quant.py's text in one pass, as bench/quant.py does, and prints each
path's teacher-forced next-token agreement with the float32 model and its perplexity, beside the
bf16 model's (what bf16 products cost in quality; decoding is not affected by PROMPT_BF16).

The two paths alternate within each round, so a drift of this shared machine's load reaches both
alike; the figures are medians of the rounds after the first.

`--onednn-isa AVX512_CORE_BF16` (oneDNN's ONEDNN_MAX_CPU_ISA, set before torch loads) keeps
oneDNN off the AMX tiles, to see what bf16 gains on an AVX-512 BF16 CPU without them.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

# (streams, tokens each): one chunk of a long prompt alone, and eight short prompts read together.
SHAPES = ((1, 128), (1, 512), (8, 32), (8, 64))
PRODUCTS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def compare(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Each (fn, path)'s median ms over the rounds after the first (which warms caches and oneDNN's kernels)."""
    from glm.quant import modules

    times: dict[str, list[float]] = {f"{name}, {path}": [] for name in fns for path in ("fp32", "bf16")}
    for _ in range(rounds + 1):
        for path in ("fp32", "bf16"):
            modules.PROMPT_BF16 = path == "bf16"
            for name, fn in fns.items():
                times[f"{name}, {path}"].append(timed(fn))
    return {key: statistics.median(ms[1:]) for key, ms in times.items()}


def demo(bits: int, dtype_name: str = "float32"):
    import torch

    from bench.quant import CACHE
    from glm.models.gguf import gguf_weights
    from glm.models.packaged import demo_gguf
    from glm.models.weights import Weights

    weights = Weights(bits, getattr(torch, dtype_name))
    return weights.place(gguf_weights(demo_gguf(), CACHE, weights), torch.device("cpu"))


def shape_ms(model, linears: list, streams: int, tokens: int, rounds: int) -> dict[str, float]:
    import torch

    from glm.engine.generation import prefill_group

    prompts = [[1000 + (7 * s + t) % 20000 for t in range(tokens)] for s in range(streams)]
    xs = [torch.randn(streams * tokens, linear.in_features) for linear in linears]
    return compare(
        {
            "model": lambda: prefill_group(model, prompts, 0),
            "layer": lambda: [linear(x) for linear, x in zip(linears, xs, strict=True)],
        },
        rounds,
    )


def measure(bits: int, rounds: int) -> list[str]:
    import torch

    model = demo(bits)
    layer = model.model.layers[0]
    linears = [getattr(layer.self_attn if name[0] in "qkvo" else layer.mlp, name) for name in PRODUCTS]
    lines = []
    with torch.inference_mode():
        for streams, tokens in SHAPES:
            ms = shape_ms(model, linears, streams, tokens, rounds)
            lines.append(
                f"| {bits} | {streams}x{tokens} | {ms['model, fp32']:.1f} | {ms['model, bf16']:.1f} | "
                f"{ms['model, fp32'] / ms['model, bf16']:.2f} | {ms['layer, fp32']:.2f} | {ms['layer, bf16']:.2f} | "
                f"{ms['layer, fp32'] / ms['layer, bf16']:.2f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def quality(bits_list: list[int]) -> list[str]:
    """Teacher-forced top-1 agreement with float32 and perplexity on bench/quant.py's text, read in one pass."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from bench.quant import CACHE, TEXT
    from glm.models.gguf import tokenizer_folder
    from glm.models.packaged import demo_gguf
    from glm.quant import modules

    ids = AutoTokenizer.from_pretrained(tokenizer_folder(demo_gguf(), CACHE))(TEXT.read_text(), return_tensors="pt")
    ids = ids.input_ids[0]

    def logits(model: torch.nn.Module) -> torch.Tensor:
        with torch.inference_mode():
            return model(ids[None]).logits[0, :-1].float()

    reference = logits(demo(16))
    rows = [("fp32", reference), ("bf16 (--quantize 16)", logits(demo(16, "bfloat16")))]
    for bits in bits_list:
        model = demo(bits)
        for bf16 in (False, True):
            modules.PROMPT_BF16 = bf16
            rows.append((f"--quantize {bits}, prompt products in {'bf16' if bf16 else 'fp32'}", logits(model)))
    base = torch.exp(F.cross_entropy(reference, ids[1:])).item()
    lines = [f"{len(ids)} tokens", "", "| setting | top-1 vs fp32 | perplexity | x fp32 |", "|---|---|---|---|"]
    for label, got in rows:
        top1 = (got.argmax(-1) == reference.argmax(-1)).float().mean().item()
        ppl = torch.exp(F.cross_entropy(got, ids[1:])).item()
        lines.append(f"| {label} | {top1:.1%} | {ppl:.3f} | {ppl / base:.4f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quantize", type=int, nargs="+", default=[4, 8], choices=[4, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", action="store_true", help="print top-1 and perplexity instead of times")
    parser.add_argument("--onednn-isa", help="ONEDNN_MAX_CPU_ISA for this run, e.g. AVX512_CORE_BF16")
    args = parser.parse_args()
    if args.onednn_isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.onednn_isa
    import torch

    from bench.run import machine

    torch.set_num_threads(args.threads)
    if args.quality:
        print("\n".join(quality(args.quantize)))
        return 0
    print(f"prompt reading on demo, {machine()}, {args.threads} threads, oneDNN ISA {args.onednn_isa or 'any'}")
    print()
    print("| --quantize | prompt | model fp32 ms | model bf16 ms | x | layer fp32 ms | layer bf16 ms | x |")
    print("|---|---|---|---|---|---|---|---|")
    for bits in args.quantize:
        print("\n".join(measure(bits, args.rounds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
