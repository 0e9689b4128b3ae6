"""Every layer of a lean decode step and the LM head in one compiled call
(glm/quant/kernels/step.cpp), for models whose products are all packed.

The layer-by-layer compiled steps (glm.engine.decoder, glm.engine.gemma_decoder) still make about
a dozen calls a layer from Python, each product a parallel region whose sleeping thread must be
woken: at one row the wake-ups cost more than the second core brings. step.cpp runs the step on
threads of its own, which split every part of it between them; its logits are the layer-by-layer
step's, bit for bit. Where a projection or the LM head is not packed, does not fuse, or has been
wrapped since (a LoRA adapter loaded at run time), or the activation has no compiled form, the
decoders keep the layer-by-layer step.
"""

import logging
from dataclasses import dataclass

import torch
from torch import nn

from glm.engine.fusion import GatedMLP, Projections
from glm.quant.modules import KERNEL_MAX_ROWS, QuantLinear

log = logging.getLogger(__name__)

EMPTY = torch.empty(0)
# step.cpp's Activation.
ACTIVATIONS = {"silu_mul": 0, "gelu_tanh_mul": 1}


@dataclass(frozen=True)
class Norm:
    """An RMSNorm as step.cpp computes it: x / rms(x) * weight (float32), with its epsilon."""

    weight: torch.Tensor
    eps: float


@dataclass(frozen=True)
class Layer:
    """A decoder layer as step.cpp runs it: `after` is the norm that follows the layer (the next
    layer's input norm, or the model's final norm); `attention_out` and `mlp_out` norm those
    sublayers' outputs and `q_norm` and `k_norm` each head's queries and keys, None where the layer
    has none; `kind` is which of the step's rotations the layer takes."""

    attention: nn.Module
    projections: Projections
    mlp: GatedMLP
    middle: Norm
    after: Norm
    attention_out: Norm | None
    mlp_out: Norm | None
    q_norm: Norm | None = None
    k_norm: Norm | None = None
    kind: int = 0


@dataclass(frozen=True)
class Heads:
    """A layer's attention heads: query heads, key/value heads, their size, the rotary
    embedding's pairing of dimensions (glm.engine.decoder.partners) and the softmax scale."""

    heads: int
    kv_heads: int
    dim: int
    partner: torch.Tensor
    scaling: float


def _packed(module: nn.Module | None) -> QuantLinear | None:
    """The module where it is a packed product the compiled kernel multiplies."""
    return module if type(module) is QuantLinear and module.kernel is not None else None


def _pieces(fused: nn.Module | None, parts: tuple[nn.Module, ...]) -> list[QuantLinear] | None:
    """Products of one input side by side: the fused one where it is packed, else each part where
    all are (step.cpp writes them into one output)."""
    if _packed(fused) is not None:
        return [fused]
    found = [_packed(part) for part in parts]
    return found if found and all(found) else None


def _parts(layer: Layer) -> list[list[QuantLinear]] | None:
    """The layer's q/k/v, output, gate/up and down products, where all are packed."""
    projections, mlp = layer.projections, layer.mlp
    found = [
        _pieces(projections.fused, projections.parts),
        _pieces(None, (layer.attention.o_proj,)),
        _pieces(mlp.gate_up, mlp.parts),
        _pieces(None, (mlp.module.down_proj,)),
    ]
    return found if all(found) else None


class Arguments:
    """step.cpp's Layers constructor arguments, written in the order it reads them."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.ints: list[int] = []
        self.floats: list[float] = []

    def product(self, module: QuantLinear) -> None:
        weight = module.weight_packed
        self.ints += [int(weight.format), module.x_bits]
        self.tensors += [weight.qs, weight.d, weight.aux, EMPTY if module.bias is None else module.bias.detach()]

    def part(self, pieces: list[QuantLinear]) -> None:
        self.ints.append(len(pieces))
        for piece in pieces:
            self.product(piece)

    def norm(self, norm: Norm | None) -> None:
        self.tensors.append(EMPTY if norm is None else norm.weight.detach())
        self.floats.append(0.0 if norm is None else norm.eps)


def _places(layer: Layer) -> list[tuple[nn.Module, str, nn.Module]]:
    attention, mlp = layer.attention, layer.mlp.module
    owners = [(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
    owners += [(mlp, name) for name in mlp._modules]
    return [(owner, name, owner._modules[name]) for owner, name in owners]


class CompiledLayers:
    def __init__(
        self,
        first_norm: Norm,
        layers: list[Layer],
        parts: list[list[list[QuantLinear]]],
        head: QuantLinear,
        heads: Heads,
        activation: int,
    ):
        kinds = max(layer.kind for layer in layers) + 1
        write = Arguments()
        write.ints += [heads.heads, heads.kv_heads, heads.dim, activation, kinds, len(layers)]
        write.floats.append(heads.scaling)
        write.norm(first_norm)
        write.product(head)
        for layer, pieces in zip(layers, parts, strict=True):
            write.ints.append(layer.kind)
            for part in pieces:
                write.part(part)
            for norm in (layer.middle, layer.after, layer.attention_out, layer.mlp_out, layer.q_norm, layer.k_norm):
                write.norm(norm)
        self.layers = torch.classes.glm_decode.Layers(write.tensors, write.ints, write.floats)
        self.partner = heads.partner
        # Where the model holds each module the plan read: a wrapper put in place since (a LoRA
        # adapter loaded at run time) is seen by `current`.
        self.places = [place for layer in layers for place in _places(layer)]

    def current(self) -> bool:
        """Whether every projection the plan multiplies is still the model's own."""
        return all(owner._modules[name] is module for owner, name, module in self.places)

    def fits(self, rows: int) -> bool:
        """Whether a step of `rows` rows takes this plan (the kernels multiply up to KERNEL_MAX_ROWS)."""
        return rows <= KERNEL_MAX_ROWS and self.current()

    def __call__(
        self,
        x: torch.Tensor,
        rotations: list[tuple[torch.Tensor, torch.Tensor]],
        bias: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor, int]],
    ) -> torch.Tensor:
        """The logits [rows, vocab] after every layer and the LM head, x (this step's own tensor)
        the residual stream; rotations: each kind's (scale, signed) [rows, head_dim]; bias
        [rows, positions] as glm_decode.attend takes it, over the longest layer's positions;
        caches: each layer's key and value buffers with room after the positions they hold, and
        how many they hold (the last that many + 1 columns of bias)."""
        scales, signeds = zip(*rotations, strict=True)
        keys, values, lengths = zip(*caches, strict=True)
        return self.layers.run(x.contiguous(), scales, signeds, self.partner, bias, keys, values, lengths)


def compiled_layers(first_norm: Norm, layers: list[Layer], head: nn.Module, heads: Heads) -> CompiledLayers | None:
    """The plan for a decoder's layers and LM head, None where a product is not packed or the
    activation has no compiled form."""
    parts = [_parts(layer) for layer in layers]
    activations = {layer.mlp.compiled for layer in layers}
    packed_head = _packed(head)
    if not all(parts) or packed_head is None or len(activations) != 1 or None in activations:
        return None
    try:
        return CompiledLayers(first_norm, layers, parts, packed_head, heads, ACTIVATIONS[activations.pop()])
    except RuntimeError as error:  # step.cpp's checks: shapes it does not take (heads of other sizes)
        log.warning("decode steps go layer by layer: the one-call step does not fit this model (%s)", error)
        return None
