"""The model as the engine uses it: weights, tokenizer, and the facts derived from them."""

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Special tokens that end an assistant turn in the chat formats we serve (GLM-4 and ChatGLM3 hand
# the turn back with <|user|> or <|observation|>; Gemma closes it with <end_of_turn>).
TURN_END_TOKENS = ("<|user|>", "<|observation|>", "<end_of_turn>", "<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    context_length: int
    stop_token_ids: frozenset[int]


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """End-of-sequence ids from the generation config and tokenizer, plus the turn-end specials."""
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if source is not None:
            ids.update(source if isinstance(source, list) else [source])
    special = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    ids.update(tokenizer.convert_tokens_to_ids(token) for token in TURN_END_TOKENS if token in special)
    return frozenset(ids)


def context_length(model: PreTrainedModel) -> int:
    config = model.config.get_text_config()
    return int(getattr(config, "max_position_embeddings", None) or config.seq_length)


def prepare(
    name: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    dtype: torch.dtype,
) -> LoadedModel:
    """Move the model onto its device and dtype for inference and derive what the engine needs."""
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        device=device,
        context_length=context_length(model),
        stop_token_ids=stop_token_ids(model, tokenizer),
    )
