"""What LoRA adapters cost on the demo model: 8 streams spread over 3 adapters (PEFT folders
built here, rank 16 on every projection, random weights) against 8 streams on the base, over
HTTP. Each decode step adds one pair of small products per adapter in the batch to every
projection.

`python -m bench.lora` runs it alone; `make bench` adds its line to bench/RESULTS.md.
"""

import tempfile
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from bench.mixed import median_rate, run_alone, stream_body, timed_batches
from bench.rows import OUT
from bench.servers import ours
from glm.cli import DEFAULT_CACHE
from glm.models import load_model
from glm.models.source import model_source

PROMPT = "Tell me a long story about a village by the sea."
ADAPTERS = ("sql", "support", "story")
RANK = 16
# Every projection of the demo model's LlamaForCausalLM: the most an adapter adds.
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_adapters(root: Path) -> dict[str, Path]:
    """PEFT folders for the demo model under `root`, by name, each with random weights of its own."""
    torch.manual_seed(0)
    base = load_model(model_source("demo"), torch.device("cpu"), torch.float32, DEFAULT_CACHE).model
    config = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS, init_lora_weights=False)
    model = get_peft_model(base, config, adapter_name=ADAPTERS[0])
    for name in ADAPTERS[1:]:
        model.add_adapter(name, config)
    model.save_pretrained(root)  # an adapter not named "default" goes in a folder of its name
    return {name: root / name for name in ADAPTERS}


def body(max_tokens: int, adapter: str | None) -> dict:
    return stream_body(PROMPT, max_tokens, **({"model": adapter} if adapter else {}))


def stream_rates(repeats: int, max_tokens: int) -> dict[str, float]:
    """Median tokens/s per stream: 8 on the base; 8 over the adapters, in turn."""
    with tempfile.TemporaryDirectory() as root:
        folders = build_adapters(Path(root))
        flags = [flag for name, path in folders.items() for flag in ("--lora", f"{name}={path}")]
        batches = {
            "base": [body(max_tokens, None)] * 8,
            "adapters": [body(max_tokens, ADAPTERS[i % len(ADAPTERS)]) for i in range(8)],
        }
        timings = timed_batches(ours("demo", *flags), OUT / "lora.log", repeats, batches)
    return {name: median_rate(streams) for name, streams in timings.items()}


def report(rates: dict[str, float], max_tokens: int) -> list[str]:
    base, adapted = rates["base"], rates["adapters"]
    return [
        f"- 8 streams of {max_tokens} greedy tokens over {len(ADAPTERS)} LoRA adapters (rank {RANK}, every "
        f"projection): {adapted:.1f} tok/s each ({adapted / base - 1:+.1%}), against {base:.1f} for 8 streams "
        "on the base model of the same server."
    ]


if __name__ == "__main__":
    run_alone(__doc__, stream_rates, report)
