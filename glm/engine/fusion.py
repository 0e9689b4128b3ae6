"""Projections of one input fused into one product, for the lean decode step (glm/engine/decoder.py).

Each product call of a decode step is a parallel region whose threads must wake, and a Python
call through the module tree: reading q, k and v (or gate and up) in one call instead of three
(or two) saves both. The weights are never held twice: the fused weight is one tensor, and the
original projections' weights become views of its rows, so transformers' own forward (prompts)
still calls q_proj and friends on the same memory.

Concatenating weight rows changes no output element where the product computes each (row of x,
row of W) on its own: the packed kernel (glm_quant.qlinear) and the bf16 kernel do. torch's
float32 F.linear picks its blocking by shape; on the demo model's shapes the fused product gave
the same bits (bench/KERNELS.md, 2026-12-07), and float32 F.linear is not batch-invariant anyway.
"""

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers.activations import GELUTanh, SiLUActivation

from glm.quant.bf16 import BF16Linear
from glm.quant.formats import Packed
from glm.quant.modules import PackedWeight, QuantLinear

# Where a module of each kind keeps its per-row tensors: (owner, attribute) pairs.
Slots = list[tuple[nn.Module, str]]


def _slots(module: nn.Module) -> Slots:
    if type(module) is QuantLinear:
        weight: Slots = [(module.weight_packed, name) for name in ("qs", "d", "aux")]
    else:
        weight = [(module, "weight")]
    return weight + ([(module, "bias")] if module.bias is not None else [])


def _same_kind(modules: Sequence[nn.Module]) -> bool:
    """Whether the modules compute alike on one input: one exact kind (a subclass or a wrapper,
    LoRA's included, has a forward of its own), one input width, dtype, format and kernel, and a
    bias on all or none."""
    kind = type(modules[0])
    if kind not in (nn.Linear, BF16Linear, QuantLinear) or any(type(m) is not kind for m in modules):
        return False
    if kind is QuantLinear:
        alike = {(m.weight_packed.format, m.kernel) for m in modules}
    elif kind is BF16Linear:
        alike = {(m.weight.dtype, m.kernel) for m in modules}
    else:
        alike = {m.weight.dtype for m in modules}
    inputs = {(m.in_features, m.bias is None, getattr(*_slots(m)[0]).device) for m in modules}
    return len(alike) == 1 and len(inputs) == 1


def _joined(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The tensors concatenated along their rows: a view where they already lie end to end in one
    storage (fused by an earlier decoder), else a new tensor."""
    first = tensors[0]
    offset, adjacent = first.storage_offset(), True
    for t in tensors:
        same = t.untyped_storage().data_ptr() == first.untyped_storage().data_ptr() and t.is_contiguous()
        adjacent = adjacent and same and t.storage_offset() == offset
        offset += t.numel()
    if adjacent:
        shape = (sum(t.shape[0] for t in tensors), *first.shape[1:])
        return first.as_strided(shape, first.stride(), first.storage_offset())
    return torch.cat(tensors)


def _repoint(owner: nn.Module, name: str, view: torch.Tensor) -> None:
    current = getattr(owner, name)
    if isinstance(current, nn.Parameter):
        view = nn.Parameter(view, requires_grad=current.requires_grad)
    setattr(owner, name, view)


def fuse(modules: Sequence[nn.Module]) -> nn.Module | None:
    """One module whose output is the modules' outputs side by side (torch.cat along the last
    dimension), of the same kind, with the modules' weights made views of its own; None where they
    differ in kind, format or input, or one is wrapped (LoRA), and the modules are left as they are."""
    if not _same_kind(modules):
        return None
    with torch.inference_mode(False), torch.no_grad():
        joined: dict[str, torch.Tensor] = {}
        for column in zip(*(_slots(m) for m in modules), strict=True):
            name, tensors = column[0][1], [getattr(owner, attribute) for owner, attribute in column]
            if tensors[0].numel() == 0:  # q8_0's aux: one empty tensor, not a row per output
                joined[name] = tensors[0]
                continue
            joined[name] = _joined(tensors)
            views = joined[name].split([t.shape[0] for t in tensors])
            for (owner, attribute), view in zip(column, views, strict=True):
                _repoint(owner, attribute, view)
        return _built(modules[0], joined)


def _built(first: nn.Module, joined: dict[str, torch.Tensor]) -> nn.Module:
    bias = joined.get("bias")
    if type(first) is QuantLinear:
        weight = PackedWeight(Packed(first.weight_packed.format, joined["qs"], joined["d"], joined["aux"]))
        return QuantLinear(weight, bias, first.kernel)
    weight = joined["weight"]
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias, requires_grad=False)
    return BF16Linear(linear, first.kernel) if type(first) is BF16Linear else linear


class Projections:
    """An attention's queries, keys and values of one input: one product where q_proj, k_proj and
    v_proj fuse, and their own three calls where they do not."""

    def __init__(self, attention: nn.Module) -> None:
        self.attention = attention
        self._plan(self._current())

    def _current(self) -> tuple[nn.Module, ...]:
        return self.attention.q_proj, self.attention.k_proj, self.attention.v_proj

    def _plan(self, parts: tuple[nn.Module, ...]) -> None:
        self.parts = parts
        self.fused = fuse(parts)
        self.sizes = [part.out_features for part in parts]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(q, k, v), each [rows, width] with the last dimension contiguous (views of one product's rows)."""
        # A LoRA adapter loaded at run time wraps projections after the plan was made.
        if (parts := self._current()) != self.parts:
            self._plan(parts)
        if self.fused is None:
            return tuple(part(x) for part in self.parts)
        return self.fused(x).split(self.sizes, dim=-1)


def compiled_activation(act: nn.Module) -> str | None:
    """The glm_decode op that computes act(gate) * up in one call (decode.cpp), None where none does."""
    if type(act) in (SiLUActivation, nn.SiLU):
        return "silu_mul"
    if type(act) is GELUTanh or (type(act) is nn.GELU and act.approximate == "tanh"):
        return "gelu_tanh_mul"
    return None


class GatedMLP:
    """A Llama/GLM/Gemma MLP, down(act(gate(x)) * up(x)), with gate and up in one product (GLM's
    gate_up_proj already is one), and act(gate) * up in one compiled call where the caller has
    decode.cpp's ops and one computes the activation (`compiled`). Where gate and up do not fuse
    and nothing is compiled, the module's own forward."""

    def __init__(self, mlp: nn.Module) -> None:
        self.module = mlp
        self.act = getattr(mlp, "activation_fn", None) or mlp.act_fn
        self._plan(self._current())

    def _current(self) -> tuple[nn.Module, ...]:
        mlp = self.module
        return (mlp.gate_up_proj,) if hasattr(mlp, "gate_up_proj") else (mlp.gate_proj, mlp.up_proj)

    def _plan(self, parts: tuple[nn.Module, ...]) -> None:
        self.parts = parts
        self.gate_up = parts[0] if len(parts) == 1 else fuse(parts)
        # The compiled ops take rows of whole vectors of eight.
        whole = sum(part.out_features for part in parts) % 16 == 0
        self.compiled = compiled_activation(self.act) if whole else None

    def __call__(self, x: torch.Tensor, ops: Any | None = None) -> torch.Tensor:
        if (parts := self._current()) != self.parts:  # wrapped by a LoRA adapter loaded at run time
            self._plan(parts)
        compiled = ops is not None and self.compiled is not None
        if self.gate_up is not None:
            gate_up = self.gate_up(x)
        elif compiled:  # the compiled activation, as the one-call step computes it (compiled_layers)
            gate_up = torch.cat([part(x) for part in self.parts], dim=-1)
        else:
            return self.module(x)
        if compiled:
            return self.module.down_proj(getattr(ops, self.compiled)(gate_up))
        gate, up = gate_up.chunk(2, dim=-1)
        return self.module.down_proj(self.act(gate) * up)
