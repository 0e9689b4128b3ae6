"""q/k/v and gate/up fused into one product each (glm.engine.fusion): the same bits per output, the
same memory, and the projections' own calls where they cannot fuse."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glm.engine.decoder import LeanDecoder
from glm.engine.fusion import GatedMLP, Projections, fuse
from glm.models import load_model
from glm.models.lora import LoraLinear, Rows
from glm.models.source import model_source
from glm.quant import bf16
from glm.quant.kernels import decode_ops
from tests.conftest import CACHE
from tests.engine.test_decoder import small_llama


def model_of(kind: str) -> nn.Module:
    """A model whose projections are of `kind`: packed (q4_1, q8_0), float32 or bf16 (the kernel's)."""
    if kind in ("q4_1", "q8_0"):
        bits = 4 if kind == "q4_1" else 8
        return load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE, bits=bits).model
    model = small_llama()
    if kind == "bf16":
        model = model.to(torch.bfloat16)
        if not bf16.use_kernel(model):
            pytest.skip("the bf16 kernel is not built")
    return model


def storage_bytes(model: nn.Module) -> int:
    """Bytes of the distinct storages the model's parameters and buffers lie in."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in model.state_dict().values()}
    return sum(storages.values())


KINDS = ["q4_1", "q8_0", "float32", "bf16"]


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_a_fused_product_gives_each_projection_its_own_bits_in_the_same_memory(kind):
    model = model_of(kind)
    attention = model.model.layers[0].self_attn
    parts = (attention.q_proj, attention.k_proj, attention.v_proj)
    torch.manual_seed(1)
    inputs = [torch.randn(rows, parts[0].in_features).to(model.dtype) for rows in (1, 2, 3, 8, 9)]
    before = [torch.cat([part(x) for part in parts], dim=-1) for x in inputs]
    held = storage_bytes(model)

    projections = Projections(attention)

    assert projections.fused is not None
    assert storage_bytes(model) == held
    fused = projections.fused.state_dict()
    for part in parts:
        for name, tensor in part.state_dict().items():
            assert tensor.untyped_storage().data_ptr() == fused[name].untyped_storage().data_ptr(), name
    for x, expected in zip(inputs, before, strict=True):
        assert torch.equal(projections.fused(x), expected)
        assert torch.equal(torch.cat(projections(x), dim=-1), expected)
        assert torch.equal(torch.cat([part(x) for part in parts], dim=-1), expected)


@torch.no_grad()
def test_a_second_decoder_takes_the_first_ones_fused_weights_as_they_lie():
    model = model_of("q4_1")
    first, second = LeanDecoder(model), LeanDecoder(model)
    for one, other in zip(first.blocks, second.blocks, strict=True):
        assert one.projections.fused.weight_packed.qs.data_ptr() == other.projections.fused.weight_packed.qs.data_ptr()


@torch.no_grad()
def test_projections_a_lora_adapter_wraps_keep_their_own_calls():
    model = small_llama()
    layer = model.model.layers[0]
    attention, mlp = layer.self_attn, layer.mlp
    rank = 2
    for parent, name in ((attention, "k_proj"), (mlp, "up_proj")):
        base = getattr(parent, name)
        a, b = torch.randn(2, rank, base.in_features), torch.randn(2, base.out_features, rank)
        setattr(parent, name, LoraLinear(base, a, b, Rows()))
    q_weight = attention.q_proj.weight

    assert Projections(attention).fused is None
    assert GatedMLP(mlp).gate_up is None
    assert attention.q_proj.weight is q_weight
    # The layer beside it, not wrapped, fuses.
    assert Projections(model.model.layers[1].self_attn).fused is not None


def test_projections_of_different_formats_or_inputs_do_not_fuse():
    packed, float32 = model_of("q4_1"), small_llama()
    attention = float32.model.layers[0].self_attn
    assert fuse([packed.model.layers[0].self_attn.q_proj, attention.k_proj]) is None
    assert fuse([attention.q_proj, attention.o_proj.to(torch.float64)]) is None
    assert fuse([attention.q_proj, nn.Linear(attention.q_proj.in_features * 2, 8)]) is None


@torch.no_grad()
def test_the_gated_mlp_computes_what_the_module_does():
    mlp = small_llama().model.layers[0].mlp
    x = torch.randn(3, mlp.gate_proj.in_features)
    expected = mlp(x)
    gated = GatedMLP(mlp)
    assert gated.gate_up is not None and gated.compiled == "silu_mul"
    assert torch.equal(gated(x), expected)
    ops = decode_ops()
    if ops is not None:
        torch.testing.assert_close(gated(x, ops), expected, rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_gelu_tanh_mul_is_gelus_tanh_approximation_times_up_within_float32_rounding(built):
    """Gemma's activation: against float64 (torch's own float32 loses the far negative tail)."""
    ops = decode_ops()
    torch.manual_seed(3)
    gate_up = torch.cat([torch.randn(9, 4096) * 6, torch.tensor([[-100.0, 100.0, 0.0, -0.0] * 1024])])
    gate, up = gate_up.double().chunk(2, dim=-1)
    out = ops.gelu_tanh_mul(gate_up)
    torch.testing.assert_close(out.double(), F.gelu(gate, approximate="tanh") * up, rtol=4e-6, atol=1e-6)
    for row in range(gate_up.shape[0]):
        assert torch.equal(ops.gelu_tanh_mul(gate_up[row : row + 1]), out[row : row + 1])
    with pytest.raises(RuntimeError, match="gelu_tanh_mul"):
        ops.gelu_tanh_mul(torch.randn(2, 24))


@torch.no_grad()
def test_silu_mul_is_torchs_silu_times_up_within_rounding_row_by_row(built):
    ops = decode_ops()
    torch.manual_seed(2)
    gate_up = torch.cat([torch.randn(9, 3072) * 6, torch.tensor([[-100.0, 100.0, 0.0, -0.0] * 768])])
    gate, up = gate_up.chunk(2, dim=-1)
    out = ops.silu_mul(gate_up)
    torch.testing.assert_close(out, torch.nn.functional.silu(gate) * up, rtol=3e-7, atol=1e-30)
    for row in range(gate_up.shape[0]):
        assert torch.equal(ops.silu_mul(gate_up[row : row + 1]), out[row : row + 1])
    # Strided rows (a view of a wider product) are read in place.
    assert torch.equal(ops.silu_mul(torch.cat([gate_up, gate_up], dim=-1)[:, :3072]), out)
    with pytest.raises(RuntimeError, match="silu_mul"):
        ops.silu_mul(torch.randn(2, 24))


@torch.no_grad()
def test_argmax_is_torchs_first_largest_or_first_nan(built):
    ops = decode_ops()
    torch.manual_seed(4)
    for width in (1, 7, 8, 13, 262_144 + 3):
        rows = torch.randn(6, width)
        rows[1] = float("-inf")  # a grammar masked everything
        rows[2, width // 2 :] = rows[2].max() + 1  # ties: the first of them
        rows[3, width - 1] = 1e9  # in the tail past whole vectors
        rows[4, width // 3] = float("nan")
        rows[5, : width // 2] = float("nan")
        assert torch.equal(ops.argmax(rows), torch.argmax(rows, dim=-1)), width
    with pytest.raises(RuntimeError, match="argmax"):
        ops.argmax(torch.randn(2, 0))
