"""Gemma 3's lean decode step gives transformers' logits, across its sliding window, batched and
padded as the engine batches."""

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel

from glm.engine.gemma_decoder import GemmaDecoder
from glm.engine.generation import lean_step
from glm.engine.growing_cache import MIN_ROOM
from glm.quant.load import quantize_loaded
from tests.engine.test_decoder import (
    assert_a_rows_logits_do_not_depend_on_the_batch,
    assert_one_call_gives_the_layer_by_layer_steps_bits,
    batch_of,
    step,
    transformers_step,
)

WINDOW = 8


def small_gemma(kv_heads: int = 2, **changes: object) -> Gemma3ForCausalLM:
    """A random Gemma 3 with both layer kinds, grouped key/value heads (one, as Gemma 3 270M, or
    more), a window shorter than the
    prompts and the steps, and norm weights away from Gemma's initial 0 (the norms scale by 1 + weight)."""
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        head_dim=16,
        query_pre_attn_scalar=24,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=256,
        final_logit_softcapping=30.0,
        **changes,
    )
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("kv_heads", [1, 2])
@pytest.mark.parametrize("runner", ["torch", "compiled"])
@torch.no_grad()
def test_gemma_steps_match_transformers_forward_across_the_window(runner, kv_heads):
    model = small_gemma(kv_heads)
    assert isinstance(lean_step(model), GemmaDecoder)
    lean = GemmaDecoder(model)
    lean.run_step = {"torch": lean._torch_step, "compiled": lean._compiled_step if lean.ops else None}[runner]
    if lean.run_step is None:
        pytest.skip("the compiled kernels are not built")
    prompts = [[5, 9, 14], [7] * 20, list(range(30, 41))]  # left padding differs per row
    lean_batch, reference_batch = batch_of(model, prompts), batch_of(model, prompts)
    tokens = torch.tensor([3, 4, 5])
    for _ in range(MIN_ROOM + 16):  # past the room the sliding layers' buffers have after the window
        mine = step(lean, lean_batch, tokens)
        reference = step(lambda *inputs: transformers_step(model, *inputs), reference_batch, tokens)
        assert torch.allclose(mine, reference, atol=1e-5) and torch.equal(mine.argmax(-1), reference.argmax(-1))
        tokens = reference.argmax(-1)
    sliding = lean_batch.cache.layers[0]
    assert sliding.keys.shape[-2] == WINDOW - 1  # stored as transformers stores it


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("kv_heads", [1, 2])
@torch.no_grad()
def test_packed_gemma_runs_every_layer_in_one_call_with_the_layer_by_layer_steps_bits(kv_heads, bits):
    """glm.engine.compiled_layers with Gemma's head norms, two rotations, sliding layers' shorter
    caches and GELU: the same logits, bit for bit, past the sliding buffers' room."""
    model = quantize_loaded(small_gemma(kv_heads), bits=bits)
    assert_one_call_gives_the_layer_by_layer_steps_bits(GemmaDecoder(model), model, turns=MIN_ROOM + 16)


@torch.no_grad()
def test_a_gemma_rows_logits_do_not_depend_on_the_batch():
    """Bit for bit, alone or left-padded beside longer rows, with packed weights, in one call and
    layer by layer."""
    model = quantize_loaded(small_gemma(), bits=8)
    lean = GemmaDecoder(model)
    assert_a_rows_logits_do_not_depend_on_the_batch(lean, model, turns=12)
    lean.run_step = lean._compiled_step
    assert_a_rows_logits_do_not_depend_on_the_batch(lean, model, turns=12)


def test_gemma_with_attention_softcapping_keeps_transformers_step():
    assert lean_step(small_gemma(attn_logit_softcapping=50.0)) is None


def test_a_model_no_lean_step_knows_keeps_transformers_step():
    """Its config need not have Gemma's fields (GLM-4.5's MoE and GPT-2's have none)."""
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    assert lean_step(model) is None
