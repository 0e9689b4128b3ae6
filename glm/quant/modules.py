"""Linear and embedding layers whose weight is kept in a block format (glm/quant/formats.py).

On the CPU a product goes to the fused dequantize-and-multiply kernel when it is built
(glm/quant/kernels/); a product with many rows (a prompt being read), or any product on a GPU
or without the kernel, widens the weight for that one call (on the CPU with the compiled
widening, where it is built) and uses torch's matmul, so only one layer is ever held in float.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from glm.quant import kernels
from glm.quant.formats import Packed, dequantize

# Above this many rows the product is compute-bound and a float GEMM beats the fused kernel.
KERNEL_MAX_ROWS = 64

# (x [M, K] float32, format, qs, d, aux, x_bits) -> [M, N] float32
Kernel = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]

# Where the kernel multiplies integers (glm/quant/kernels/vnni.h) it rounds x per block to this many
# bits: 8 for the layers inside the model; the LM head (exact_head), whose logits' order is what
# decoding reads, keeps x as given (32: the float loops). int8 there too costs the next-token
# agreement with float32 more than bf16 does; kept float it stays above bf16's, and at 8 rows the
# float loops beat int16 ones on the head's 49152 x 576 (bench/KERNELS.md).
X_BITS = 8
HEAD_X_BITS = 32


class PackedWeight(nn.Module):
    """Holds a Packed weight as buffers, so `.to(device)` and `state_dict` see it."""

    def __init__(self, packed: Packed):
        super().__init__()
        self.format = packed.format
        self.qs = nn.Buffer(packed.qs)
        self.d = nn.Buffer(packed.d)
        self.aux = nn.Buffer(packed.aux)

    @property
    def packed(self) -> Packed:
        return Packed(self.format, self.qs, self.d, self.aux)


def matmul(x: torch.Tensor, weight: PackedWeight, kernel: Kernel | None, x_bits: int = X_BITS) -> torch.Tensor:
    """x [M, K] @ W.T -> [M, N] in x's dtype."""
    if kernel is not None and x.device.type == "cpu" and x.shape[0] <= KERNEL_MAX_ROWS:
        out = kernel(x.float().contiguous(), int(weight.format), weight.qs, weight.d, weight.aux, x_bits)
        return out.to(x.dtype)
    return F.linear(x, widened(weight.packed).to(x.dtype))


def widened(packed: Packed) -> torch.Tensor:
    """The float32 weight, widened by the compiled kernel on the CPU where it is built."""
    widen = kernels.dequantize_op() if packed.qs.device.type == "cpu" else None
    if widen is None:
        return dequantize(packed)
    return widen(int(packed.format), packed.qs, packed.d, packed.aux)


class QuantLinear(nn.Module):
    def __init__(self, weight: PackedWeight, bias: torch.Tensor | None, kernel: Kernel | None):
        super().__init__()
        self.weight_packed = weight
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.kernel = kernel
        self.x_bits = X_BITS
        self.out_features, self.in_features = weight.packed.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = matmul(x.reshape(-1, self.in_features), self.weight_packed, self.kernel, self.x_bits)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.weight_packed.format.name.lower()}"


def exact_head(model: nn.Module) -> None:
    """A packed LM head's products take x as given where the kernel would round it (HEAD_X_BITS)."""
    head = model.get_output_embeddings()
    if isinstance(head, QuantLinear):
        head.x_bits = HEAD_X_BITS


class QuantEmbedding(nn.Module):
    """Looks rows up in the packed table; a tied LM head shares the same PackedWeight.

    `scale` multiplies the rows, as Gemma's scaled word embedding does.
    """

    def __init__(self, weight: PackedWeight, dtype: torch.dtype, scale: torch.Tensor | None):
        super().__init__()
        self.weight_packed = weight
        self.dtype = dtype
        self.embed_scale = None if scale is None else nn.Buffer(scale, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = dequantize(self.weight_packed.packed.rows(flat)).to(self.dtype)
        if self.embed_scale is not None:
            rows = rows * self.embed_scale.to(self.dtype)
        return rows.reshape(*ids.shape, -1)
