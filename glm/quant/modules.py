"""Linear and embedding layers whose weight is kept in a block format (glm/quant/formats.py).

On the CPU a product goes to the fused dequantize-and-multiply kernel when it is built
(glm/quant/kernels/); a product with many rows (a prompt being read), or any product on a GPU
or without the kernel, widens the weight for that one call (on the CPU with the compiled
widening, where it is built) and uses torch's matmul, so only one layer is ever held in float.

On a CPU with AMX that widening is to bfloat16 and the product is oneDNN's bf16 matmul on the
tiles, with x rounded to bfloat16: two to three times float32's speed for a prompt's rows
(bench/prefill.py), at about the quality of the bf16 model (bench/KERNELS.md).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from glm.quant import kernels
from glm.quant.formats import Format, Packed, dequantize

# Above this many rows the product is compute-bound and a float GEMM beats the fused kernel.
KERNEL_MAX_ROWS = 64

# On a CPU with AMX (PROMPT_BF16), a product over a prompt's positions takes the bf16 matmul from
# more rows than this: the weight's widening pays for itself there from about 16 rows of x, where
# the kernel's cost grows with every pass of 8 rows (bench/KERNELS.md). A decode step's rows keep
# the kernel up to KERNEL_MAX_ROWS whatever the CPU: it gives each row the same bits alone or in a
# batch.
PROMPT_KERNEL_MAX_ROWS = 16

# Whether float32 products of many rows on the CPU go through bfloat16. oneDNN runs bf16 matmul on
# AMX tiles, which beat float32's two to three times; without AMX (AVX-512 BF16 or older) its bf16
# matmul is slower than float32's (bench/prefill.py, bench/KERNELS.md).
PROMPT_BF16 = torch.cpu._is_amx_tile_supported()

# (x [M, K] float32, format, qs, d, aux, x_bits) -> [M, N] float32
Kernel = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]

# Where the kernel multiplies integers (glm/quant/kernels/vnni.h) it rounds x per block to this many
# bits: 8 for the layers inside the model. The LM head (exact_head), whose logits' order is what
# decoding reads, needs more: int8 there costs the next-token agreement with float32 more than
# bf16 does, where 16 bits cost nothing measurable. A Q8_0 head on AMX tiles (amx.h) multiplies x
# rounded to 16 bits faster than the float loops at every row count; elsewhere the head keeps x as
# given (32), since the vector int16 loops lose to the float ones from 4 rows (bench/KERNELS.md).
X_BITS = 8


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


def matmul(
    x: torch.Tensor, weight: PackedWeight, kernel: Kernel | None, x_bits: int = X_BITS, max_rows: int = KERNEL_MAX_ROWS
) -> torch.Tensor:
    """x [M, K] @ W.T -> [M, N] in x's dtype; the kernel multiplies up to `max_rows` rows."""
    if kernel is not None and x.device.type == "cpu" and x.shape[0] <= max_rows:
        out = kernel(x.float().contiguous(), int(weight.format), weight.qs, weight.d, weight.aux, x_bits)
        return out.to(x.dtype)
    dtype = product_dtype(x)
    return F.linear(x.to(dtype), widened(weight.packed, dtype)).to(x.dtype)


def product_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a product of many rows runs in: bfloat16 for float32 x on the CPU where PROMPT_BF16."""
    if x.dtype == torch.float32 and x.device.type == "cpu" and PROMPT_BF16:
        return torch.bfloat16
    return x.dtype


def widened(packed: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight in dtype, widened by the compiled kernel on the CPU where it is built (float32
    and bfloat16)."""
    widen = kernels.dequantize_op() if packed.qs.device.type == "cpu" else None
    if widen is None or dtype not in (torch.float32, torch.bfloat16):
        return dequantize(packed).to(dtype)
    return widen(int(packed.format), packed.qs, packed.d, packed.aux, dtype)


class QuantLinear(nn.Module):
    def __init__(self, weight: PackedWeight, bias: torch.Tensor | None, kernel: Kernel | None):
        super().__init__()
        self.weight_packed = weight
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.kernel = kernel
        self.x_bits = X_BITS
        self.out_features, self.in_features = weight.packed.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., K]; x [batch, positions > 1, K] is prompts being read."""
        prompt = PROMPT_BF16 and x.dim() == 3 and x.shape[1] > 1
        max_rows = PROMPT_KERNEL_MAX_ROWS if prompt else KERNEL_MAX_ROWS
        y = matmul(x.reshape(-1, self.in_features), self.weight_packed, self.kernel, self.x_bits, max_rows)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.weight_packed.format.name.lower()}"


def head_x_bits(weight: PackedWeight) -> int:
    """How finely an LM head's products round x: 16 bits where AMX tiles multiply its Q8_0 weight,
    else float (32)."""
    return 16 if weight.format == Format.Q8_0 and kernels.amx_tiles() else 32


def exact_head(model: nn.Module) -> None:
    """A packed LM head's products keep x at float's quality where the kernel would round it to 8
    bits (head_x_bits)."""
    head = model.get_output_embeddings()
    if isinstance(head, QuantLinear):
        head.x_bits = head_x_bits(head.weight_packed)


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
