"""Our engine against vLLM's, both behind our server, in one run, at 1 and 8 streams.

On this machine's CPU (part of `make bench` once `make test-vllm` has built .venv-vllm): the demo
model, ours at its default `--quantize` and at 16 (bf16) against vLLM's CPU engine on the same
weights in bf16. On a GPU (`--gpu`, from scripts/gpu-contract.sh): a random model with
glm-4-9b-chat-hf's shapes, bf16 on both engines.
"""

import argparse
import sys
from pathlib import Path

from bench.rows import OUT, Row, measure, ratios, table
from bench.servers import ROOT, ours

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# vLLM's KV cache on the CPU, in GB: 8 streams of the demo need well under one.
CPU_KV_GB = "2"
# glm-4-9b-chat-hf's config.json, less its vocabulary: the bench's prompts use tiny's byte tokenizer.
GLM4_9B = {
    "hidden_size": 4096,
    "intermediate_size": 13696,
    "num_hidden_layers": 40,
    "num_attention_heads": 32,
    "num_key_value_heads": 2,
    "head_dim": 128,
    "max_position_embeddings": 131072,
}


def cpu_rows(clients: list[int], repeats: int, max_tokens: int) -> list[Row]:
    vllm = ours(
        "demo", "--engine", "vllm", "--dtype", "bfloat16", python=str(VLLM_PYTHON), VLLM_CPU_KVCACHE_SPACE=CPU_KV_GB
    )
    return [
        measure("ours, demo (its default --quantize 4)", [(ours("demo"), clients)], repeats, max_tokens),
        measure("ours, demo --quantize 16 (bf16)", [(ours("demo", "--quantize", "16"), clients)], repeats, max_tokens),
        measure("vLLM CPU, demo (bf16)", [(vllm, clients)], repeats, max_tokens),
    ]


def glm4_9b_folder(path: Path) -> Path:
    """Random weights in glm-4-9b-chat-hf's shapes, written once, in bf16 (about 19 GB)."""
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import GlmConfig, GlmForCausalLM

    from glm.models import tiny

    tokenizer = tiny.build_tokenizer()
    config = GlmConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, dtype="bfloat16", **GLM4_9B)
    with torch.device("cuda"):
        model = GlmForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def gpu_rows(clients: list[int], repeats: int, max_tokens: int) -> list[Row]:
    folder = str(glm4_9b_folder(OUT / "glm-4-9b-shapes"))
    flags = ("--dtype", "bfloat16", "--max-batch", str(max(clients)))
    torch_engine = ours(folder, *flags, python=sys.executable, device="0")
    vllm = ours(folder, "--engine", "vllm", "--max-model-len", "4096", *flags, python=sys.executable, device="0")
    return [
        measure("ours (torch), bf16", [(torch_engine, clients)], repeats, max_tokens),
        measure("vLLM, bf16", [(vllm, clients)], repeats, max_tokens),
    ]


def report(rows: list[Row], clients: list[int], where: str) -> list[str]:
    """Each of ours against vLLM's row from the same run."""
    *mine, vllm = rows
    lines = [f"## Against vLLM's engine ({where})", "", *table(rows, clients), ""]
    for row in mine:
        lines += [f"{row.name}:", "", *ratios(row, [vllm], clients), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    rows = (gpu_rows if args.gpu else cpu_rows)(args.clients, args.repeats, args.max_tokens)
    print("\n".join(report(rows, args.clients, "GPU" if args.gpu else "this machine's CPU")))


if __name__ == "__main__":
    main()
