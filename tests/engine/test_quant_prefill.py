"""Products of many rows (a prompt being read) with packed weights: the bfloat16 path that AMX CPUs
take (glm/quant/modules.py's PROMPT_BF16) against x @ dequantize(W).T, and the float32 path that
the others take, which stays exact."""

import pytest
import torch
import torch.nn.functional as F

from glm.quant import kernels, modules
from glm.quant.formats import Format, dequantize
from glm.quant.modules import KERNEL_MAX_ROWS, PROMPT_KERNEL_MAX_ROWS, PackedWeight, QuantLinear, matmul
from tests.engine.test_quant_kernel import random_packed

ROWS = KERNEL_MAX_ROWS + 16
# bf16 keeps 8 significant bits: rounding x and W each moves a product by at most 2^-8 of itself,
# and each term of a sum by as much, so the float32 sum is off by at most 2^-8 (+ float32's own
# rounding) of sum |x_k W_k|; rounding the output to bf16 adds 2^-9 of |y| <= 2^-9 of that sum.
BF16_BOUND = 2**-8 + 2**-9 + 2**-12


@pytest.fixture(params=list(Format), ids=lambda f: f.name)
def weight(request, built) -> PackedWeight:
    return PackedWeight(random_packed(request.param, 300, 640, torch.Generator().manual_seed(11)))


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(ROWS, 640, generator=torch.Generator().manual_seed(12))


def test_the_compiled_bf16_widening_is_formats_dequantize_rounded(weight):
    p = weight.packed
    widened = kernels.dequantize_op()(int(p.format), p.qs, p.d, p.aux, torch.bfloat16)
    assert torch.equal(widened, dequantize(p).bfloat16())


def test_many_rows_in_bf16_are_within_bf16_rounding_of_the_float64_product(weight, x, monkeypatch):
    monkeypatch.setattr(modules, "PROMPT_BF16", True)
    w = dequantize(weight.packed).double()
    got = matmul(x, weight, kernels.qlinear_op())
    assert got.dtype == torch.float32
    want = x.double() @ w.T
    error = (got.double() - want).abs()
    bound = BF16_BOUND * (x.double().abs() @ w.abs().T)
    assert (error <= bound).all(), (error / bound).max()
    # The bf16 path was taken: float32 would be far closer.
    assert (error > 1e-3 * bound).float().mean() > 0.5


def test_without_bf16_many_rows_are_the_float32_product_exactly(weight, x, monkeypatch):
    monkeypatch.setattr(modules, "PROMPT_BF16", False)
    got = matmul(x, weight, kernels.qlinear_op())
    assert torch.equal(got, F.linear(x, dequantize(weight.packed)))


def test_without_the_compiled_widening_bf16_products_get_the_same_bits(weight, x, monkeypatch):
    monkeypatch.setattr(modules, "PROMPT_BF16", True)
    compiled = matmul(x, weight, kernels.qlinear_op())
    monkeypatch.setattr(kernels, "dequantize_op", lambda: None)
    assert torch.equal(matmul(x, weight, None), compiled)


def test_bf16_x_is_multiplied_in_bf16_whatever_the_cpu(weight, x, monkeypatch):
    monkeypatch.setattr(modules, "PROMPT_BF16", False)
    got = matmul(x.bfloat16(), weight, kernels.qlinear_op())
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, F.linear(x.bfloat16(), dequantize(weight.packed).bfloat16()))


@pytest.mark.parametrize("amx", [True, False])
def test_on_amx_a_prompts_positions_take_bf16_from_fewer_rows_than_a_decode_steps_rows(weight, x, amx, monkeypatch):
    """A prompt of PROMPT_KERNEL_MAX_ROWS + 1 positions is read in bf16 where the CPU has AMX; the
    same rows as one position each (a decode step's batch, 2-D or 3-D) keep the kernel's bits."""
    monkeypatch.setattr(modules, "PROMPT_BF16", amx)
    linear, rows = QuantLinear(weight, None, kernels.qlinear_op()), x[: PROMPT_KERNEL_MAX_ROWS + 1]
    kernel = matmul(rows, weight, kernels.qlinear_op())
    bf16 = F.linear(rows.bfloat16(), dequantize(weight.packed).bfloat16()).float()
    assert torch.equal(linear(rows[None])[0], bf16 if amx else kernel)
    assert torch.equal(linear(rows[:, None])[:, 0], kernel)
    assert torch.equal(linear(rows), kernel)
