"""A decode step without transformers' per-layer plumbing, for the layer kinds whose parts it knows.

A decode step of a small model on the CPU is bound by the operations around its products as much
as by the products: every layer passes through transformers' attention interface, cache object,
mask and keyword plumbing, and each small operation costs microseconds of dispatch. For Llama, GLM
and GLM-4-0414 layers this step calls the same projections and MLP and does the rest in fewer
operations:
- the mask is built once per step, not once per layer;
- the rotary embedding is derived once per step from the model family's own rotary function, as
  a per-dimension scale, a fixed pairing of dimensions and a signed scale for the partner
  (`Rotation`), and applied to each layer's queries and keys in three operations;
- an RMSNorm over float32 activations is one fused operation;
- attention runs on the key/value heads as they are stored: each token's query heads that share a
  key/value head are that head's queries (as transformers' `pack_gqa` does for one token), where
  transformers repeats the whole cache per layer for every step on the CPU;
- keys and values are appended through the cache layer (in place, see glm.engine.growing_cache);
- q, k and v are one product, and so are the MLP's gate and up, where their weights fuse
  (glm.engine.fusion), so a layer makes four product calls rather than seven.
With float32 activations on the CPU and the compiled kernels built, the norms (each fused with the
residual addition before it), the attention with its rotary embedding and cache write, and the
MLP's SiLU times up are one call each (glm/quant/kernels/decode.cpp), which leaves five calls per
layer besides the four products, the split of q/k/v included (seven where GLM-4-0414 norms the
attention's and the MLP's outputs). Where every product is packed, every layer of the step is one
call (glm.engine.compiled_layers).
Other architectures take transformers' forward.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from glm.engine.compiled_layers import CompiledLayers, Heads, Layer, Norm, compiled_layers
from glm.engine.fusion import GatedMLP, Projections
from glm.quant.kernels import decode_ops

# Architectures whose decoder layers are exactly: input RMSNorm, attention (q/k/v/o projections
# with a rotary embedding), residual, post-attention RMSNorm, MLP, residual. GLM-4-0414's
# (Glm4ForCausalLM) also norm the attention's and the MLP's outputs before each residual addition.
KNOWN = frozenset({"LlamaForCausalLM", "GlmForCausalLM", "Glm4ForCausalLM"})

Rotary = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Rotation:
    """A rotary embedding as out = x * scale + x[..., partner] * signed: every rotary variant
    transformers implements (halves, interleaved pairs, a partial rotary dimension) has this form."""

    scale: torch.Tensor  # [batch, 1, 1, head_dim]
    signed: torch.Tensor  # [batch, 1, 1, head_dim]; 0 where a dimension is not rotated
    partner: torch.Tensor  # [head_dim]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x * self.scale, x.index_select(-1, self.partner), self.signed)


def partners(rotary: Rotary, head_dim: int) -> torch.Tensor:
    """Which dimension each one is paired with, read off the rotary function itself: rotating the
    unit vectors with sines that are nowhere 0 shows, in each output dimension, the one input
    dimension besides its own that reaches it (none where the dimension is not rotated)."""
    units = torch.eye(head_dim)[None, :, None, :]  # [1, head_dim units, 1 token, head_dim]
    cos, sin = torch.full((1, 1, head_dim), 0.6), torch.full((1, 1, head_dim), 0.8)
    rotated = rotary(units, units, cos, sin)[0][0, :, 0, :]  # row j: unit j rotated
    reach = rotated.abs().masked_fill(torch.eye(head_dim, dtype=torch.bool), 0)
    found = reach.amax(dim=0) > 0
    return torch.where(found, reach.argmax(dim=0), torch.arange(head_dim))


def rms_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' Llama/GLM RMSNorm, fused where activations and weight are float32 (elsewhere
    it computes in float32 and scales in the activations' dtype, which its own module does)."""
    if x.dtype == norm.weight.dtype == torch.float32:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)
    return norm(x)


def output_norm(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """A sublayer's output as its residual addition takes it: normed where the layer norms it."""
    return x if norm is None else rms_norm(norm, x)


@dataclass(frozen=True)
class Block:
    """One decoder layer as the compiled step runs it: `after` is the norm that follows the layer
    (the next layer's input norm, or the model's final norm); `attention_out` and `mlp_out` norm
    those sublayers' outputs (GLM-4-0414's post_self_attn_layernorm and post_mlp_layernorm), None
    where the layer adds them as they are."""

    attention: nn.Module
    projections: Projections
    mlp: GatedMLP
    middle: nn.Module
    after: nn.Module
    attention_out: nn.Module | None
    mlp_out: nn.Module | None

    def norms(self) -> list[nn.Module]:
        return [norm for norm in (self.middle, self.after, self.attention_out, self.mlp_out) if norm is not None]


class CacheSteps:
    """What both lean steps' compiled paths do with each layer's cache: give it room for this
    step's key and value, attend over the positions it holds (or have every layer run in one
    call), and count the new position. Full-attention layers grow in place
    (glm.engine.growing_cache); glm.engine.gemma_decoder adds its sliding-window layers."""

    kv_heads: int
    head_dim: int
    partner: torch.Tensor
    ops: Any
    whole: CompiledLayers | None

    def _room(self, stored: DynamicLayer, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """A layer's key and value buffers with room for this step's after the `length` positions
        it holds, and that length; `like` is shaped as one step's keys [rows, kv_heads, 1, dim]."""
        return stored.room(1, like, like)

    def _written(self, stored: DynamicLayer, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        """Count this step's position, written after the `length` the layer held."""
        stored.grow(1)

    def _attend_compiled(
        self,
        stored: DynamicLayer,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scale: torch.Tensor,
        signed: torch.Tensor,
        bias: torch.Tensor,
        softmax_scale: float,
    ) -> torch.Tensor:
        """decode.cpp's attention of one layer; it sees the last columns of bias, as many as the
        layer holds positions, and the new one."""
        keys, values, length = self._room(stored, key.view(key.shape[0], self.kv_heads, 1, self.head_dim))
        seen = bias[:, bias.shape[1] - length - 1 :].contiguous()
        out = self.ops.attend(query, key, value, scale, signed, self.partner, keys, values, length, seen, softmax_scale)
        self._written(stored, keys, values, length)
        return out

    def _one_call(
        self,
        x: torch.Tensor,
        rotations: list[tuple[torch.Tensor, torch.Tensor]],
        bias: torch.Tensor,
        cache: DynamicCache,
    ) -> torch.Tensor:
        """The logits of every layer and the LM head in one call (self.whole), as
        glm.engine.compiled_layers.CompiledLayers takes them."""
        like = x.new_empty(x.shape[0], self.kv_heads, 1, self.head_dim)
        caches = [self._room(stored, like) for stored in cache.layers]
        logits = self.whole(x, rotations, bias, caches)
        for stored, room in zip(cache.layers, caches, strict=True):
            self._written(stored, *room)
        return logits


class LeanDecoder(CacheSteps):
    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        attention = type(model.model.layers[0].self_attn)
        self.rotary: Rotary = sys.modules[attention.__module__].apply_rotary_pos_emb
        self.partner = partners(self.rotary, self.head_dim).to(model.device)
        self.units = torch.eye(self.head_dim, device=model.device)[None, :, None, :]
        body = model.model
        layers = list(body.layers)
        afters = [layer.input_layernorm for layer in layers[1:]] + [body.norm]
        self.blocks = [
            Block(
                layer.self_attn,
                Projections(layer.self_attn),
                GatedMLP(layer.mlp),
                layer.post_attention_layernorm,
                after,
                getattr(layer, "post_self_attn_layernorm", None),
                getattr(layer, "post_mlp_layernorm", None),
            )
            for layer, after in zip(layers, afters, strict=True)
        ]
        self.first_norm = layers[0].input_layernorm
        norms = [self.first_norm, *(norm for block in self.blocks for norm in block.norms())]
        self.ops = decode_ops() if compilable(model, norms, self.head_dim) else None
        self.whole = None if self.ops is None else self._plan()
        if self.ops is None:
            self.run_step = self._torch_step
        else:
            self.run_step = self._compiled_step if self.whole is None else self._whole_step

    def _plan(self) -> CompiledLayers | None:
        """Every layer and the LM head as one compiled call (glm.engine.compiled_layers)."""
        layers = [
            Layer(b.attention, b.projections, b.mlp, rms(b.middle), rms(b.after), rms(b.attention_out), rms(b.mlp_out))
            for b in self.blocks
        ]
        heads = Heads(self.heads, self.kv_heads, self.head_dim, self.partner, self.blocks[0].attention.scaling)
        return compiled_layers(rms(self.first_norm), layers, self.model.lm_head, heads)

    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """Logits [batch, vocab] of one token per row, as glm.engine.generation.decode_step."""
        body = self.model.model
        x = body.embed_tokens(tokens)
        rotation = self._rotation(*body.rotary_emb(x, positions[:, None]))
        # Added to the attention scores, [batch, cached + 1]: shared by all heads and layers, and
        # additive, which SDPA takes as it is (a boolean mask it converts in every layer).
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(mask == 0, float("-inf"))
        return self.run_step(x, rotation, bias, cache)

    def _torch_step(self, x: torch.Tensor, rotation: Rotation, bias: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """The logits after every layer and the LM head, in torch operations."""
        body = self.model.model
        bias = bias[:, None, None, :]
        for layer, block, stored in zip(body.layers, self.blocks, cache.layers, strict=True):
            attended = self._attend(block, rms_norm(layer.input_layernorm, x), rotation, bias, stored)
            x = x + output_norm(block.attention_out, attended)
            x = x + output_norm(block.mlp_out, block.mlp(rms_norm(block.middle, x)))
        return self.model.lm_head(rms_norm(body.norm, x))

    def _compiled_step(
        self, x: torch.Tensor, rotation: Rotation, bias: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """As _torch_step, with the norms, the residual additions and attention compiled; x is
        this step's own tensor, so the residual stream is added into it in place."""
        ops, rows = self.ops, x.shape[0]
        scale, signed = rotation.scale.reshape(rows, -1), rotation.signed.reshape(rows, -1)
        x = x.contiguous()
        normed = ops.rms_norm(x, self.first_norm.weight, self.first_norm.variance_epsilon)
        for block, stored in zip(self.blocks, cache.layers, strict=True):
            attention = block.attention
            query, key, value = block.projections(normed)
            attended = self._attend_compiled(stored, query, key, value, scale, signed, bias, attention.scaling)
            out = self._compiled_out(block.attention_out, attention.o_proj(attended))
            normed = ops.add_rms_norm_(x, out, block.middle.weight, block.middle.variance_epsilon)
            out = self._compiled_out(block.mlp_out, block.mlp(normed, ops))
            normed = ops.add_rms_norm_(x, out, block.after.weight, block.after.variance_epsilon)
        return self.model.lm_head(normed)

    def _whole_step(self, x: torch.Tensor, rotation: Rotation, bias: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """As _compiled_step, in one call (glm.engine.compiled_layers) where the plan still fits."""
        rows = x.shape[0]
        if not self.whole.fits(rows):
            return self._compiled_step(x, rotation, bias, cache)
        return self._one_call(x, [(rotation.scale.reshape(rows, -1), rotation.signed.reshape(rows, -1))], bias, cache)

    def _compiled_out(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return x if norm is None else self.ops.rms_norm(x, norm.weight, norm.variance_epsilon)

    def _rotation(self, cos: torch.Tensor, sin: torch.Tensor) -> Rotation:
        """This step's rotation: the rotary function applied once to the unit vectors, per row."""
        rows = cos.shape[0]
        units = self.units.to(cos.dtype).expand(rows, -1, -1, -1)
        rotated = self.rotary(units, units, cos, sin)[0][:, :, 0, :]  # [rows, unit j, output i]
        dims = torch.arange(self.head_dim, device=cos.device)
        scale = rotated[:, dims, dims]
        signed = torch.where(self.partner != dims, rotated[:, self.partner, dims], 0)
        return Rotation(scale[:, None, None, :], signed[:, None, None, :], self.partner)

    def _attend(
        self, block: Block, x: torch.Tensor, rotation: Rotation, bias: torch.Tensor, stored: DynamicLayer
    ) -> torch.Tensor:
        rows, attention = x.shape[0], block.attention
        query, key, value = block.projections(x)
        query = rotation(query.view(rows, self.heads, 1, self.head_dim))
        key = rotation(key.view(rows, self.kv_heads, 1, self.head_dim))
        value = value.view(rows, self.kv_heads, 1, self.head_dim)
        keys, values = stored.update(key, value)
        grouped = query.view(rows, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=bias, scale=attention.scaling)
        return attention.o_proj(out.reshape(rows, self.heads * self.head_dim))


def rms(norm: nn.Module | None) -> Norm | None:
    """A Llama/GLM RMSNorm as the compiled step takes it."""
    return None if norm is None else Norm(norm.weight, norm.variance_epsilon)


def compilable(model: PreTrainedModel, norms: list[nn.Module], head_dim: int) -> bool:
    """Whether decode.cpp's kernels (float32, CPU, heads of a multiple of 8) can run this model's step."""
    float32 = model.dtype == torch.float32 and all(norm.weight.dtype == torch.float32 for norm in norms)
    return model.device.type == "cpu" and float32 and head_dim % 8 == 0


@cache
def lean_decoder(model: PreTrainedModel) -> LeanDecoder | None:
    known = type(model).__name__ in KNOWN and not getattr(model.config, "sliding_window", None)
    return LeanDecoder(model) if known else None
