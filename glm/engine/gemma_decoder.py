"""Gemma 3's decode step without transformers' per-layer plumbing (glm.engine.decoder does the same
for Llama and GLM layers, and this step builds on its pieces).

A Gemma 3 layer differs from a Llama one in what surrounds the same kind of products: its RMSNorm
scales by (1 + weight), the queries and keys of each head are normed before the rotary embedding,
the attention's and the MLP's outputs are normed before their residual additions, and its layers
come in two kinds, each with its own rotary base: sliding-window layers, which see only the last
`sliding_window` positions, and full-attention ones. So this step:
- adds 1 to every norm's weight once, which makes each norm the same fused RMSNorm as Llama's;
- derives both rotations once per step;
- reads q, k and v in one product, and the MLP's gate and up in another, where their weights fuse
  (glm.engine.fusion);
- reads a sliding-window layer's keys and values as transformers' DynamicSlidingWindowLayer
  stores them (the last `sliding_window - 1` positions, oldest first, as glm.engine.kv_batch pads
  and trims them) and keeps storing them that way, as views that slide along a buffer (Windows),
  so the mask of a sliding layer is the step's padding mask over its last stored positions and
  the new one;
- appends a full-attention layer's keys and values in place (glm.engine.growing_cache).
With float32 activations on the CPU and the compiled kernels built, the norms, the attention
(with its rotation and cache write) and GELU times up are decode.cpp's calls, as in
glm.engine.decoder, and where every product is packed, every layer of the step is one call
(glm.engine.compiled_layers).
Attention logit softcapping (Gemma 2's, off in Gemma 3) is not implemented: such a model takes
transformers' forward.
"""

import sys
from dataclasses import dataclass
from functools import cache
from weakref import WeakKeyDictionary

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from glm.engine.compiled_layers import CompiledLayers, Heads, Layer, compiled_layers
from glm.engine.compiled_layers import Norm as StepNorm
from glm.engine.decoder import CacheSteps, Rotary, Rotation, compilable, partners
from glm.engine.fusion import GatedMLP, Projections
from glm.engine.growing_cache import MIN_ROOM
from glm.quant.kernels import decode_ops

ARCHITECTURE = "Gemma3ForCausalLM"
SLIDING = "sliding_attention"


class Norm:
    """Gemma's RMSNorm, x / rms(x) * (1 + weight) in float32, with 1 + weight computed once."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.weight = (1.0 + module.weight.float()).contiguous()
        self.eps = module.eps

    def compiled(self) -> StepNorm:
        return StepNorm(self.weight, self.eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return self.module(x)


@dataclass(frozen=True)
class Block:
    """One decoder layer: `attention_out` and `mlp_out` norm those sublayers' outputs, `middle` is
    the pre-feedforward norm and `after` the norm that follows the layer (the next layer's input
    norm, or the model's final norm)."""

    attention: nn.Module
    projections: Projections
    mlp: GatedMLP
    kind: str  # the layer type: which rotation and which cache layer it has
    q_norm: Norm
    k_norm: Norm
    attention_out: Norm
    middle: Norm
    mlp_out: Norm
    after: Norm


class GemmaDecoder(CacheSteps):
    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        config = model.config
        self.heads, self.kv_heads, self.head_dim = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        self.kinds = sorted(set(config.layer_types))
        self.softcap = config.final_logit_softcapping
        body = model.model
        layers = list(body.layers)
        attention = layers[0].self_attn
        rotary: Rotary = sys.modules[type(attention).__module__].apply_rotary_pos_emb
        self.partner = partners(rotary, self.head_dim).to(model.device)
        self.sign = self._signs(rotary).to(model.device)
        self.first_norm = Norm(layers[0].input_layernorm)
        afters = [layer.input_layernorm for layer in layers[1:]] + [body.norm]
        self.blocks = [
            Block(
                layer.self_attn,
                Projections(layer.self_attn),
                GatedMLP(layer.mlp),
                kind,
                Norm(layer.self_attn.q_norm),
                Norm(layer.self_attn.k_norm),
                Norm(layer.post_attention_layernorm),
                Norm(layer.pre_feedforward_layernorm),
                Norm(layer.post_feedforward_layernorm),
                Norm(after),
            )
            for layer, after, kind in zip(layers, afters, config.layer_types, strict=True)
        ]
        modules = [self.first_norm.module] + [
            norm.module
            for block in self.blocks
            for norm in (block.q_norm, block.k_norm, block.attention_out, block.middle, block.mlp_out, block.after)
        ]
        self.ops = decode_ops() if compilable(model, modules, self.head_dim) else None
        self.whole = None if self.ops is None else self._plan()
        if self.ops is None:
            self.run_step = self._torch_step
        else:
            self.run_step = self._compiled_step if self.whole is None else self._whole_step
        self.windows = Windows()

    def _plan(self) -> CompiledLayers | None:
        """Every layer and the LM head as one compiled call (glm.engine.compiled_layers)."""
        layers = [
            Layer(
                b.attention,
                b.projections,
                b.mlp,
                *(
                    StepNorm(n.weight, n.eps)
                    for n in (b.middle, b.after, b.attention_out, b.mlp_out, b.q_norm, b.k_norm)
                ),
                kind=self.kinds.index(b.kind),
            )
            for b in self.blocks
        ]
        heads = Heads(self.heads, self.kv_heads, self.head_dim, self.partner, self.blocks[0].attention.scaling)
        return compiled_layers(self.first_norm.compiled(), layers, self.model.lm_head, heads)

    def _signs(self, rotary: Rotary) -> torch.Tensor:
        """The sign with which each dimension's partner reaches it (0 where it is not rotated): the
        unit vectors rotated with cos 0 and sin 1 leave only the partners' terms."""
        dims = torch.arange(self.head_dim)
        units = torch.eye(self.head_dim)[None, :, None, :]
        cos, sin = torch.zeros(1, 1, self.head_dim), torch.ones(1, 1, self.head_dim)
        rotated = rotary(units, units, cos, sin)[0][0, :, 0, :]  # row j: unit j rotated
        partner = self.partner.cpu()
        return torch.where(partner != dims, rotated[partner, dims], 0)

    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """Logits [batch, vocab] of one token per row, as glm.engine.generation.decode_step."""
        body = self.model.model
        x = body.embed_tokens(tokens)
        rotations = {kind: self._rotation(*body.rotary_emb(x, positions[:, None], kind)) for kind in self.kinds}
        # Added to the attention scores, [batch, cached + 1]; a sliding layer takes its last columns.
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(mask == 0, float("-inf"))
        logits = self.run_step(x, rotations, bias, cache)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def _rotation(self, cos: torch.Tensor, sin: torch.Tensor) -> Rotation:
        """This step's rotation from the rotary embedding's cos and sin [rows, 1, head_dim]:
        Gemma's rotary multiplies each dimension by cos and its signed partner by sin."""
        return Rotation(cos[:, None], (sin * self.sign.to(sin.dtype))[:, None], self.partner)

    def _torch_step(
        self, x: torch.Tensor, rotations: dict[str, Rotation], bias: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """The logits (before softcapping) after every layer and the LM head, in torch operations."""
        h = self.first_norm(x)
        for block, stored in zip(self.blocks, cache.layers, strict=True):
            x = x + block.attention_out(self._attend(block, h, rotations[block.kind], bias, stored))
            x = x + block.mlp_out(block.mlp(block.middle(x)))
            h = block.after(x)
        return self.model.lm_head(h)

    def _attend(
        self, block: Block, x: torch.Tensor, rotation: Rotation, bias: torch.Tensor, stored: DynamicLayer
    ) -> torch.Tensor:
        rows, attention = x.shape[0], block.attention
        query, key, value = block.projections(x)
        query = rotation(block.q_norm(query.view(rows, self.heads, 1, self.head_dim)))
        key = rotation(block.k_norm(key.view(rows, self.kv_heads, 1, self.head_dim)))
        value = value.view(rows, self.kv_heads, 1, self.head_dim)
        # A sliding layer returns its stored positions and the new one, and keeps the last window - 1.
        keys, values = stored.update(key, value)
        seen = bias[:, None, None, bias.shape[1] - keys.shape[-2] :]
        grouped = query.view(rows, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=seen, scale=attention.scaling)
        return attention.o_proj(out.reshape(rows, self.heads * self.head_dim))

    def _compiled_step(
        self, x: torch.Tensor, rotations: dict[str, Rotation], bias: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """As _torch_step, with the norms, the residual additions and attention compiled; x is
        this step's own tensor, so the residual stream is added into it in place."""
        ops, rows, eps = self.ops, x.shape[0], self.first_norm.eps
        flat = {kind: (r.scale.reshape(rows, -1), r.signed.reshape(rows, -1)) for kind, r in rotations.items()}
        x = x.contiguous()
        normed = ops.rms_norm(x, self.first_norm.weight, eps)
        for block, stored in zip(self.blocks, cache.layers, strict=True):
            attention = block.attention
            query, key, value = block.projections(normed)
            query, key = self._head_norm(block.q_norm, query), self._head_norm(block.k_norm, key)
            attended = self._attend_compiled(stored, query, key, value, *flat[block.kind], bias, attention.scaling)
            out = ops.rms_norm(attention.o_proj(attended), block.attention_out.weight, eps)
            normed = ops.add_rms_norm_(x, out, block.middle.weight, eps)
            out = ops.rms_norm(block.mlp(normed, ops), block.mlp_out.weight, eps)
            normed = ops.add_rms_norm_(x, out, block.after.weight, eps)
        return self.model.lm_head(normed)

    def _whole_step(
        self, x: torch.Tensor, rotations: dict[str, Rotation], bias: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """As _compiled_step, in one call (glm.engine.compiled_layers) where the plan still fits."""
        rows = x.shape[0]
        if not self.whole.fits(rows):
            return self._compiled_step(x, rotations, bias, cache)
        flat = [
            (rotations[kind].scale.reshape(rows, -1), rotations[kind].signed.reshape(rows, -1)) for kind in self.kinds
        ]
        return self._one_call(x, flat, bias, cache)

    def _head_norm(self, norm: Norm, x: torch.Tensor) -> torch.Tensor:
        """Each head's norm of a projection's output [rows, heads * head_dim] (a view of a fused
        product's rows, which the norm reads as a copy of its own)."""
        return self.ops.rms_norm(x.contiguous().view(-1, self.head_dim), norm.weight, norm.eps).view(x.shape)

    def _room(self, stored: DynamicLayer, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        if isinstance(stored, DynamicSlidingWindowLayer):
            return self.windows.room(stored)
        return stored.room(1, like, like)

    def _written(self, stored: DynamicLayer, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        if isinstance(stored, DynamicSlidingWindowLayer):
            self.windows.slide(stored, keys, values, length)
        else:
            stored.grow(1)


class Windows:
    """Buffers for the sliding layers' keys and values with room after the stored window, so that
    a step writes one position and slides the window's view along instead of copying the window
    (which DynamicSlidingWindowLayer.update does every step); the window moves back to the start of
    a new buffer when the room runs out. Positions before the new one are never written again, so
    views taken of the stored keys and values (a prompt cache's) keep their contents."""

    def __init__(self) -> None:
        self._buffers: WeakKeyDictionary[DynamicSlidingWindowLayer, tuple[torch.Tensor, torch.Tensor]] = (
            WeakKeyDictionary()
        )

    def room(self, stored: DynamicSlidingWindowLayer) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Key and value buffers starting at the layer's stored positions, with room for one more
        after the `length` stored ones, and that length."""
        length = stored.keys.shape[-2]
        buffers = self._buffers.get(stored)
        start = None if buffers is None else _view_start(stored.keys, buffers[0])
        if start is None or start != _view_start(stored.values, buffers[1]) or start + length >= buffers[0].shape[-2]:
            buffers = (_moved(stored.keys, length), _moved(stored.values, length))
            self._buffers[stored] = buffers
            start = 0
        keys, values = buffers
        return keys[..., start:, :], values[..., start:, :], length

    @staticmethod
    def slide(stored: DynamicSlidingWindowLayer, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        """Count the position written after the `length` stored ones, and store the last
        window - 1, as DynamicSlidingWindowLayer.update does."""
        first = max(0, length + 1 - (stored.sliding_window - 1))
        stored.keys, stored.values = keys[..., first : length + 1, :], values[..., first : length + 1, :]
        stored.cumulative_length += 1


def _view_start(view: torch.Tensor, buffer: torch.Tensor) -> int | None:
    """The position at which `view` is buffer[..., start:start + length, :], None where it is not."""
    if view.stride() != buffer.stride() or view.shape[:-2] != buffer.shape[:-2]:
        return None
    offset = view.data_ptr() - buffer.data_ptr()
    step = buffer.stride(-2) * buffer.element_size()
    start, rest = divmod(offset, step)
    return start if rest == 0 and start >= 0 and start + view.shape[-2] <= buffer.shape[-2] else None


def _moved(current: torch.Tensor, length: int) -> torch.Tensor:
    """A buffer holding `current`'s `length` positions with MIN_ROOM more after them."""
    buffer = current.new_empty((*current.shape[:-2], length + MIN_ROOM, current.shape[-1]))
    buffer[..., :length, :] = current
    return buffer


@cache
def gemma_decoder(model: PreTrainedModel) -> GemmaDecoder | None:
    """The lean step for a Gemma 3 text model, None where it has what this step does not do."""
    if type(model).__name__ != ARCHITECTURE:
        return None
    config = model.config
    plain = not config.attn_logit_softcapping and not config.use_bidirectional_attention
    return GemmaDecoder(model) if plain else None
