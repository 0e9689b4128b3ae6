"""The forward passes of generation, each on its own: a prefill chunk, a batched decode step."""

import torch
from transformers import DynamicCache, PreTrainedModel

from glm.engine.decoder import LeanDecoder, lean_decoder
from glm.engine.gemma_decoder import GemmaDecoder, gemma_decoder
from glm.engine.growing_cache import new_cache


def prefill_chunk(
    model: PreTrainedModel, ids: list[int], cache: DynamicCache, last: bool = True
) -> torch.Tensor | None:
    """Run a piece of one prompt after what `cache` holds; return the last position's logits
    [vocab] when this is the prompt's `last` piece, else None.

    Only the prompt's last position needs logits, so the LM head multiplies one row of the last
    piece (logits_to_keep=1) and none of the others (an empty index): with a large vocabulary, such
    as Gemma 3's 262,144 tokens, each row through the LM head is a large product.
    """
    input_ids = torch.tensor([ids], device=model.device)
    keep = 1 if last else torch.empty(0, dtype=torch.long, device=model.device)
    out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=keep)
    return out.logits[0, -1] if last else None


def score_chunk(model: PreTrainedModel, ids: list[int], cache: DynamicCache) -> torch.Tensor:
    """Run a piece of one prompt after what `cache` holds, like `prefill_chunk`, and return every
    position's logits [len(ids), vocab]: what scoring the prompt's own tokens needs."""
    out = model(input_ids=torch.tensor([ids], device=model.device), past_key_values=cache, use_cache=True)
    return out.logits[0]


def decode_step(
    model: PreTrainedModel, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: DynamicCache
) -> torch.Tensor:
    """One token for every row of a left-padded batch.

    tokens, positions: [batch]; mask: [batch, cached + 1], 0 over padding. Returns logits [batch, vocab].
    Layers that glm.engine.decoder or glm.engine.gemma_decoder knows skip transformers' plumbing.
    """
    if (lean := lean_step(model)) is not None:
        return lean(tokens, positions, mask, cache)
    out = model(
        input_ids=tokens[:, None],
        position_ids=positions[:, None],
        attention_mask=mask,
        past_key_values=cache,
        use_cache=True,
    )
    return out.logits[:, -1]


def lean_step(model: PreTrainedModel) -> LeanDecoder | GemmaDecoder | None:
    """The lean decode step for the model's layers, None where no lean step knows them."""
    return lean_decoder(model) or gemma_decoder(model)


def prefill_group(
    model: PreTrainedModel, prompts: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, DynamicCache, torch.Tensor]:
    """Read several whole prompts in one forward pass, left-padded to the longest.

    Returns the last position's logits [rows, vocab], the cache, and the mask [rows, longest]
    (0 over padding): the layout a DecodeBatch joins.
    """
    longest = max(len(ids) for ids in prompts)
    padded = [[pad_id] * (longest - len(ids)) + ids for ids in prompts]
    mask = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in prompts], device=model.device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    cache = new_cache(model)
    out = model(
        input_ids=torch.tensor(padded, device=model.device),
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1], cache, mask
