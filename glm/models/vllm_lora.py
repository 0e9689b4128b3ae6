"""LoRA adapters (--lora) for --engine vllm, which loads each adapter itself from a PEFT folder.

Each adapter is read and checked as our own engine reads it (glm/models/lora.py), against the
served folder's model built on the meta device (its shapes, no weights), so a bad adapter stops
start-up with the same message on both engines, and an adapter for an original ChatGLM2/3 or GLM-4
checkpoint is renamed, and its query_key_value split, as the weights were converted. It is then
written again, next to the converted models under the cache directory, as the folder vLLM reads:
its scaling folded into B (as ours is), and any projection that Hugging Face fuses but vLLM's own
model packs from parts (GLM-4-0414's gate_up_proj, from gate_proj and up_proj) split into those
parts, which share A, each with its own rows of B: vLLM looks such an adapter's deltas up by the
parts' names. GlmForCausalLM (GLM-4-9B-chat-hf, and our ChatGLM conversions) runs on vLLM's
Transformers backend, which keeps Hugging Face's modules and names: its adapters keep theirs.
"""

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from glm.models.lora import CONFIG, PREFIX, Pairs, read_adapter

WEIGHTS = "adapter_model.safetensors"
# Part of the written folders' key: bump it when a fix changes what is written.
FORMAT_VERSION = 1
# By architecture: a fused Hugging Face projection -> the parts vLLM's model packs it from, in the
# order of its rows (the model's packed_modules_mapping, vllm/model_executor/models/glm4.py).
PACKED_FROM_PARTS = {"Glm4ForCausalLM": {"gate_up_proj": ("gate_proj", "up_proj")}}


@dataclass(frozen=True)
class VllmAdapter:
    name: str
    folder: Path  # the PEFT folder vLLM loads
    rank: int


def vllm_adapters(
    adapters: dict[str, Path], folder: Path, cache_dir: Path, trust_remote_code: bool = False
) -> tuple[VllmAdapter, ...]:
    """The adapters, by name, as vLLM loads them over model `folder`; one that does not fit the
    model is a StartupError naming its file and what is wrong."""
    if not adapters:
        return ()
    model = meta_model(folder, trust_remote_code)
    packed: dict[str, tuple[str, ...]] = {}
    for architecture in model.config.architectures or ():
        packed |= PACKED_FROM_PARTS.get(architecture, {})
    return tuple(written(name, read_adapter(name, path, model), packed, cache_dir) for name, path in adapters.items())


def meta_model(folder: Path, trust_remote_code: bool) -> PreTrainedModel:
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def written(name: str, pairs: Pairs, packed: dict[str, tuple[str, ...]], cache_dir: Path) -> VllmAdapter:
    """Adapter `name`'s pairs, the `packed` projections split into their parts, as a PEFT folder
    under `cache_dir`, keyed by its content: written once."""
    tensors = {}
    for module, (a, b) in pairs.items():
        for part, rows in vllm_parts(module, b, packed):
            tensors[f"{PREFIX}{part}.lora_A.weight"] = a.clone()  # a tensor of its own for each part
            tensors[f"{PREFIX}{part}.lora_B.weight"] = rows.contiguous()
    rank = max(a.shape[0] for a, _ in pairs.values())
    # The scaling is in B already: lora_alpha = r is a scaling of one.
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": rank,
        "target_modules": sorted({key.removeprefix(PREFIX).split(".")[-3] for key in tensors}),
        "bias": "none",
    }
    digest = hashlib.sha256(f"v{FORMAT_VERSION}".encode())
    for key, tensor in sorted(tensors.items()):
        digest.update(key.encode())
        digest.update(tensor.numpy().tobytes())
    target = cache_dir / "lora-vllm" / f"{name}-{digest.hexdigest()[:16]}"
    if not target.is_dir():
        # Written aside and renamed: a folder there is whole, even with two servers starting at once.
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        partial.mkdir(parents=True)
        save_file(tensors, partial / WEIGHTS)
        (partial / CONFIG).write_text(json.dumps(config, indent=2))
        try:
            partial.rename(target)
        except OSError:  # another start wrote it first
            shutil.rmtree(partial)
    return VllmAdapter(name, target, rank)


def vllm_parts(module: str, b: torch.Tensor, packed: dict[str, tuple[str, ...]]) -> list[tuple[str, torch.Tensor]]:
    """`module` as vLLM's model names it, with B's rows for each part."""
    parent, _, leaf = module.rpartition(".")
    if leaf not in packed:
        return [(module, b)]
    parts = packed[leaf]
    return [(f"{parent}.{part}", rows) for part, rows in zip(parts, b.chunk(len(parts)), strict=True)]
