"""The vLLM side of loading: for an engine that reads the weights itself, in processes of its own,
the model a ModelSource names is a Hugging Face folder it can load, and what our side needs of the
model (tokenizer, chat and tool formats, stop tokens, context length) is read from that folder
without loading a single weight.

GGUF files and the built-ins are served from their de-quantized folders, and original ChatGLM2/3
and GLM-4 folders from their GlmForCausalLM conversions, written once under the cache directory as
for the torch engine.
"""

from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase

from glm.models.chatglm import convert_chatglm
from glm.models.gguf import dequantized_folder
from glm.models.hf import folder_tokenizer
from glm.models.loaded import PromptEncoder, ServedModel, describe
from glm.models.source import Kind, ModelSource
from glm.startup import StartupError
from glm.tools.format import ToolFormat


def served_folder(
    source: ModelSource, device: torch.device, cache_dir: Path, trust_remote_code: bool = False
) -> tuple[Path, ServedModel]:
    """The folder the engine loads, and the model as the routes see it; `device` is where the
    engine runs it."""
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
