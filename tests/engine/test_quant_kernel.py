"""The compiled kernels against references: glm_quant.qlinear against x @ formats.dequantize(p).T
for every block format (x first rounded per block where the kernels multiply integers),
glm_quant.bf16_linear against x @ W.T in float64, each on every instruction set this CPU runs; which
instruction set runs and where its instructions are; and the bf16 layers that put bf16_linear in a
model.

The kernels are built here if they are missing or stale, so a fresh checkout's `make test` runs them.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glm.models import load_model
from glm.models.source import model_source
from glm.quant import bf16, kernels, modules
from glm.quant.formats import GROUP, Format, Packed, dequantize, quantize

ROWS = (1, 3, 8, 9, 17)
# (N, K): K=32 is a single block; N=300 at K=640 is split between threads.
SHAPES = ((1, 32), (13, 32), (37, 96), (300, 640))


ISAS = ("avx2", "avx512", "avx512-bf16", "avx512-vnni", "amx")
# Where qlinear rounds x to int8 or int16 per block of 32 and multiplies integers.
INTEGER_ISAS = ("avx512-vnni", "amx")


@pytest.fixture(params=ISAS)
def isa(request, built):
    """The kernels of one instruction set, for the length of a test."""
    ops = torch.ops.glm_quant
    if request.param not in ops.supported_isas():
        pytest.skip(f"this CPU does not run the {request.param} kernels")
    chosen = ops.isa()
    ops.use_isa(request.param)
    yield request.param
    ops.use_isa(chosen)


@pytest.fixture(scope="module")
def qlinear(built):
    return kernels.qlinear_op()


@pytest.fixture(scope="module")
def bf16_linear(built):
    return kernels.bf16_linear_op()


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


def run(op, x: torch.Tensor, p: Packed, x_bits: int = 8) -> torch.Tensor:
    return op(x, int(p.format), p.qs, p.d, p.aux, x_bits)


def block_scales(x: torch.Tensor, x_bits: int = 8) -> torch.Tensor:
    """Each element's integer step: its block's max |x| / 127 (or / 32639 for 16 bits, which AMX
    splits into two int8 halves), as the kernel computes it in float32."""
    blocks = x.reshape(len(x), -1, GROUP)
    top = 127 if x_bits == 8 else 32639
    return (blocks.abs().amax(-1, keepdim=True) / top).expand_as(blocks).reshape(x.shape)


def rounded(x: torch.Tensor, x_bits: int) -> torch.Tensor:
    """x as the integer products multiply it: round(x / d) * d per block."""
    d = block_scales(x, x_bits)
    inverse = torch.where(d != 0, 1 / d, 0)
    return (x * inverse).round() * d


def as_multiplied(x: torch.Tensor, x_bits: int) -> torch.Tensor:
    """x_bits=32 keeps x float everywhere."""
    return rounded(x, x_bits) if torch.ops.glm_quant.isa() in INTEGER_ISAS and x_bits < 32 else x


def assert_matches(y: torch.Tensor, x: torch.Tensor, p: Packed, x_bits: int = 8) -> None:
    """Within fp32 summation error of the product of x as the chosen kernels multiply it: far below
    one quantization step, far above a wrong element."""
    w = dequantize(p).double()
    exact = as_multiplied(x, x_bits).double() @ w.T
    bound = 1e-5 * (x.double().abs() @ w.abs().T) + 1e-30
    assert y.dtype == torch.float32 and y.shape == exact.shape
    assert ((y.double() - exact).abs() <= bound).all(), (y.double() - exact).abs().max()


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name)
def test_matches_the_reference(qlinear, isa, fmt):
    generator = torch.Generator().manual_seed(int(fmt))
    for n, k in SHAPES:
        p = random_packed(fmt, n, k, generator)
        for m in ROWS:
            x = torch.randn(m, k, generator=generator)
            for x_bits in (8, 16, 32):
                assert_matches(run(qlinear, x, p, x_bits), x, p, x_bits)


@pytest.mark.parametrize("x_bits", [8, 16])
@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name)
@pytest.mark.parametrize("integers", INTEGER_ISAS)
def test_integer_products_are_within_half_a_step_of_float_x(qlinear, integers, fmt, x_bits):
    """Rounding moves each element of x by at most half its block's step d, so a product moves by at
    most sum(d / 2 * |w|): the bound that the kernel, not only the reference, must keep."""
    if integers not in torch.ops.glm_quant.supported_isas():
        pytest.skip(f"this CPU does not run the {integers} kernels")
    generator = torch.Generator().manual_seed(13)
    p = random_packed(fmt, 300, 640, generator)
    x = torch.randn(8, 640, generator=generator) * torch.logspace(-3, 3, 640).roll(17)
    chosen = torch.ops.glm_quant.isa()
    torch.ops.glm_quant.use_isa(integers)
    try:
        y = run(qlinear, x, p, x_bits).double()
    finally:
        torch.ops.glm_quant.use_isa(chosen)
    w = dequantize(p).double()
    bound = (block_scales(x, x_bits).double() / 2) @ w.abs().T + 1e-5 * (x.double().abs() @ w.abs().T)
    error = (y - x.double() @ w.T).abs()
    assert (error <= bound).all()
    # Not the float path: rounding leaves a visible error.
    assert error.max() > 1e-4 * bound.max()


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


@pytest.mark.parametrize("x_bits", [8, 16, 32])
@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name)
def test_a_row_gets_the_same_bits_whatever_shares_the_call(qlinear, isa, fmt, x_bits):
    """Float32 batch invariance: a decode step of 1 to 17 streams gives each the bits it gets alone
    (N=37 leaves AMX a short tile of weight rows, K=96 an odd count of blocks)."""
    generator = torch.Generator().manual_seed(5)
    p = random_packed(fmt, 37, 96, generator)
    x = torch.randn(17, 96, generator=generator)
    together = run(qlinear, x, p, x_bits)
    assert all(torch.equal(run(qlinear, x[:m], p, x_bits), together[:m]) for m in range(1, 17))
    assert all(torch.equal(run(qlinear, x[i : i + 1], p, x_bits), together[i : i + 1]) for i in range(17))


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name)
def test_the_compiled_widening_is_bit_for_bit_formats_dequantize(built, fmt):
    p = random_packed(fmt, 37, 96, torch.Generator().manual_seed(7))
    assert torch.equal(kernels.dequantize_op()(int(fmt), p.qs, p.d, p.aux), dequantize(p))


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
    with pytest.raises(RuntimeError, match="x_bits must be 8, 16 or 32, got 4"):
        run(qlinear, torch.randn(1, 64), p, 4)
    with pytest.raises(RuntimeError, match="unknown format 9"):
        qlinear(torch.randn(1, 64), 9, p.qs, p.d, p.aux)
    with pytest.raises(RuntimeError, match="qs must be contiguous"):
        qlinear(torch.randn(1, 64), 0, p.qs.T.contiguous().T, p.d, p.aux)
    with pytest.raises(RuntimeError, match="qh must be Int"):
        qlinear(torch.randn(1, 64), int(Format.Q5_0), p.qs[:, :32].contiguous().view(torch.uint8), p.d, p.d)


def test_loader_without_a_build(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.load_library(tmp_path) is False
    [record] = caplog.records
    assert "not built" in record.message and "python -m glm.quant.build" in record.message


def test_loader_refuses_a_stale_build(tmp_path, caplog):
    (tmp_path / "glm_quant.so").write_bytes(b"")
    (tmp_path / kernels.MANIFEST).write_text(json.dumps({"library": "glm_quant.so", "digest": "0" * 64}))
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.load_library(tmp_path) is False
    assert "built from older sources" in caplog.text


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_bf16_linear_matches_float64(bf16_linear, isa, x_dtype):
    generator = torch.Generator().manual_seed(11)
    for n, k in SHAPES:
        w = torch.randn(n, k, generator=generator).bfloat16()
        for m in ROWS:
            x = torch.randn(m, k, generator=generator).to(x_dtype)
            y = bf16_linear(x, w)
            exact = x.double() @ w.double().T
            # fp32 summation, then (for a bf16 x) the rounding of y to bf16: 2^-8 of it at most.
            rounding = 2**-8 if x_dtype == torch.bfloat16 else 0.0
            bound = 1e-5 * (x.double().abs() @ w.double().abs().T) + rounding * exact.abs() + 1e-30
            assert y.dtype == x_dtype and y.shape == (m, n)
            assert ((y.double() - exact).abs() <= bound).all(), (y.double() - exact).abs().max()


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_bf16_linear_gives_a_row_the_same_bits_whatever_shares_the_call(bf16_linear, isa, x_dtype):
    generator = torch.Generator().manual_seed(6)
    w = torch.randn(37, 96, generator=generator).bfloat16()
    x = torch.randn(17, 96, generator=generator).to(x_dtype)
    together = bf16_linear(x, w)
    assert all(torch.equal(bf16_linear(x[:m], w), together[:m]) for m in range(1, 17))


def chosen_in_a_fresh_process(wanted: str | None) -> subprocess.CompletedProcess:
    """A process that loads the kernels with GLM_KERNELS=wanted (unset for None) prints their choice."""
    env = {k: v for k, v in os.environ.items() if k != kernels.ISA_ENV} | ({kernels.ISA_ENV: wanted} if wanted else {})
    code = (
        "import logging; logging.basicConfig(level=logging.INFO); import torch; from glm.quant import kernels; "
        "kernels.load_library(); print(torch.ops.glm_quant.isa())"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_widest_instruction_set_is_chosen_and_glm_kernels_narrows_it(built):
    widest = torch.ops.glm_quant.supported_isas()[-1]
    for wanted, expected in ((None, widest), ("avx2", "avx2"), ("avx9000", widest)):
        done = chosen_in_a_fresh_process(wanted)
        assert done.stdout.strip() == expected and f"linear kernels: {expected}" in done.stderr
    assert "GLM_KERNELS=avx9000 is not among this CPU's kernels" in done.stderr


# An instruction whose encoding starts with the EVEX prefix (0x62, after any address-size or segment
# prefix), or that names a mask register, is AVX-512; vdpbf16ps and the bf16 conversions are BF16;
# vpdpbusd and vpdpwssd (and their saturating forms) are VNNI.
OBJDUMP_LINE = re.compile(r"^\s+[0-9a-f]+:\t((?:[0-9a-f]{2} )+)\s*\t?(.*)$")
FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
# A function of the avx512 namespace, after the return type that templates' demangled names carry.
GUARDED = re.compile(r"^(\S+ )?\(anonymous namespace\)::avx512::")


def instruction_sets_by_function(library: Path) -> dict[str, set[str]]:
    """{demangled function name: {"avx512", "bf16", "vnni"} or a subset}, for the functions that use any."""
    command = ["objdump", "-d", "-C", "--insn-width=16", str(library)]
    listing = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    found: dict[str, set[str]] = {}
    function = ""
    for line in listing.splitlines():
        if header := FUNCTION.match(line):
            function = header[1]
        elif instruction := OBJDUMP_LINE.match(line):
            opcode = instruction[1].split()
            while opcode and opcode[0] in ("67", "2e", "36", "3e", "26", "64", "65"):
                opcode.pop(0)
            text = instruction[2]
            if (opcode and opcode[0] == "62") or re.search(r"%k[0-7]\b", text):
                found.setdefault(function, set()).add("avx512")
            if re.search(r"\bv(dpbf16ps|cvtne2?ps2bf16)\b", text):
                found.setdefault(function, set()).add("bf16")
            if re.search(r"\bvpdp(bu|ws)sds?\b", text):
                found.setdefault(function, set()).add("vnni")
            if re.search(r"\b(tdpb[su][su]d|tileloaddt?1?|tilestored|tilezero|ldtilecfg|tilerelease)\b", text):
                found.setdefault(function, set()).add("amx")
    return found


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
def test_avx512_instructions_are_only_in_the_code_the_cpu_check_guards(built):
    """Nothing a CPU without AVX-512 runs (the AVX2 loops, the ops' checks, the start-up check itself)
    may hold an AVX-512 instruction, nothing but the bf16-times-bf16 loops a BF16 one, nothing but
    the integer products (avx512::vnni) a VNNI one and nothing but the tiles' (avx512::amx) an AMX
    one."""
    found = instruction_sets_by_function(kernels.unusable_reason(kernels.BUILD_DIR)[1])
    for kind in ("avx512", "bf16", "vnni", "amx"):
        assert any(kind in sets for sets in found.values()), kind
    for function, sets in found.items():
        assert GUARDED.match(function), function
        assert "bf16" not in sets or "DotBF16" in function or "dot_bf16" in function, function
        assert "vnni" not in sets or "::avx512::vnni::" in function, function
        assert "amx" not in sets or "::avx512::amx::" in function, function


def test_bf16_linear_rejects_what_it_cannot_multiply(bf16_linear):
    w = torch.randn(4, 64).bfloat16()
    with pytest.raises(RuntimeError, match="K must be a multiple of 32"):
        bf16_linear(torch.randn(1, 48), torch.randn(4, 48).bfloat16())
    with pytest.raises(RuntimeError, match="w must be BFloat16"):
        bf16_linear(torch.randn(1, 64), w.float())
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        bf16_linear(torch.randn(1, 64).half(), w)
    assert bf16_linear(torch.empty(0, 64), w).shape == (0, 4)


def teacher_forced_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """Logits at each position, read one token per forward pass as decode steps read them."""
    from glm.engine.generation import new_cache

    cache, rows = new_cache(model), []
    with torch.inference_mode():
        for token in ids:
            rows.append(model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True).logits[0, -1])
    return torch.stack(rows).float()


def test_a_bf16_model_decodes_through_the_kernel_as_well_as_through_torch(built, monkeypatch):
    """bf16 alone moves the tiny random model's logits by about 0.1 on average (of up to 15); the
    kernel must not add to that: it is judged against the fp32 model, next to torch's bf16 path."""
    loaded = load_model(model_source("tiny"), torch.device("cpu"), torch.bfloat16, Path.home())
    layers = [m for m in loaded.model.modules() if isinstance(m, bf16.BF16Linear)]
    assert layers and not any(type(m) is torch.nn.Linear for m in loaded.model.modules())
    assert any(m.bias is not None for m in layers), "GLM's qkv bias goes through the kernel's path too"
    ids = list(range(20, 52))
    exact = teacher_forced_logits(
        load_model(model_source("tiny"), torch.device("cpu"), torch.float32, Path.home()).model, ids
    )
    through_kernel = teacher_forced_logits(loaded.model, ids)
    monkeypatch.setattr(bf16, "KERNEL_MAX_ROWS", 0)
    through_torch = teacher_forced_logits(loaded.model, ids)
    assert not torch.equal(through_kernel, through_torch), "the two paths differ in summation order"
    kernel_error, torch_error = ((x - exact).abs().mean() for x in (through_kernel, through_torch))
    assert kernel_error <= 1.25 * torch_error
    agreement = (through_kernel.argmax(-1) == exact.argmax(-1)).float().mean()
    assert agreement >= (through_torch.argmax(-1) == exact.argmax(-1)).float().mean() - 0.1


def test_a_tied_head_stays_tied(built):
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(100, 64, dtype=torch.bfloat16)
    model.head = torch.nn.Linear(64, 100, bias=False, dtype=torch.bfloat16)
    model.head.weight = model.embed.weight
    model.odd = torch.nn.Linear(48, 8, dtype=torch.bfloat16)
    assert bf16.use_kernel(model) == 1
    assert isinstance(model.head, bf16.BF16Linear) and model.head.weight is model.embed.weight
    assert type(model.odd) is torch.nn.Linear, "K=48 is not a multiple of 32: torch keeps it"


def test_a_packed_head_keeps_x_float_and_the_rest_rounds_it_to_8_bits(built):
    model = load_model(model_source("tiny"), torch.device("cpu"), torch.float32, Path.home(), bits=4).model
    layers = [m for m in model.modules() if isinstance(m, modules.QuantLinear)]
    head = model.get_output_embeddings()
    assert head in layers and head.weight_packed.format == Format.Q4_1 and head.x_bits == 32
    assert all(m.x_bits == 8 for m in layers if m is not head)


def test_a_q8_0_head_rounds_x_to_16_bits_on_amx_tiles_only(built):
    """Where the int16 vector loops would be slower than the float ones, the head keeps x float."""
    generator = torch.Generator().manual_seed(3)
    weights = {fmt: modules.PackedWeight(random_packed(fmt, 8, 64, generator)) for fmt in Format}
    chosen = torch.ops.glm_quant.isa()
    try:
        for isa in torch.ops.glm_quant.supported_isas():
            torch.ops.glm_quant.use_isa(isa)
            expected = {fmt: 16 if isa == "amx" and fmt == Format.Q8_0 else 32 for fmt in Format}
            assert {fmt: modules.head_x_bits(w) for fmt, w in weights.items()} == expected
    finally:
        torch.ops.glm_quant.use_isa(chosen)


def test_float32_models_keep_torch_linear(built):
    loaded = load_model(model_source("tiny"), torch.device("cpu"), torch.float32, Path.home())
    assert not any(isinstance(m, bf16.BF16Linear) for m in loaded.model.modules())
