"""bf16 Linear layers on the CPU whose decode-step products go to the compiled kernel.

torch's bf16 matmul reads a weight far below this machine's memory bandwidth when x has few rows,
which is every product of a decode step of a few streams. glm_quant.bf16_linear reads it closer to
that bandwidth, so on the demo model's shapes it beats F.linear up to eight rows of x and gains
nothing at sixteen (bench/kernels.py measures both). Products of more than eight rows (prompts,
busy batches) keep torch's matmul.
"""

import torch
import torch.nn.functional as F
from torch import nn

from glm.quant import kernels
from glm.quant.formats import GROUP

# The most rows of x the kernel takes: where it stops beating F.linear on the demo model's layers
# (bench/kernels.py).
KERNEL_MAX_ROWS = 8


class BF16Linear(nn.Module):
    """An nn.Linear's own weight and bias (shared, so a tied LM head stays tied) with the kernel in front."""

    def __init__(self, linear: nn.Linear, kernel: kernels.BF16Linear):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias
        self.kernel = kernel
        self.out_features, self.in_features = linear.out_features, linear.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] > KERNEL_MAX_ROWS:
            return F.linear(x, self.weight, self.bias)
        y = self.kernel(rows, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, bf16 kernel"


def fits(module: nn.Module) -> bool:
    """A plain nn.Linear (not a subclass with its own forward) with a bf16 CPU weight the kernel takes."""
    if type(module) is not nn.Linear:
        return False
    weight = module.weight
    return (
        weight.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and weight.is_contiguous()
        and weight.shape[1] % GROUP == 0
    )


def use_kernel(model: nn.Module) -> int:
    """Put BF16Linear in place of every Linear that fits; how many were replaced (0 without the kernel).

    The kernel library is looked for only when some Linear fits, so a float32 or GPU model never
    logs that it is missing."""
    names = [name for name, module in model.named_modules() if fits(module)]
    kernel = kernels.bf16_linear_op() if names else None
    if kernel is None:
        return 0
    for name in names:
        model.set_submodule(name, BF16Linear(model.get_submodule(name), kernel))
    return len(names)
