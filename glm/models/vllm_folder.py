"""The vLLM side of loading: for an engine that reads the weights itself, in processes of its own,
the model a ModelSource names is a Hugging Face folder it can load, and what our side needs of the
model (tokenizer, chat and tool formats, stop tokens, context length) is read from that folder
without loading a single weight.

GGUF files and the built-ins are served from their de-quantized folders, and original ChatGLM2/3
and GLM-4 folders from their GlmForCausalLM conversions, written once under the cache directory as
for the torch engine. LoRA adapters are written again beside them as vLLM reads them
(glm/models/vllm_lora.py).
"""

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase

from glm.models.chatglm import convert_chatglm
from glm.models.gguf import dequantized_folder
from glm.models.hf import folder_tokenizer
from glm.models.loaded import PromptEncoder, ServedModel, describe
from glm.models.source import Kind, ModelSource
from glm.models.vllm_lora import VllmAdapter, vllm_adapters
from glm.startup import StartupError
from glm.tools.format import ToolFormat


@dataclass(frozen=True)
class ServedFolder:
    folder: Path  # what vLLM loads
    model: ServedModel  # the model as the routes see it
    adapters: tuple[VllmAdapter, ...] = ()  # the --lora adapters as vLLM loads them
    # Where adapters loaded at run time are written, and whether their model's code may run.
    cache_dir: Path | None = None
    trust_remote_code: bool = False


def served_folder(
    source: ModelSource,
    device: torch.device,
    cache_dir: Path,
    trust_remote_code: bool = False,
    adapters: dict[str, Path] | None = None,
) -> ServedFolder:
    """The folder the engine loads, the model as the routes see it, and `adapters` (LoRA folders by
    name) as vLLM loads them over it; `device` is where the engine runs it."""
    folder, model = _base_folder(source, device, cache_dir, trust_remote_code)
    written = vllm_adapters(adapters or {}, folder, cache_dir, trust_remote_code)
    model = replace(model, adapters=tuple(adapters or ()))
    return ServedFolder(folder, model, written, cache_dir, trust_remote_code)


def _base_folder(
    source: ModelSource, device: torch.device, cache_dir: Path, trust_remote_code: bool
) -> tuple[Path, ServedModel]:
    if source.kind is Kind.TINY:
        raise StartupError("--model tiny is built in memory; this engine loads a model folder (--model PATH)")
    if source.kind is Kind.GGUF:
        folder = dequantized_folder(source.path, cache_dir)
        tokenizer = source.fit_template(AutoTokenizer.from_pretrained(folder, local_files_only=True))
        return folder, served(source.name, folder, tokenizer, device, trust_remote_code, about=source.about)
    if source.kind is Kind.CHATGLM:
        converted = convert_chatglm(source.path, cache_dir, source.chat_format)
        model = served(
            source.name,
            converted.folder,
            converted.tokenizer,
            device,
            trust_remote_code,
            converted.prompt_encoder,
            converted.tool_format,
        )
        return converted.folder, model
    tokenizer = folder_tokenizer(source.path, trust_remote_code)
    return source.path, served(source.name, source.path, tokenizer, device, trust_remote_code)


def served(
    name: str,
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    trust_remote_code: bool,
    prompt_encoder: PromptEncoder | None = None,
    tool_format: ToolFormat | None = None,
    about: str | None = None,
) -> ServedModel:
    """The model as the routes see it, from the folder's configuration alone."""
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    generation = (
        GenerationConfig.from_pretrained(folder, local_files_only=True)
        if (folder / "generation_config.json").is_file()
        else GenerationConfig.from_model_config(config)
    )
    return describe(name, config, generation, tokenizer, device, prompt_encoder, tool_format, about)
