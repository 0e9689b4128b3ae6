"""glm_quant.qlinear against the reference: x @ formats.dequantize(p).T, for every block format.

The kernel is built here if it is missing or stale, so a fresh checkout's `make test` runs it.
"""

import json
import logging

import pytest
import torch

from glm.quant import kernels
from glm.quant.build import build
from glm.quant.formats import GROUP, Format, Packed, dequantize, quantize

ROWS = (1, 3, 8, 9, 17)
# (N, K): K=32 is a single block; N=300 at K=640 is split between threads.
SHAPES = ((1, 32), (13, 32), (37, 96), (300, 640))


@pytest.fixture(scope="module")
def qlinear():
    if not kernels.cpu_has_avx2():
        pytest.skip("the kernel needs AVX2")
    if kernels.unusable_reason(kernels.BUILD_DIR)[0] is not None:
        build()
        kernels.qlinear_op.cache_clear()
    op = kernels.qlinear_op()
    assert op is not None
    return op


def random_packed(fmt: Format, n: int, k: int, generator: torch.Generator) -> Packed:
    """Every bit pattern of the quants is as likely as any other, the top ones included."""
    groups = k // GROUP
    d = (torch.rand(n, groups, generator=generator) * 0.1 + 0.001).half()

    def bytes_(cols: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.randint(0, 256, (n, cols), generator=generator, dtype=torch.int32).to(torch.uint8).view(dtype)

    if fmt == Format.Q8_0:
        return Packed(fmt, bytes_(k, torch.int8), d, torch.empty(0, dtype=torch.float16))
    if fmt == Format.Q4_1:
        return Packed(fmt, bytes_(k // 2, torch.uint8), d, (torch.randn(n, groups, generator=generator) * 0.5).half())
    qh = torch.randint(-(2**31), 2**31, (n, groups), generator=generator, dtype=torch.int64).to(torch.int32)
    return Packed(fmt, bytes_(k // 2, torch.uint8), d, qh)


def run(op, x: torch.Tensor, p: Packed) -> torch.Tensor:
    return op(x, int(p.format), p.qs, p.d, p.aux)


def assert_matches(y: torch.Tensor, x: torch.Tensor, p: Packed) -> None:
    """Within fp32 summation error: far below one quantization step, far above a wrong element."""
    w = dequantize(p).double()
    exact = x.double() @ w.T
    bound = 1e-5 * (x.double().abs() @ w.abs().T) + 1e-30
    assert y.dtype == torch.float32 and y.shape == exact.shape
    assert ((y.double() - exact).abs() <= bound).all(), (y.double() - exact).abs().max()


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name)
def test_matches_the_reference(qlinear, fmt):
    generator = torch.Generator().manual_seed(int(fmt))
    for n, k in SHAPES:
        p = random_packed(fmt, n, k, generator)
        for m in ROWS:
            x = torch.randn(m, k, generator=generator)
            assert_matches(run(qlinear, x, p), x, p)


@pytest.mark.parametrize("fmt", [Format.Q8_0, Format.Q4_1], ids=lambda f: f.name)
def test_quantized_weights(qlinear, fmt):
    w = torch.randn(70, 128)
    p = quantize(w, fmt)
    x = torch.randn(5, 128)
    assert_matches(run(qlinear, x, p), x, p)


def test_zeros_and_large_values(qlinear):
    generator = torch.Generator().manual_seed(7)
    p = random_packed(Format.Q8_0, 20, 64, generator)
    assert run(qlinear, torch.zeros(3, 64), p).eq(0).all()
    big = Packed(Format.Q8_0, torch.full((20, 64), 127, dtype=torch.int8), torch.full((20, 2), 65504.0).half(), p.aux)
    x = torch.full((2, 64), 1e20)
    assert_matches(run(qlinear, x, big), x, big)
    zero_scale = Packed(Format.Q8_0, p.qs, torch.zeros(20, 2, dtype=torch.float16), p.aux)
    assert run(qlinear, torch.randn(2, 64), zero_scale).eq(0).all()


def test_empty_inputs(qlinear):
    p = random_packed(Format.Q4_1, 6, 32, torch.Generator().manual_seed(1))
    assert run(qlinear, torch.empty(0, 32), p).shape == (0, 6)


def test_strided_x_is_copied(qlinear):
    generator = torch.Generator().manual_seed(3)
    p = random_packed(Format.Q5_0, 11, 64, generator)
    x = torch.randn(64, 4, generator=generator).T
    assert not x.is_contiguous()
    assert torch.equal(run(qlinear, x, p), run(qlinear, x.contiguous(), p))


def test_rejects_what_it_cannot_multiply(qlinear):
    p = random_packed(Format.Q8_0, 4, 64, torch.Generator().manual_seed(2))
    with pytest.raises(RuntimeError, match="float32"):
        run(qlinear, torch.randn(1, 64, dtype=torch.float64), p)
    with pytest.raises(RuntimeError, match="K=32 but the weight has K=64"):
        run(qlinear, torch.randn(1, 32), p)
    with pytest.raises(RuntimeError, match="unknown format 9"):
        qlinear(torch.randn(1, 64), 9, p.qs, p.d, p.aux)
    with pytest.raises(RuntimeError, match="qs must be contiguous"):
        qlinear(torch.randn(1, 64), 0, p.qs.T.contiguous().T, p.d, p.aux)
    with pytest.raises(RuntimeError, match="qh must be Int"):
        qlinear(torch.randn(1, 64), int(Format.Q5_0), p.qs[:, :32].contiguous().view(torch.uint8), p.d, p.d)


def test_loader_without_a_build(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.qlinear_op(tmp_path) is None
    [record] = caplog.records
    assert "not built" in record.message and "python -m glm.quant.build" in record.message


def test_loader_refuses_a_stale_build(tmp_path, caplog):
    (tmp_path / "glm_quant.so").write_bytes(b"")
    (tmp_path / kernels.MANIFEST).write_text(json.dumps({"library": "glm_quant.so", "digest": "0" * 64}))
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.qlinear_op(tmp_path) is None
    assert "older qlinear.cpp" in caplog.text
