"""Turning `--model` into a LoadedModel: `tiny`, `demo`, `gemma`, a `.gguf` file, an original ChatGLM folder or a
local HF folder.

Nothing here reaches a model hub: a name that is not one of the built-ins must be a local path.
"""

import logging
from pathlib import Path

import torch

from glm import chat_templates
from glm.models import tiny
from glm.models.chatglm import check_chat_format, is_original_chatglm_folder, load_chatglm
from glm.models.gguf import load_gguf, own_blocks_bits
from glm.models.hf import load_hf_folder
from glm.models.loaded import LoadedModel, prepare
from glm.models.packaged import ABOUT, demo_gguf, gemma_gguf
from glm.models.weights import Weights
from glm.startup import StartupError

log = logging.getLogger(__name__)


def gguf_file(spec: str) -> Path | None:
    """The GGUF file `--model spec` names, if it names one."""
    if spec == "demo":
        return demo_gguf()
    if spec == "gemma":
        return gemma_gguf()
    path = Path(spec).expanduser()
    return path if path.is_file() and path.suffix == ".gguf" else None


def default_quantize(spec: str, device: torch.device, cache_dir: Path) -> int:
    """`--quantize` when none is given: on the CPU, a GGUF's own blocks (glm.models.gguf); 16
    otherwise. On SmolLM2 the file's blocks at 4 bits agreed with the de-quantized float32 model on
    every next token of the quality text, and bf16 on 96.8% (bench/QUANT.md)."""
    path = gguf_file(spec) if device.type == "cpu" else None
    return 16 if path is None else own_blocks_bits(path, cache_dir)


def load_model(
    spec: str,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path,
    trust_remote_code: bool = False,
    bits: int = 16,
    chat_format: str | None = None,
) -> LoadedModel:
    """`bits` 8 or 4 packs the Linear weights as they are read (glm/quant); `dtype` is then the
    dtype of everything else. `chat_format` overrides the family detected in an original ChatGLM
    folder; any other model brings its own format, so there it is refused."""
    weights = Weights(bits, dtype, trust_remote_code)
    path = Path(spec).expanduser()
    check_chat_format(spec, chat_format)
    if spec == "tiny":
        tokenizer = tiny.build_tokenizer()
        return prepare("tiny", weights.pack(tiny.build_model(tokenizer).to(dtype)), tokenizer, device, weights)
    if spec == "demo":
        model, tokenizer = load_gguf(demo_gguf(), cache_dir, weights)
        return prepare("demo", model, tokenizer, device, weights, about=ABOUT["demo"])
    if spec == "gemma":
        model, tokenizer = load_gguf(gemma_gguf(), cache_dir, weights)
        # A base model: it ships no chat template, so it gets Gemma's turn format.
        tokenizer.chat_template = chat_templates.load("gemma")
        return prepare("gemma", model, tokenizer, device, weights, about=ABOUT["gemma"])
    if path.is_file() and path.suffix == ".gguf":
        model, tokenizer = load_gguf(path, cache_dir, weights)
        if tokenizer.chat_template is None:
            raise StartupError(f"--model {path}: the GGUF file carries no chat template")
        return prepare(path.stem, model, tokenizer, device, weights)
    if is_original_chatglm_folder(path):
        model, tokenizer, prompt_encoder, tool_format = load_chatglm(path, weights, cache_dir, chat_format)
        return prepare(path.name, model, tokenizer, device, weights, prompt_encoder, tool_format)
    if path.is_dir():
        model, tokenizer = load_hf_folder(path, weights)
        return prepare(path.name, model, tokenizer, device, weights)
    raise StartupError(
        f"--model {spec}: not 'demo', 'gemma', 'tiny', a .gguf file or a local model folder "
        "(models are never downloaded from a hub)"
    )
