"""A decode step without transformers' per-layer plumbing, for the layer kinds whose parts it knows.

A decode step of a small model on the CPU is bound by the operations around its products, not by
the products: every layer passes through transformers' attention interface, cache object, mask
and keyword plumbing. For Llama and GLM layers this step calls the same modules (norms,
projections, MLP, rotary embedding and the model family's own rotary function, so the arithmetic
is transformers') and does the rest directly:
- the mask is built once per step, not once per layer;
- attention runs on the key/value heads as they are stored: each token's query heads that share a
  key/value head are that head's queries (as transformers' `pack_gqa` does for one token), where
  transformers repeats the whole cache per layer for every step on the CPU;
- keys and values are appended through the cache layer (in place, see glm.growing_cache).
Other architectures take transformers' forward.
"""

import sys
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

# Architectures whose decoder layers are exactly: input norm, attention (q/k/v/o projections with
# rotary embedding), residual, post-attention norm, MLP, residual.
KNOWN = frozenset({"LlamaForCausalLM", "GlmForCausalLM"})

Rotary = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class LeanDecoder:
    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        attention = type(model.model.layers[0].self_attn)
        self.rotary: Rotary = sys.modules[attention.__module__].apply_rotary_pos_emb

    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """Logits [batch, vocab] of one token per row, as glm.generation.decode_step."""
        body = self.model.model
        x = body.embed_tokens(tokens)
        cos, sin = body.rotary_emb(x, positions[:, None])
        # Added to the attention scores, [batch, 1, 1, cached + 1]: shared by all heads and layers, and
        # additive, which SDPA takes as it is (a boolean mask it converts in every layer).
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(mask == 0, float("-inf"))
        bias = bias[:, None, None, :]
        for layer, stored in zip(body.layers, cache.layers, strict=True):
            x = x + self._attend(layer.self_attn, layer.input_layernorm(x), cos, sin, bias, stored)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.model.lm_head(body.norm(x))

    def _attend(
        self,
        attention: torch.nn.Module,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        bias: torch.Tensor,
        stored: DynamicLayer,
    ) -> torch.Tensor:
        rows = x.shape[0]
        query = attention.q_proj(x).view(rows, self.heads, 1, self.head_dim)
        key = attention.k_proj(x).view(rows, self.kv_heads, 1, self.head_dim)
        value = attention.v_proj(x).view(rows, self.kv_heads, 1, self.head_dim)
        query, key = self.rotary(query, key, cos, sin)
        keys, values = stored.update(key, value)
        grouped = query.view(rows, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=bias, scale=attention.scaling)
        return attention.o_proj(out.reshape(rows, self.heads * self.head_dim))


@cache
def lean_decoder(model: PreTrainedModel) -> LeanDecoder | None:
    known = type(model).__name__ in KNOWN and not getattr(model.config, "sliding_window", None)
    return LeanDecoder(model) if known else None
