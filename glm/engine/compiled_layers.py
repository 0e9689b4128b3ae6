"""Every layer of a lean decode step and the LM head in one compiled call
(glm/quant/kernels/step.cpp), for models whose products are all packed.

The layer-by-layer compiled step (glm/engine/decoder.py) still makes about a dozen calls a layer
from Python, each product a parallel region whose sleeping thread must be woken: at one row the
wake-ups cost more than the second core brings. step.cpp runs the step on threads of its own,
which split every part of it between them; its logits are the layer-by-layer step's, bit for bit.
Where a projection or the LM head is not packed, does not fuse, or has been wrapped since (a LoRA
adapter loaded at run time), the decoder keeps the layer-by-layer step.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from glm.engine.blocks import Block
from glm.quant.modules import KERNEL_MAX_ROWS, QuantLinear

EMPTY = torch.empty(0)


def _packed(module: nn.Module | None) -> QuantLinear | None:
    """The module where it is a packed product the compiled kernel multiplies."""
    return module if type(module) is QuantLinear and module.kernel is not None else None


def _product(module: QuantLinear) -> tuple[list[torch.Tensor], list[int]]:
    weight = module.weight_packed
    bias = EMPTY if module.bias is None else module.bias.detach()
    return [weight.qs, weight.d, weight.aux, bias], [int(weight.format), module.x_bits]


def _norm(norm: nn.Module | None) -> tuple[torch.Tensor, float]:
    return (EMPTY, 0.0) if norm is None else (norm.weight.detach(), norm.variance_epsilon)


def _products(block: Block) -> list[QuantLinear] | None:
    """The block's q/k/v, output, gate/up and down products, where all are packed and fused."""
    mlp = block.mlp
    found = [_packed(m) for m in (block.projections.fused, block.attention.o_proj, mlp.gate_up, mlp.module.down_proj)]
    return found if mlp.silu and all(found) else None


def _places(block: Block) -> list[tuple[nn.Module, str, nn.Module]]:
    attention, mlp = block.attention, block.mlp.module
    owners = [(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
    owners += [(mlp, name) for name in mlp._modules]
    return [(owner, name, owner._modules[name]) for owner, name in owners]


@dataclass(frozen=True)
class Heads:
    """A layer's attention heads: query heads, key/value heads, their size, and the rotary
    embedding's pairing of dimensions (glm.engine.decoder.partners)."""

    heads: int
    kv_heads: int
    dim: int
    partner: torch.Tensor


class CompiledLayers:
    def __init__(
        self,
        first_norm: nn.Module,
        blocks: list[Block],
        products: list[list[QuantLinear]],
        head: QuantLinear,
        heads: Heads,
    ):
        head_tensors, head_ints = _product(head)
        tensors = [first_norm.weight.detach(), *head_tensors]
        ints = [heads.heads, heads.kv_heads, heads.dim, *head_ints]
        floats = [blocks[0].attention.scaling, first_norm.variance_epsilon]
        for block, modules in zip(blocks, products, strict=True):
            for module in modules:
                more, numbers = _product(module)
                tensors += more
                ints += numbers
            for norm in (block.middle, block.after, block.attention_out, block.mlp_out):
                weight, eps = _norm(norm)
                tensors.append(weight)
                floats.append(eps)
        self.layers = torch.classes.glm_decode.Layers(tensors, ints, floats)
        self.partner = heads.partner
        self.like = (heads.kv_heads, 1, heads.dim)
        # Where the model holds each module the plan read: a wrapper put in place since (a LoRA
        # adapter loaded at run time) is seen by `current`.
        self.places = [place for block in blocks for place in _places(block)]

    def current(self) -> bool:
        """Whether every projection the plan multiplies is still the model's own."""
        return all(owner._modules[name] is module for owner, name, module in self.places)

    def __call__(
        self, x: torch.Tensor, scale: torch.Tensor, signed: torch.Tensor, bias: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """The logits [rows, vocab] after every layer and the LM head, x (this step's own tensor) the
        residual stream; scale, signed and bias as glm_decode.attend takes them."""
        rows = x.shape[0]
        like = x.new_empty(rows, *self.like)
        keys, values, lengths = [], [], set()
        for stored in cache.layers:
            layer_keys, layer_values, length = stored.room(1, like, like)
            keys.append(layer_keys)
            values.append(layer_values)
            lengths.add(length)
        if lengths != {bias.shape[1] - 1}:
            raise ValueError(f"the cache's layers hold {sorted(lengths)} positions, the mask {bias.shape[1] - 1}")
        out = self.layers.run(x.contiguous(), scale, signed, self.partner, bias, keys, values, bias.shape[1] - 1)
        for stored in cache.layers:
            stored.grow(1)
        return out

    def fits(self, rows: int) -> bool:
        """Whether a step of `rows` rows takes this plan (the kernels multiply up to KERNEL_MAX_ROWS)."""
        return rows <= KERNEL_MAX_ROWS and self.current()


def compiled_layers(first_norm: nn.Module, blocks: list[Block], head: nn.Module, heads: Heads) -> CompiledLayers | None:
    """The plan for the decoder's layers and LM head, None where a product is not packed and fused."""
    products = [_products(block) for block in blocks]
    packed_head = _packed(head)
    return CompiledLayers(first_norm, blocks, products, packed_head, heads) if all(products) and packed_head else None
