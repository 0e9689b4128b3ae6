"""The model a ModelSource names (glm/models/source.py), loaded for our engine as a LoadedModel."""

from dataclasses import replace
from pathlib import Path

import torch

from glm.models import tiny
from glm.models.chatglm import load_chatglm
from glm.models.gguf import load_gguf
from glm.models.hf import load_hf_folder
from glm.models.loaded import LoadedModel, prepare
from glm.models.lora import attach
from glm.models.source import Kind, ModelSource
from glm.models.weights import Weights


def load_model(
    source: ModelSource,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path,
    trust_remote_code: bool = False,
    bits: int = 16,
    adapters: dict[str, Path] | None = None,
) -> LoadedModel:
    """`bits` 8 or 4 packs the Linear weights as they are read (glm/quant); `dtype` is then the
    dtype of everything else. `adapters`: LoRA adapter folders by name, attached to the model."""
    loaded = _load_base(source, device, dtype, cache_dir, trust_remote_code, bits)
    if not adapters:
        return loaded
    return replace(loaded, adapters=tuple(adapters), lora=attach(loaded.model, adapters))


def _load_base(
    source: ModelSource, device: torch.device, dtype: torch.dtype, cache_dir: Path, trust_remote_code: bool, bits: int
) -> LoadedModel:
    weights = Weights(bits, dtype, trust_remote_code)
    if source.kind is Kind.TINY:
        tokenizer = tiny.build_tokenizer()
        return prepare(source.name, weights.pack(tiny.build_model(tokenizer).to(dtype)), tokenizer, device, weights)
    if source.kind is Kind.GGUF:
        model, tokenizer = load_gguf(source.path, cache_dir, weights)
        return prepare(source.name, model, source.fit_template(tokenizer), device, weights, about=source.about)
    if source.kind is Kind.CHATGLM:
        model, tokenizer, prompt_encoder, tool_format = load_chatglm(
            source.path, weights, cache_dir, source.chat_format
        )
        return prepare(source.name, model, tokenizer, device, weights, prompt_encoder, tool_format)
    model, tokenizer = load_hf_folder(source.path, weights)
    return prepare(source.name, model, tokenizer, device, weights)
