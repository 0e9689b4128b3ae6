"""Does a 9B model load packed on a 24 GB machine? `python -m bench.big_load DIR`.

Writes, once, a random-weight checkpoint with glm-4-9b-chat-hf's configuration into DIR (bf16
safetensors in 2 GB shards, about 19 GB of disk), then loads it with `--quantize 8` and `4` through
the server's own folder loader (glm/models/weights.py), each in a fresh process, and prints the
packed size, the peak resident memory while loading and one decode step at one stream. Random
weights say nothing of quality; memory and speed depend only on the shapes. Not part of `make
bench`: writing the checkpoint takes minutes and the disk space is rarely free.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from accelerate import init_empty_weights
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GlmConfig

from bench.run import json_lines, machine
from bench.steps import step_ms
from glm.models.weights import Weights
from glm.quant.load import weight_bytes

# glm-4-9b-chat-hf's config.json, the parts that set the weights' shapes.
CONFIG = GlmConfig(
    vocab_size=151552,
    hidden_size=4096,
    intermediate_size=13696,
    num_hidden_layers=40,
    num_attention_heads=32,
    num_key_value_heads=2,
    head_dim=128,
    partial_rotary_factor=0.5,
    attention_bias=True,
    max_position_embeddings=131072,
    rms_norm_eps=1.5625e-07,
    tie_word_embeddings=False,
    pad_token_id=151329,
    eos_token_id=[151329, 151336, 151338],
)
SHARD_BYTES = 2 << 30
GB = 1e9


def write_checkpoint(folder: Path) -> None:
    """Random bf16 weights, written shard by shard so that writing never holds the model."""
    with init_empty_weights():
        shapes = {name: p.shape for name, p in AutoModelForCausalLM.from_config(CONFIG).named_parameters()}
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}

    def flush() -> None:
        name = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard.clear()

    for name, shape in shapes.items():
        ones = name.endswith("norm.weight")
        shard[name] = (
            torch.ones(shape, dtype=torch.bfloat16)
            if ones
            else (torch.randn(shape, generator=generator) * 0.02).bfloat16()
        )
        if sum(t.numel() * 2 for t in shard.values()) >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    CONFIG.save_pretrained(folder)


def measure(folder: Path, bits: int) -> dict:
    started = time.perf_counter()
    model = Weights(bits, torch.float32).load_folder(folder)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.inference_mode():
        one = step_ms(model, 1, steps=4)
    return {"bits": bits, "packed": sum(weight_bytes(model)), "peak": peak, "seconds": seconds, "step_ms": one}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the random checkpoint is (or will be) written")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.one is not None:
        print(json.dumps(measure(args.folder, args.one)))
        return 0
    if not (args.folder / "model.safetensors.index.json").is_file():
        print(f"writing the random checkpoint into {args.folder} ...", file=sys.stderr, flush=True)
        write_checkpoint(args.folder)
    disk = sum(f.stat().st_size for f in args.folder.glob("*.safetensors"))
    lines = [
        f"# A 9B model (glm-4-9b-chat-hf's shapes, random bf16 weights) loaded packed: {machine()}",
        "",
        f"Checkpoint on disk: {disk / GB:.1f} GB of bf16 safetensors.",
        "",
        "| setting | packed weights GB | peak resident memory GB | load s | decode step, 1 stream, ms |",
        "|---|---|---|---|---|",
    ]
    for bits in (8, 4):
        print(f"loading with --quantize {bits} ...", file=sys.stderr, flush=True)
        row = json_lines([sys.executable, "-m", "bench.big_load", str(args.folder.resolve()), "--one", str(bits)])[-1]
        lines.append(
            f"| --quantize {bits} | {row['packed'] / GB:.2f} | {row['peak'] / GB:.2f} | {row['seconds']:.0f} | "
            f"{row['step_ms']:.0f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
