"""An independent restatement of the ChatGLM2/ChatGLM3/GLM-4 forward pass, in plain torch.

Written from the architecture as the original checkpoints define it, reading their weights under
their own names, so that a wrong mapping onto `GlmForCausalLM` (the order of query, key and value
in the fused projection, gate and up in the MLP, the rotary convention) changes the logits.
"""

import math
from pathlib import Path

import torch
from safetensors.torch import load_file


def read_original_weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = {}
    for file in sorted(folder.glob("*.safetensors")):
        weights |= load_file(file)
    for file in sorted(folder.glob("pytorch_model*.bin")):
        weights |= torch.load(file, weights_only=True)
    return {name: tensor.float() for name, tensor in weights.items()}


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on the first half of each head: dims (0,1), (2,3), ... turn by angles[:, i].

    x: [tokens, heads, head_dim]; angles: [tokens, head_dim // 4].
    """
    rotary = 2 * angles.shape[-1]
    turned, kept = x[..., :rotary], x[..., rotary:]
    even, odd = turned[..., 0::2], turned[..., 1::2]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    pairs = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)
    return torch.cat([pairs.flatten(-2), kept], dim=-1)


def rotary_angles(tokens: int, head_dim: int, base: float, position_scale: float) -> torch.Tensor:
    rotary = head_dim // 2
    inverse_frequency = 1.0 / base ** (torch.arange(0, rotary, 2, dtype=torch.float) / rotary)
    positions = torch.arange(tokens, dtype=torch.float) / position_scale
    return torch.outer(positions, inverse_frequency)


def reference_logits(
    weights: dict[str, torch.Tensor],
    config: dict,
    ids: list[int],
    rope_base: float = 10000.0,
    position_scale: float = 1.0,
) -> torch.Tensor:
    """Logits [tokens, padded_vocab] for `ids`, causal attention from position 0."""
    heads, head_dim = config["num_attention_heads"], config["kv_channels"]
    groups = config["multi_query_group_num"] if config["multi_query_attention"] else heads
    eps = config["layernorm_epsilon"]
    tokens = len(ids)
    angles = rotary_angles(tokens, head_dim, rope_base, position_scale)
    future = torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1)

    x = weights["transformer.embedding.word_embeddings.weight"][ids]
    for n in range(config["num_layers"]):
        w = {name.split(f"layers.{n}.", 1)[1]: t for name, t in weights.items() if f".layers.{n}." in name}
        h = rms_norm(x, w["input_layernorm.weight"], eps)
        qkv = h @ w["self_attention.query_key_value.weight"].T + w["self_attention.query_key_value.bias"]
        q = qkv[:, : heads * head_dim].view(tokens, heads, head_dim)
        k = qkv[:, heads * head_dim : (heads + groups) * head_dim].view(tokens, groups, head_dim)
        v = qkv[:, (heads + groups) * head_dim :].view(tokens, groups, head_dim)
        q, k = rotate(q, angles), rotate(k, angles)
        # Each key/value group serves heads // groups consecutive query heads.
        k = k.repeat_interleave(heads // groups, dim=1)
        v = v.repeat_interleave(heads // groups, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(head_dim)
        attention = scores.masked_fill(future, float("-inf")).softmax(-1)
        context = torch.einsum("hqk,khd->qhd", attention, v).reshape(tokens, heads * head_dim)
        x = x + context @ w["self_attention.dense.weight"].T
        h = rms_norm(x, w["post_attention_layernorm.weight"], eps)
        gate, up = (h @ w["mlp.dense_h_to_4h.weight"].T).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ w["mlp.dense_4h_to_h.weight"].T
    x = rms_norm(x, weights["transformer.encoder.final_layernorm.weight"], eps)
    return x @ weights["transformer.output_layer.weight"].T
