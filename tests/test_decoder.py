"""The lean decode step gives transformers' logits, batched and padded as the engine batches."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from glm.batch import DecodeBatch
from glm.decoder import LeanDecoder, lean_decoder
from glm.generation import prefill_chunk
from glm.growing_cache import new_cache


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


@pytest.mark.parametrize("family", ["glm", "llama"])
@torch.no_grad()
def test_lean_steps_match_transformers_forward(tiny, family):
    model = tiny.model if family == "glm" else small_llama()
    lean = lean_decoder(model)
    assert isinstance(lean, LeanDecoder)
    prompts = [[5, 9, 14], [7] * 20, list(range(30, 41))]  # left padding differs per row
    lean_batch, reference_batch = batch_of(model, prompts), batch_of(model, prompts)
    tokens = torch.tensor([3, 4, 5])
    for _ in range(12):
        mine = step(lean, lean_batch, tokens)
        reference = step(lambda *inputs: transformers_step(model, *inputs), reference_batch, tokens)
        assert torch.allclose(mine, reference, atol=1e-4) and torch.equal(mine.argmax(-1), reference.argmax(-1))
        tokens = reference.argmax(-1)
