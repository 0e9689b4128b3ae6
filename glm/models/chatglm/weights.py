"""The original ChatGLM weight shards, renamed and split into `GlmForCausalLM`'s layout.

Both use the same rotary convention (interleaved pairs on the first half of each head's dims, in
the head's own order), so no rows are permuted: the fused QKV only splits into its query, key and
value blocks. Each original shard becomes one safetensors shard, so memory holds one shard at a
time.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import GlmConfig

from glm.startup import StartupError

LAYER = re.compile(r"transformer\.encoder\.layers\.(\d+)\.(.+)")
RENAMED_IN_LAYER = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",  # gate rows then up rows in both
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
RENAMED = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
# Buffers some releases saved that the GLM model recomputes.
DROPPED = re.compile(r"transformer\.rotary_pos_emb\.inv_freq")


def shard_files(path: Path) -> list[Path]:
    shards = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not shards:
        raise StartupError(f"--model {path}: no *.safetensors or pytorch_model*.bin weight files in this folder")
    return shards


def read_shard(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        return load_file(file)
    return torch.load(file, map_location="cpu", weights_only=True, mmap=True)


def split_qkv(tensor: torch.Tensor, config: GlmConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused projection's rows are all query heads, then the key groups, then the value groups."""
    q_rows = config.num_attention_heads * config.head_dim
    kv_rows = config.num_key_value_heads * config.head_dim
    if tensor.shape[0] != q_rows + 2 * kv_rows:
        raise StartupError(f"query_key_value has {tensor.shape[0]} rows; the config implies {q_rows + 2 * kv_rows}")
    # Cloned: safetensors refuses to save views that share one storage.
    query, key, value = (part.clone() for part in tensor.split([q_rows, kv_rows, kv_rows]))
    return query, key, value


def convert_tensor(name: str, tensor: torch.Tensor, config: GlmConfig) -> Iterator[tuple[str, torch.Tensor]]:
    if DROPPED.fullmatch(name):
        return
    if name in RENAMED:
        yield RENAMED[name], tensor
        return
    match = LAYER.fullmatch(name)
    if match is None:
        raise StartupError(f"unexpected weight {name!r} in an original ChatGLM checkpoint")
    index, rest = match.groups()
    prefix = f"model.layers.{index}"
    if rest in RENAMED_IN_LAYER:
        yield f"{prefix}.{RENAMED_IN_LAYER[rest]}", tensor
    elif rest.startswith("self_attention.query_key_value."):
        kind = rest.rsplit(".", 1)[1]  # weight or bias
        for proj, part in zip(("q_proj", "k_proj", "v_proj"), split_qkv(tensor, config), strict=True):
            yield f"{prefix}.self_attn.{proj}.{kind}", part
    else:
        raise StartupError(f"unexpected weight {name!r} in an original ChatGLM checkpoint")


def convert_shards(source: Path, target: Path, config: GlmConfig) -> None:
    """Write `source`'s weights into `target` as GLM safetensors shards plus their index."""
    shards = shard_files(source)
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        out_name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        converted = {
            new_name: tensor.contiguous()
            for name, tensor in read_shard(shard).items()
            for new_name, tensor in convert_tensor(name, tensor, config)
        }
        save_file(converted, target / out_name, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(converted, out_name)
    index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
    (target / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
