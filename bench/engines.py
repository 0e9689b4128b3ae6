"""Our engine against vLLM's, both behind our server, in one run, at 1 and 8 streams; prints the
tables and writes bench/ENGINES.md.

On this machine's CPU (a step of `make bench`, once `make test-vllm` has built .venv-vllm): the demo
model, ours at its default `--quantize` and at 16 (bf16) against vLLM's CPU engine on the same
weights in bf16. On a GPU (`--gpu`, from scripts/gpu-contract.sh): a random model with
glm-4-9b-chat-hf's shapes, bf16 on both engines.
"""

import argparse
import sys
from datetime import date
from pathlib import Path

from bench.rows import OUT, Row, measure, ratios, table
from bench.run import machine
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
    """Ours, then vLLM computing on both cores (as ours does), then vLLM as it sets itself up: one
    core computes, the other is kept for its scheduler and front end."""
    flags = ("demo", "--engine", "vllm", "--dtype", "bfloat16")
    vllm = ours(*flags, python=str(VLLM_PYTHON), VLLM_CPU_KVCACHE_SPACE=CPU_KV_GB)
    both = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    vllm_both = ours(*flags, python=str(VLLM_PYTHON), VLLM_CPU_KVCACHE_SPACE=CPU_KV_GB, **both)
    return [
        measure("ours, demo (its default --quantize 4)", [(ours("demo"), clients)], repeats, max_tokens),
        measure("ours, demo --quantize 16 (bf16)", [(ours("demo", "--quantize", "16"), clients)], repeats, max_tokens),
        measure("vLLM CPU, demo (bf16), both cores computing", [(vllm_both, clients)], repeats, max_tokens),
        measure("vLLM CPU, demo (bf16), as it sets itself up", [(vllm, clients)], repeats, max_tokens),
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
    """Each of ours against each of vLLM's rows from the same run."""
    mine = [row for row in rows if row.name.startswith("ours")]
    theirs = [row for row in rows if row not in mine]
    lines = [f"## Against vLLM's engine ({where})", "", *table(rows, clients), ""]
    for row in mine:
        lines += [f"{row.name}:", "", *ratios(row, theirs, clients), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    if not (args.gpu or VLLM_PYTHON.exists()):
        print("vLLM is not installed (`make test-vllm` builds .venv-vllm): ours against vLLM left out")
        return
    rows = (gpu_rows if args.gpu else cpu_rows)(args.clients, args.repeats, args.max_tokens)
    where = "GPU" if args.gpu else "this machine's CPU"
    lines = [
        f"# Engines, {date.today().isoformat()}",
        "",
        f"Machine: {machine()}. {args.max_tokens} greedy tokens per stream with ignore_eos; medians of "
        f"{args.repeats} runs; peak RSS adds up the server and the processes it started.",
        "",
        *report(rows, args.clients, where),
    ]
    print("\n".join(lines))
    (ROOT / "bench" / ("ENGINES-GPU.md" if args.gpu else "ENGINES.md")).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
