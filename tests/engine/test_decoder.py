"""The lean decode step gives transformers' logits, batched and padded as the engine batches."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from glm.engine.batch import DecodeBatch
from glm.engine.decoder import LeanDecoder, lean_decoder
from glm.engine.generation import prefill_chunk
from glm.engine.growing_cache import MIN_ROOM, new_cache
from glm.models import load_model
from glm.models.source import model_source
from glm.quant.formats import Format, dequantize
from glm.quant.load import quantize_loaded, quantize_rows
from glm.quant.modules import PackedWeight, QuantLinear
from tests.conftest import CACHE


def batch_of(model, prompts):
    batch = DecodeBatch(torch.device("cpu"))
    for row, ids in enumerate(prompts):
        cache = new_cache(model)
        prefill_chunk(model, ids, cache)
        batch.join([row], cache, torch.ones(1, len(ids), dtype=torch.long))
    return batch


def transformers_step(model, tokens, positions, mask, cache):
    out = model(input_ids=tokens[:, None], position_ids=positions[:, None], attention_mask=mask, past_key_values=cache)
    return out.logits[:, -1]


def step(decode, batch, tokens):
    positions, mask = batch.step_inputs()
    logits = decode(tokens, positions, mask, batch.cache)
    batch.advance(mask)
    return logits


def small_llama() -> LlamaForCausalLM:
    """A random Llama with grouped key/value heads, the demo model's layer kind."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


def model_of(family, tiny, folders):
    if family == "glm":
        return tiny.model
    if family == "llama":
        return small_llama()
    # GLM-4-0414's layers, with their norms of the attention's and the MLP's outputs.
    return AutoModelForCausalLM.from_pretrained(folders["glm-4-0414"], dtype=torch.float32).eval()


def runners(lean: LeanDecoder) -> dict[str, object]:
    """The decoder's step runners: torch's operations, and decode.cpp's where the kernels are built."""
    return {"torch": lean._torch_step, "compiled": lean._compiled_step if lean.ops else None}


@pytest.mark.parametrize("runner", ["torch", "compiled"])
@pytest.mark.parametrize("family", ["glm", "llama", "glm-4-0414"])
@torch.no_grad()
def test_lean_steps_match_transformers_forward(tiny, glm_generation_folders, family, runner):
    model = model_of(family, tiny, glm_generation_folders)
    assert lean_decoder(model) is not None
    lean = LeanDecoder(model)
    lean.run_step = runners(lean)[runner]
    if lean.run_step is None:
        pytest.skip("the compiled kernels are not built")
    prompts = [[5, 9, 14], [7] * 20, list(range(30, 41))]  # left padding differs per row
    lean_batch, reference_batch = batch_of(model, prompts), batch_of(model, prompts)
    tokens = torch.tensor([3, 4, 5])
    for _ in range(12):
        mine = step(lean, lean_batch, tokens)
        reference = step(lambda *inputs: transformers_step(model, *inputs), reference_batch, tokens)
        assert torch.allclose(mine, reference, atol=1e-4) and torch.equal(mine.argmax(-1), reference.argmax(-1))
        tokens = reference.argmax(-1)


def test_float32_cpu_models_take_the_compiled_step_where_the_kernels_are_built(tiny):
    from glm.quant.kernels import decode_ops

    assert (lean_decoder(tiny.model).run_step.__name__ == "_compiled_step") == (decode_ops() is not None)


def mixed_formats(model):
    """The packed model with each layer's v_proj and up_proj (where gate and up are apart) re-packed
    as Q8_0 beside the other formats, as GGUF files mix them (Gemma 3 270M's Q4_K_M): those
    products no longer fuse."""
    for layer in model.model.layers:
        for owner, name in ((layer.self_attn, "v_proj"), (layer.mlp, "up_proj")):
            if not hasattr(owner, name):
                continue
            module = getattr(owner, name)
            weight = PackedWeight(quantize_rows(dequantize(module.weight_packed.packed), Format.Q8_0))
            setattr(owner, name, QuantLinear(weight, module.bias, module.kernel))
    return model


@pytest.mark.parametrize("bits", [8, 4, "mixed"])
@pytest.mark.parametrize("family", ["glm", "llama", "glm-4-0414"])
@torch.no_grad()
def test_packed_models_run_every_layer_in_one_call_with_the_layer_by_layer_steps_bits(
    tiny, glm_generation_folders, family, bits
):
    """glm.engine.compiled_layers: the same logits, bit for bit, as the step that calls each layer's
    parts from Python, over steps whose cache buffers fill and move, for rows of several lengths
    (GLM's q/k/v bias and GLM-4-0414's output norms included), with products fused and, where
    their formats differ, side by side."""
    model = copy.deepcopy(model_of(family, tiny, glm_generation_folders))
    model = mixed_formats(quantize_loaded(model, 4)) if bits == "mixed" else quantize_loaded(model, bits)
    assert_one_call_gives_the_layer_by_layer_steps_bits(LeanDecoder(model), model, turns=MIN_ROOM + 6)


def assert_one_call_gives_the_layer_by_layer_steps_bits(lean, model, turns: int) -> None:
    """Three rows of different lengths, step by step, in one call and layer by layer: the same logits."""
    if lean.ops is None:
        pytest.skip("the compiled kernels are not built")
    assert lean.whole is not None and lean.run_step == lean._whole_step
    prompts = [[5, 9, 14], [7] * 20, list(range(30, 41))]
    whole, layer_by_layer = batch_of(model, prompts), batch_of(model, prompts)
    tokens = torch.tensor([3, 4, 5])
    for _ in range(turns):
        mine = step(lean, whole, tokens)
        lean.run_step = lean._compiled_step
        reference = step(lean, layer_by_layer, tokens)
        lean.run_step = lean._whole_step
        assert torch.equal(mine, reference)
        tokens = reference.argmax(-1)


@torch.no_grad()
def test_a_rows_logits_do_not_depend_on_the_batch():
    """Bit for bit, alone or left-padded beside longer rows, where every part of the step is
    batch-invariant: packed weights (glm_quant.qlinear) and the compiled step."""
    model = load_model(model_source("tiny"), torch.device("cpu"), torch.float32, CACHE, bits=8).model
    lean = LeanDecoder(model)
    assert_a_rows_logits_do_not_depend_on_the_batch(lean, model, turns=10)  # every layer in one call
    lean.run_step = lean._compiled_step
    assert_a_rows_logits_do_not_depend_on_the_batch(lean, model, turns=10)


def assert_a_rows_logits_do_not_depend_on_the_batch(lean, model, turns: int) -> None:
    """A prompt's logits, step by step, the same bits alone as left-padded beside two longer rows."""
    if lean.ops is None:
        pytest.skip("the compiled kernels are not built")
    prompt, others = [5, 9, 14, 3], [[7] * 37, list(range(30, 53))]
    alone, batched = batch_of(model, [prompt]), batch_of(model, [prompt, *others])
    for turn in range(turns):
        solo = step(lean, alone, torch.tensor([4 + turn]))
        together = step(lean, batched, torch.tensor([4 + turn] * len(batched)))
        assert torch.equal(solo[0], together[0])


@torch.no_grad()
def test_a_model_the_one_call_step_does_not_take_goes_layer_by_layer(caplog):
    """step.cpp refuses what does not fit it (here a norm of the wrong width), naming it; the
    decoder logs why and takes the layer-by-layer step instead of failing every step."""
    model = quantize_loaded(small_llama(), 8)
    if LeanDecoder(model).ops is None:
        pytest.skip("the compiled kernels are not built")
    model.model.layers[1].post_attention_layernorm.weight = torch.nn.Parameter(torch.ones(32))
    lean = LeanDecoder(model)
    assert lean.whole is None and lean.run_step == lean._compiled_step
    assert "does not fit this model" in caplog.text and "middle norm" in caplog.text
