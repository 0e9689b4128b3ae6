"""The two forward passes of generation, each on its own: prefill a prompt, decode one token."""

import torch
from transformers import DynamicCache, PreTrainedModel


def prefill(model: PreTrainedModel, prompt_ids: list[int]) -> tuple[torch.Tensor, DynamicCache]:
    """Run the whole prompt; return the last position's logits [vocab] and the filled KV cache."""
    cache = DynamicCache(config=model.config)
    input_ids = torch.tensor([prompt_ids], device=model.device)
    # logits_to_keep=1: only the last position's logits are needed, which spares a
    # [prompt_len, vocab] LM-head product (vocab is 262,144 for the demo model).
    out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out.logits[0, -1], cache


def decode_one(model: PreTrainedModel, token_id: int, cache: DynamicCache) -> torch.Tensor:
    """Feed one token after the cached positions; return the next logits [vocab]."""
    input_ids = torch.tensor([[token_id]], device=model.device)
    out = model(input_ids=input_ids, past_key_values=cache, use_cache=True)
    return out.logits[0, -1]
